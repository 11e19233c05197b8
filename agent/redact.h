// Removes secrets from command lines before anything is written.
#pragma once

#include <regex>
#include <string>
#include <vector>

namespace egressd {

class Redactor {
 public:
  // The built-in patterns: secret-named flags (--api-key=X, --token X),
  // KEY=VALUE with secret-like names, Authorization headers, URL credentials,
  // and well-known token shapes.
  Redactor();
  // Extra regular expressions from the configuration; each match is replaced.
  void add_pattern(const std::string& ecmascript_regex);

  std::vector<std::string> redact_argv(const std::vector<std::string>& argv) const;
  std::string redact(const std::string& text) const;

  static constexpr const char* kMask = "[REDACTED]";

 private:
  std::regex secret_flag_;
  std::vector<std::regex> inline_patterns_;  // replace the first capture group's tail
  std::vector<std::regex> extra_;
};

// argv joined with spaces, elements holding spaces or quotes quoted.
std::string join_command_line(const std::vector<std::string>& argv);

}  // namespace egressd

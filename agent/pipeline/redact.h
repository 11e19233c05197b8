// Removes secrets from command lines before anything is written. Patterns
// are RE2 (linear time, whatever a hostile command line holds).
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace re2 {
class RE2;
}

namespace egressd {

class Redactor {
 public:
  // The built-in patterns: secret-named flags (--api-key=X, --token X),
  // KEY=VALUE with secret-like names, Authorization headers, URL credentials,
  // and well-known token shapes.
  Redactor();
  ~Redactor();
  // An extra RE2 pattern from the configuration; each match is replaced.
  // Returns an error message, empty when the pattern compiles.
  std::string add_pattern(const std::string& pattern);

  std::vector<std::string> redact_argv(const std::vector<std::string>& argv) const;
  std::string redact(const std::string& text) const;

  static constexpr const char* kMask = "[REDACTED]";

 private:
  std::unique_ptr<re2::RE2> secret_flag_;
  std::vector<std::unique_ptr<re2::RE2>> keep_prefix_;  // group 1 is kept, the rest masked
  std::vector<std::unique_ptr<re2::RE2>> extra_;
};

// Checks that pattern is valid RE2; returns the error, empty when it is.
std::string check_pattern(const std::string& pattern);

// argv joined with spaces, elements holding spaces or quotes quoted.
std::string join_command_line(const std::vector<std::string>& argv);

}  // namespace egressd

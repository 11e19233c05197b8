#include "redact.h"

#include <re2/re2.h>

namespace egressd {
namespace {

constexpr const char* kSecretWords =
    "(?:api[-_]?key|apikey|token|access[-_]?token|auth[-_]?token|secret|client[-_]?secret|"
    "password|passwd|pwd|pass|credentials?|private[-_]?key|session[-_]?key)";

std::unique_ptr<re2::RE2> compile(const std::string& pattern) {
  re2::RE2::Options opts;
  opts.set_log_errors(false);
  return std::make_unique<re2::RE2>(pattern, opts);
}

}  // namespace

Redactor::Redactor() : secret_flag_(compile(std::string("(?i)^--?[a-z0-9_-]*") + kSecretWords + "$")) {
  // --api-key=VALUE, --db-password=VALUE
  keep_prefix_.push_back(compile(std::string("(?i)(--?[a-z0-9_-]*") + kSecretWords + "=)[^\\s]+"));
  // ANTHROPIC_API_KEY=VALUE, password=VALUE (also inside query strings)
  keep_prefix_.push_back(compile(std::string("(?i)([a-z0-9_]*") + kSecretWords + "[a-z0-9_]*=)[^\\s&]+"));
  // Authorization: Bearer X / Basic X, X-Api-Key: X
  keep_prefix_.push_back(compile("(?i)((?:authorization|proxy-authorization)\\s*:\\s*(?:bearer\\s+|basic\\s+|token\\s+)?)[^\\s\"']+"));
  keep_prefix_.push_back(compile(std::string("(?i)(x-[a-z-]*") + kSecretWords + "\\s*:\\s*)[^\\s\"']+"));
  // scheme://user:password@host: the '@' is consumed and put back below.
  keep_prefix_.push_back(compile("(?i)([a-z][a-z0-9+.-]*://[^/\\s:@]+:)[^@\\s/]+(@)"));
  // Well-known token shapes, wherever they stand.
  keep_prefix_.push_back(compile("()\\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|"
                                 "github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|"
                                 "AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{30,}|glpat-[A-Za-z0-9_-]{20,})"));
}

Redactor::~Redactor() = default;

std::string check_pattern(const std::string& pattern) {
  auto re = compile(pattern);
  return re->ok() ? "" : re->error();
}

std::string Redactor::add_pattern(const std::string& pattern) {
  auto re = compile(pattern);
  if (!re->ok()) return re->error();
  extra_.push_back(std::move(re));
  return "";
}

std::string Redactor::redact(const std::string& text) const {
  std::string out = text;
  for (const auto& re : keep_prefix_) {
    const std::string rewrite = re->NumberOfCapturingGroups() == 2 ? std::string("\\1") + kMask + "\\2"
                                                                   : std::string("\\1") + kMask;
    re2::RE2::GlobalReplace(&out, *re, rewrite);
  }
  for (const auto& re : extra_) re2::RE2::GlobalReplace(&out, *re, kMask);
  return out;
}

std::vector<std::string> Redactor::redact_argv(const std::vector<std::string>& argv) const {
  std::vector<std::string> out;
  out.reserve(argv.size());
  bool mask_next = false;
  for (const auto& arg : argv) {
    if (mask_next) {
      out.emplace_back(kMask);
      mask_next = false;
      continue;
    }
    // "--token VALUE": the flag alone names a secret, the next element is it.
    if (re2::RE2::FullMatch(arg, *secret_flag_)) mask_next = true;
    out.push_back(redact(arg));
  }
  return out;
}

std::string join_command_line(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    if (a.empty() || a.find_first_of(" \t\"'\\") != std::string::npos) {
      out += '\'';
      for (char c : a) {
        if (c == '\'') out += "'\\''";
        else out += c;
      }
      out += '\'';
    } else {
      out += a;
    }
  }
  return out;
}

}  // namespace egressd

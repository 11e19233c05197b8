#include "redact.h"

namespace egressd {
namespace {

constexpr const char* kSecretWords =
    "(?:api[-_]?key|apikey|token|access[-_]?token|auth[-_]?token|secret|client[-_]?secret|"
    "password|passwd|pwd|pass|credentials?|private[-_]?key|session[-_]?key)";

}  // namespace

Redactor::Redactor()
    : secret_flag_(std::string("^--?[A-Za-z0-9_-]*") + kSecretWords + "$", std::regex::icase) {
  const auto icase = std::regex::ECMAScript | std::regex::icase;
  // --api-key=VALUE, --db-password=VALUE
  inline_patterns_.emplace_back(std::string("(--?[A-Za-z0-9_-]*") + kSecretWords + "=)[^\\s]+",
                                icase);
  // ANTHROPIC_API_KEY=VALUE, password=VALUE (also inside query strings)
  inline_patterns_.emplace_back(std::string("([A-Za-z0-9_]*") + kSecretWords + "[A-Za-z0-9_]*=)[^\\s&]+",
                                icase);
  // Authorization: Bearer X / Basic X, X-Api-Key: X
  inline_patterns_.emplace_back("((?:authorization|proxy-authorization)\\s*:\\s*(?:bearer|basic|token)?\\s*)[^\\s\"']+",
                                icase);
  inline_patterns_.emplace_back(std::string("(x-[a-z-]*") + kSecretWords + "\\s*:\\s*)[^\\s\"']+", icase);
  // scheme://user:password@host
  inline_patterns_.emplace_back("([a-z][a-z0-9+.-]*://[^/\\s:@]+:)[^@\\s/]+(?=@)", icase);
  // Well-known token shapes, wherever they stand.
  inline_patterns_.emplace_back("()\\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|"
                                "github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|"
                                "AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{30,}|glpat-[A-Za-z0-9_-]{20,})",
                                std::regex::ECMAScript);
}

void Redactor::add_pattern(const std::string& ecmascript_regex) {
  extra_.emplace_back(ecmascript_regex, std::regex::ECMAScript);
}

std::string Redactor::redact(const std::string& text) const {
  std::string out = text;
  for (const auto& re : inline_patterns_) out = std::regex_replace(out, re, std::string("$1") + kMask);
  for (const auto& re : extra_) out = std::regex_replace(out, re, kMask);
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
    if (std::regex_match(arg, secret_flag_)) mask_next = true;
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

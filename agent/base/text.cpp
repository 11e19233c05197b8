#include "text.h"

#include <fnmatch.h>

namespace egressd {

bool glob_match(const std::string& pattern, const std::string& text) {
  return fnmatch(pattern.c_str(), text.c_str(), 0) == 0;
}

bool glob_valid(const std::string& pattern) {
  if (pattern.empty()) return false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\') {
      ++i;
      continue;
    }
    if (pattern[i] != '[') continue;
    size_t j = i + 1;
    if (j < pattern.size() && (pattern[j] == '!' || pattern[j] == '^')) ++j;
    if (j < pattern.size() && pattern[j] == ']') ++j;  // a leading ']' is literal
    while (j < pattern.size() && pattern[j] != ']') ++j;
    if (j >= pattern.size()) return false;
    i = j;
  }
  return true;
}

bool has_glob(const std::string& text) { return text.find_first_of("*?[") != std::string::npos; }

std::string basename_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace egressd

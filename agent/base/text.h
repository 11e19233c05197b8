// Small text helpers every stage uses.
#pragma once

#include <string>

namespace egressd {

// fnmatch(3) semantics without FNM_PATHNAME: * and ? match '/' too.
bool glob_match(const std::string& pattern, const std::string& text);
// A glob is valid if every '[' has its ']'.
bool glob_valid(const std::string& pattern);
// Whether text has a glob metacharacter (*, ? or [).
bool has_glob(const std::string& text);
// The last path component: "/usr/bin/node" -> "node".
std::string basename_of(const std::string& path);

}  // namespace egressd

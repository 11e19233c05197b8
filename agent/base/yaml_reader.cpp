#include "yaml_reader.h"

#include <fmt/format.h>

namespace egressd {

void YamlReader::fail(const YAML::Node& n, const std::string& msg) const {
  throw ConfigError(fmt::format("{}:{}: {}", name_, n.Mark().line + 1, msg));
}

void YamlReader::expect_keys(const YAML::Node& map, const std::string& where,
                             const std::set<std::string>& allowed) const {
  if (!map.IsMap()) fail(map, fmt::format("'{}' must be a mapping", where));
  for (const auto& kv : map) {
    const auto key = kv.first.as<std::string>();
    if (!allowed.count(key)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail(kv.first, fmt::format("unknown key '{}' in {} (known: {})", key, where, list));
    }
  }
}

std::string YamlReader::string(const YAML::Node& n, const std::string& key) const {
  if (!n.IsScalar()) fail(n, fmt::format("'{}' must be a string", key));
  return n.as<std::string>();
}

uint64_t YamlReader::number(const YAML::Node& n, const std::string& key, uint64_t min,
                            uint64_t max) const {
  if (!n.IsScalar()) fail(n, fmt::format("'{}' must be a number", key));
  const std::string text = n.as<std::string>();
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
    fail(n, fmt::format("'{}' must be a whole number, not '{}'", key, text));
  uint64_t v = 0;
  try {
    v = std::stoull(text);
  } catch (const std::exception&) {
    fail(n, fmt::format("'{}' is out of range", key));
  }
  if (v < min || v > max) fail(n, fmt::format("'{}' must be between {} and {}", key, min, max));
  return v;
}

bool YamlReader::boolean(const YAML::Node& n, const std::string& key) const {
  if (n.IsScalar()) {
    const std::string t = n.as<std::string>();
    if (t == "true") return true;
    if (t == "false") return false;
  }
  fail(n, fmt::format("'{}' must be true or false", key));
}

std::vector<std::string> YamlReader::strings(const YAML::Node& n, const std::string& key) const {
  if (!n.IsSequence()) fail(n, fmt::format("'{}' must be a list", key));
  std::vector<std::string> out;
  for (const auto& item : n) out.push_back(string(item, key + "[]"));
  return out;
}

YAML::Node YamlReader::load(const std::string& text) const {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{}:{}: {}", name_, e.mark.line + 1, e.msg));
  }
}

}  // namespace egressd

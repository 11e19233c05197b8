// Validating reads of YAML nodes: every error names the file and line.
#pragma once

#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace egressd {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class YamlReader {
 public:
  explicit YamlReader(std::string name) : name_(std::move(name)) {}

  [[noreturn]] void fail(const YAML::Node& n, const std::string& msg) const;
  void expect_keys(const YAML::Node& map, const std::string& where,
                   const std::set<std::string>& allowed) const;
  std::string string(const YAML::Node& n, const std::string& key) const;
  uint64_t number(const YAML::Node& n, const std::string& key, uint64_t min, uint64_t max) const;
  bool boolean(const YAML::Node& n, const std::string& key) const;
  std::vector<std::string> strings(const YAML::Node& n, const std::string& key) const;

  // Parses text, turning syntax errors into ConfigError with file and line.
  YAML::Node load(const std::string& text) const;

 private:
  std::string name_;
};

}  // namespace egressd

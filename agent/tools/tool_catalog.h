// The AI coding tools egressd recognises: the built-in catalog
// (agent/tools/catalog.yaml, compiled in) plus the configuration's `tools:`.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "events.h"
#include "yaml_reader.h"

namespace egressd {

struct Cidr {
  uint16_t family = 0;  // AF_INET or AF_INET6
  std::array<uint8_t, 16> addr{};
  unsigned prefix = 0;

  static std::optional<Cidr> parse(const std::string& text);
  bool contains(const flow_addr& a) const;  // IPv4-mapped IPv6 is compared as IPv4
};

struct ToolSpec {
  std::string name;
  std::string description;
  std::vector<std::string> executables;  // globs on the executable path
  std::vector<std::string> args;         // globs on any argv element
  std::vector<std::string> comm;         // globs on the task name
  std::vector<std::string> sha256;       // lowercase hex digests of the executable
  bool follow_children = true;
  std::vector<std::string> expected_domains;  // "api.example.com" or "*.example.com"
  std::vector<Cidr> expected_cidrs;
  std::vector<uint16_t> expected_ports;

  bool has_expectations() const {
    return !expected_domains.empty() || !expected_cidrs.empty() || !expected_ports.empty();
  }
};

// Parses and validates a `tools:` list. Throws ConfigError naming file and line
// for an unknown key, a bad glob, a bad name, a duplicate name, ...
std::vector<ToolSpec> parse_tools(const YAML::Node& list, const YamlReader& reader);

// The catalog compiled into egressd.
const std::vector<ToolSpec>& builtin_tools();

// User entries first (they win ties), then the built-ins they do not replace.
std::vector<ToolSpec> merge_tools(const std::vector<ToolSpec>& builtin,
                                  const std::vector<ToolSpec>& user);


}  // namespace egressd

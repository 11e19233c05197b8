#include "tool_catalog.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <regex>
#include <set>

#include "text.h"
#include "tool_catalog_data.h"

namespace egressd {
namespace {

bool valid_domain(const std::string& d) {
  static const std::regex re(R"(^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]*[a-z0-9])?$)");
  return d.size() <= 253 && std::regex_match(d, re);
}

}  // namespace

std::optional<Cidr> Cidr::parse(const std::string& text) {
  Cidr c;
  auto slash = text.find('/');
  const std::string host = text.substr(0, slash);
  if (inet_pton(AF_INET, host.c_str(), c.addr.data()) == 1) {
    c.family = AF_INET;
    c.prefix = 32;
  } else if (inet_pton(AF_INET6, host.c_str(), c.addr.data()) == 1) {
    c.family = AF_INET6;
    c.prefix = 128;
  } else {
    return std::nullopt;
  }
  if (slash != std::string::npos) {
    const std::string p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    unsigned prefix = static_cast<unsigned>(std::stoul(p));
    if (prefix > c.prefix) return std::nullopt;
    c.prefix = prefix;
  }
  return c;
}

bool Cidr::contains(const flow_addr& a) const {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  const uint8_t* bytes = a.addr_be;
  uint16_t fam = a.family;
  if (fam == AF_INET6 && std::memcmp(bytes, mapped, 12) == 0) {
    fam = AF_INET;
    bytes += 12;
  }
  if (fam != family) return false;
  unsigned full = prefix / 8, rest = prefix % 8;
  if (std::memcmp(bytes, addr.data(), full) != 0) return false;
  if (!rest) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (bytes[full] & mask) == (addr[full] & mask);
}

std::vector<ToolSpec> parse_tools(const YAML::Node& list, const YamlReader& r) {
  static const std::regex name_re("^[a-z0-9][a-z0-9-]{0,62}$");
  static const std::regex sha_re("^[0-9a-f]{64}$");
  if (!list.IsSequence()) r.fail(list, "'tools' must be a list of tools");
  std::vector<ToolSpec> out;
  std::set<std::string> names;
  for (const auto& node : list) {
    r.expect_keys(node, "a tool", {"name", "description", "match", "follow_children", "expected"});
    ToolSpec t;
    if (!node["name"]) r.fail(node, "a tool needs a 'name'");
    t.name = r.string(node["name"], "name");
    if (!std::regex_match(t.name, name_re))
      r.fail(node["name"], fmt::format("tool name '{}' must be lowercase letters, digits and dashes", t.name));
    if (!names.insert(t.name).second) r.fail(node["name"], fmt::format("duplicate tool name '{}'", t.name));
    if (node["description"]) t.description = r.string(node["description"], "description");
    if (node["follow_children"]) t.follow_children = r.boolean(node["follow_children"], "follow_children");

    const YAML::Node m = node["match"];
    if (!m) r.fail(node, fmt::format("tool '{}' needs a 'match'", t.name));
    r.expect_keys(m, "match", {"executables", "args", "comm", "sha256"});
    auto globs = [&](const char* key, std::vector<std::string>& into) {
      if (!m[key]) return;
      into = r.strings(m[key], fmt::format("match.{}", key));
      size_t i = 0;
      for (const auto& g : into) {
        if (!glob_valid(g)) r.fail(m[key][i], fmt::format("bad glob '{}' in match.{}: unclosed '[' or empty", g, key));
        ++i;
      }
    };
    globs("executables", t.executables);
    globs("args", t.args);
    globs("comm", t.comm);
    if (m["sha256"]) {
      t.sha256 = r.strings(m["sha256"], "match.sha256");
      size_t i = 0;
      for (auto& h : t.sha256) {
        std::transform(h.begin(), h.end(), h.begin(), ::tolower);
        if (!std::regex_match(h, sha_re)) r.fail(m["sha256"][i], fmt::format("'{}' is not a sha256 hex digest", h));
        ++i;
      }
    }
    if (t.executables.empty() && t.args.empty() && t.comm.empty() && t.sha256.empty())
      r.fail(m, fmt::format("tool '{}' has no matcher", t.name));

    if (const YAML::Node e = node["expected"]) {
      r.expect_keys(e, "expected", {"domains", "cidrs", "ports"});
      if (e["domains"]) {
        t.expected_domains = r.strings(e["domains"], "expected.domains");
        size_t i = 0;
        for (auto& d : t.expected_domains) {
          std::transform(d.begin(), d.end(), d.begin(), ::tolower);
          if (!valid_domain(d)) r.fail(e["domains"][i], fmt::format("'{}' is not a domain or *.domain", d));
          ++i;
        }
      }
      if (e["cidrs"]) {
        size_t i = 0;
        for (const auto& c : r.strings(e["cidrs"], "expected.cidrs")) {
          auto cidr = Cidr::parse(c);
          if (!cidr) r.fail(e["cidrs"][i], fmt::format("'{}' is not an address or CIDR", c));
          t.expected_cidrs.push_back(*cidr);
          ++i;
        }
      }
      if (e["ports"]) {
        if (!e["ports"].IsSequence()) r.fail(e["ports"], "'expected.ports' must be a list");
        for (const auto& p : e["ports"])
          t.expected_ports.push_back(static_cast<uint16_t>(r.number(p, "expected.ports[]", 1, 65535)));
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

const std::vector<ToolSpec>& builtin_tools() {
  static const std::vector<ToolSpec> tools = [] {
    YamlReader r("built-in catalog.yaml");
    YAML::Node root = r.load(kBuiltinToolCatalog);
    r.expect_keys(root, "the top level", {"tools"});
    return parse_tools(root["tools"], r);
  }();
  return tools;
}

std::vector<ToolSpec> merge_tools(const std::vector<ToolSpec>& builtin,
                                  const std::vector<ToolSpec>& user) {
  std::vector<ToolSpec> out = user;
  std::set<std::string> taken;
  for (const auto& t : user) taken.insert(t.name);
  for (const auto& t : builtin)
    if (!taken.count(t.name)) out.push_back(t);
  return out;
}

}  // namespace egressd

#include "config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "metrics.h"

namespace egressd {
namespace {

class Reader {
 public:
  explicit Reader(std::string name) : name_(std::move(name)) {}

  [[noreturn]] void fail(const YAML::Node& n, const std::string& msg) const {
    throw ConfigError(fmt::format("{}:{}: {}", name_, n.Mark().line + 1, msg));
  }

  void expect_keys(const YAML::Node& map, const std::string& where,
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

  std::string string(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) fail(n, fmt::format("'{}' must be a string", key));
    return n.as<std::string>();
  }

  uint64_t number(const YAML::Node& n, const std::string& key, uint64_t min, uint64_t max) const {
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

 private:
  std::string name_;
};

bool is_power_of_two(uint64_t v) { return v && !(v & (v - 1)); }

}  // namespace

void load_config_text(const std::string& text, const std::string& name, Config& cfg) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{}:{}: {}", name, e.mark.line + 1, e.msg));
  }
  if (root.IsNull()) return;
  Reader r(name);
  r.expect_keys(root, "the top level", {"metrics", "log", "flows", "kernel", "redaction"});

  if (auto m = root["metrics"]) {
    r.expect_keys(m, "metrics", {"address"});
    if (m["address"]) {
      cfg.metrics_address = r.string(m["address"], "metrics.address");
      try {
        parse_host_port(cfg.metrics_address);
      } catch (const std::invalid_argument& e) {
        r.fail(m["address"], fmt::format("metrics.address: {}", e.what()));
      }
    }
  }
  if (auto l = root["log"]) {
    r.expect_keys(l, "log", {"file"});
    if (l["file"]) cfg.log_file = r.string(l["file"], "log.file");
  }
  if (auto f = root["flows"]) {
    r.expect_keys(f, "flows", {"update_interval_seconds", "poll_interval_seconds"});
    if (f["update_interval_seconds"])
      cfg.update_interval_ms = 1000 * r.number(f["update_interval_seconds"], "flows.update_interval_seconds", 1, 86400);
    if (f["poll_interval_seconds"])
      cfg.poll_interval_ms = 1000 * r.number(f["poll_interval_seconds"], "flows.poll_interval_seconds", 1, 3600);
  }
  if (auto k = root["kernel"]) {
    r.expect_keys(k, "kernel", {"ring_buffer_bytes", "process_table_entries", "flow_table_entries"});
    if (k["ring_buffer_bytes"]) {
      auto v = r.number(k["ring_buffer_bytes"], "kernel.ring_buffer_bytes", 1 << 16, 1u << 30);
      if (!is_power_of_two(v)) r.fail(k["ring_buffer_bytes"], "'kernel.ring_buffer_bytes' must be a power of two");
      cfg.load.ring_buffer_bytes = static_cast<uint32_t>(v);
    }
    if (k["process_table_entries"])
      cfg.load.process_table_entries = static_cast<uint32_t>(
          r.number(k["process_table_entries"], "kernel.process_table_entries", 1024, 1u << 22));
    if (k["flow_table_entries"])
      cfg.load.flow_table_entries = static_cast<uint32_t>(
          r.number(k["flow_table_entries"], "kernel.flow_table_entries", 1024, 1u << 22));
  }
  if (auto red = root["redaction"]) {
    r.expect_keys(red, "redaction", {"patterns"});
    if (auto pats = red["patterns"]) {
      if (!pats.IsSequence()) r.fail(pats, "'redaction.patterns' must be a list of regular expressions");
      for (const auto& p : pats) {
        std::string re = r.string(p, "redaction.patterns[]");
        try {
          std::regex check(re, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
          r.fail(p, fmt::format("invalid regular expression '{}': {}", re, e.what()));
        }
        cfg.redact_patterns.push_back(re);
      }
    }
  }
}

void load_config_file(const std::string& path, Config& cfg) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("cannot read config {}: {}", path, strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw ConfigError(fmt::format("cannot read config {}: {}", path, strerror(errno)));
  load_config_text(ss.str(), path, cfg);
}

}  // namespace egressd

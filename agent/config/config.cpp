#include "config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "metrics.h"
#include "redact.h"
#include "yaml_reader.h"

namespace egressd {
namespace {

bool is_power_of_two(uint64_t v) { return v && !(v & (v - 1)); }

}  // namespace

void load_config_text(const std::string& text, const std::string& name, Config& cfg) {
  YamlReader r(name);
  YAML::Node root = r.load(text);
  if (root.IsNull()) return;
  r.expect_keys(root, "the top level", {"metrics", "log", "flows", "kernel", "redaction", "tools", "state"});
  if (auto st = root["state"]) {
    r.expect_keys(st, "state", {"pin", "instance"});
    if (st["pin"]) cfg.state.pin = r.boolean(st["pin"], "state.pin");
    if (st["instance"]) {
      cfg.state.instance = r.string(st["instance"], "state.instance");
      try {
        check_instance_name(cfg.state.instance, "state.instance");
      } catch (const ConfigError& e) {
        r.fail(st["instance"], e.what());
      }
    }
  }
  if (root["tools"]) cfg.tools = parse_tools(root["tools"], r);

  if (auto m = root["metrics"]) {
    r.expect_keys(m, "metrics", {"address", "max_series", "max_destinations_per_binary", "series_idle_seconds",
                                 "basic_auth", "destination_label"});
    if (m["destination_label"]) {
      const std::string v = r.string(m["destination_label"], "metrics.destination_label");
      if (v == "name") cfg.destination_label = DestinationLabel::kName;
      else if (v == "registered_domain") cfg.destination_label = DestinationLabel::kRegisteredDomain;
      else if (v == "address") cfg.destination_label = DestinationLabel::kAddress;
      else r.fail(m["destination_label"], fmt::format("'metrics.destination_label' must be name, registered_domain or address, not '{}'", v));
    }
    if (const YAML::Node a = m["basic_auth"]) {
      r.expect_keys(a, "metrics.basic_auth", {"username", "password_file"});
      if (!a["username"] || !a["password_file"])
        r.fail(a, "metrics.basic_auth needs 'username' and 'password_file'");
      cfg.metrics_auth.username = r.string(a["username"], "metrics.basic_auth.username");
      const std::string file = r.string(a["password_file"], "metrics.basic_auth.password_file");
      std::ifstream in(file);
      if (!in) r.fail(a["password_file"], fmt::format("cannot read password file {}: {}", file, strerror(errno)));
      std::getline(in, cfg.metrics_auth.password);
      if (cfg.metrics_auth.password.empty()) r.fail(a["password_file"], fmt::format("password file {} is empty", file));
    }
    if (m["max_series"]) cfg.series.max_series = r.number(m["max_series"], "metrics.max_series", 10, 1'000'000);
    if (m["max_destinations_per_binary"])
      cfg.series.max_destinations =
          r.number(m["max_destinations_per_binary"], "metrics.max_destinations_per_binary", 1, 100'000);
    if (m["series_idle_seconds"])
      cfg.series.idle_ns = 1'000'000'000ULL * r.number(m["series_idle_seconds"], "metrics.series_idle_seconds", 10, 30 * 86400);
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
    r.expect_keys(l, "log", {"file", "max_size_mb", "max_files"});
    if (l["file"]) cfg.log.path = r.string(l["file"], "log.file");
    if (l["max_size_mb"]) cfg.log.max_bytes = (1ULL << 20) * r.number(l["max_size_mb"], "log.max_size_mb", 1, 1'000'000);
    if (l["max_files"]) cfg.log.max_files = static_cast<unsigned>(r.number(l["max_files"], "log.max_files", 0, 1000));
  }
  if (auto f = root["flows"]) {
    r.expect_keys(f, "flows", {"update_interval_seconds", "poll_interval_seconds", "log", "summary_interval_seconds"});
    if (f["log"]) {
      const std::string v = r.string(f["log"], "flows.log");
      if (v != "each" && v != "summary") r.fail(f["log"], fmt::format("'flows.log' must be each or summary, not '{}'", v));
      cfg.summarize_flows = v == "summary";
    }
    if (f["summary_interval_seconds"])
      cfg.summary_interval_ms =
          1000 * r.number(f["summary_interval_seconds"], "flows.summary_interval_seconds", 1, 86400);
    if (f["update_interval_seconds"])
      cfg.update_interval_ms = 1000 * r.number(f["update_interval_seconds"], "flows.update_interval_seconds", 1, 86400);
    if (f["poll_interval_seconds"])
      cfg.poll_interval_ms = 1000 * r.number(f["poll_interval_seconds"], "flows.poll_interval_seconds", 1, 3600);
  }
  if (auto k = root["kernel"]) {
    r.expect_keys(k, "kernel",
                  {"ring_buffer_bytes", "process_table_entries", "flow_table_entries", "bytes_hook", "socket_state",
                   "path_walk", "refuse_programs"});
    auto choice = [&](const char* key, std::initializer_list<const char*> allowed, std::string& out) {
      if (!k[key]) return;
      const std::string name = fmt::format("kernel.{}", key);
      const std::string v = r.string(k[key], name);
      if (std::find(allowed.begin(), allowed.end(), v) == allowed.end())
        r.fail(k[key], fmt::format("'{}' must be {} or {}", name,
                                   fmt::join(allowed.begin(), allowed.end() - 1, ", "), *(allowed.end() - 1)));
      out = v;
    };
    choice("bytes_hook", {"auto", "sock_send_length", "fexit", "kprobe"}, cfg.load.bytes_hook);
    choice("socket_state", {"auto", "sk_storage", "hash"}, cfg.load.socket_state);
    choice("path_walk", {"auto", "bpf_loop", "bounded"}, cfg.load.path_walk);
    // Test switch: programs counted as refused (names checked at load).
    if (k["refuse_programs"]) cfg.load.refuse_programs = r.string(k["refuse_programs"], "kernel.refuse_programs");
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
        if (std::string err = check_pattern(re); !err.empty())
          r.fail(p, fmt::format("invalid regular expression '{}': {}", re, err));
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

void check_instance_name(const std::string& name, const std::string& what) {
  // bpffs refuses names with a dot.
  const bool ok = !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
  if (!ok) throw ConfigError(fmt::format("'{}' must be 1 to 64 letters, digits, '_' or '-'; got '{}'", what, name));
}

PipelineOptions run_options(const Config& cfg) {
  PipelineOptions o = pipeline_options(cfg);
  if (cfg.state.pin) {
    o.load.pin.instance = cfg.state.instance;
    o.load.pin.fresh = cfg.state.fresh;
  }
  return o;
}

PipelineOptions pipeline_options(const Config& cfg) {
  PipelineOptions o;
  o.load = cfg.load;
  o.drain_interval_ms = cfg.drain_interval_ms;
  o.poll_interval_ms = cfg.poll_interval_ms;
  o.update_interval_ms = cfg.update_interval_ms;
  o.summary_interval_ms = cfg.summarize_flows ? cfg.summary_interval_ms : 0;
  o.series = cfg.series;
  o.destination_label = cfg.destination_label;
  o.redact_patterns = cfg.redact_patterns;
  o.tools = cfg.tools;
  o.proc_root = cfg.proc_root;
  return o;
}

}  // namespace egressd

// egressd: attributes outbound bytes to the processes and tools that send them.
#include <CLI/CLI.hpp>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "agent.h"
#include "bpf_loader.h"
#include "config.h"
#include "feature_probe.h"
#include "metrics.h"
#include "version.h"

namespace {

// Exit codes (docs/CLI.md).
constexpr int kExitOk = 0;
constexpr int kExitUnusable = 1;  // this kernel or these privileges cannot run egressd
constexpr int kExitUsage = 2;     // bad flags or configuration
constexpr int kExitRuntime = 3;   // failed while starting or running (port in use, log file)

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop.store(true); }

bool g_verbose = false;
int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (!g_verbose && level != LIBBPF_WARN) return 0;
  if (!g_verbose) return 0;  // warnings are summarized by the loader's error
  return vfprintf(stderr, fmt, args);
}

int cmd_check(const std::string& proc_root, bool try_load) {
  using namespace egressd;
  FeatureReport r = probe_features(proc_root);
  fmt::print("egressd {} on Linux {}\n", EGRESSD_VERSION, r.kernel_release);
  for (const auto& c : r.checks)
    fmt::print("  {:<4} {:<30} {}\n", c.ok ? "ok" : (c.required ? "FAIL" : "no"), c.name, c.detail);
  std::string problem = r.first_problem();
  if (problem.empty() && try_load) {
    try {
      LoadOptions opts;
      opts.cgroup_path = r.cgroup2_path;
      auto bpf = BpfPrograms::load(opts);
      fmt::print("  ok   {:<30} {}\n", "BPF programs load", "verifier accepted every program");
      fmt::print("hooks that egressd run uses:\n");
      for (const auto& h : bpf->programs()) fmt::print("  {}\n", h);
      fmt::print("cgroup hooks attach at {}\n", r.cgroup2_path);
    } catch (const std::exception& e) {
      problem = fmt::format("BPF programs do not load: {}", e.what());
    }
  }
  if (!problem.empty()) {
    fmt::print(stderr, "egressd: cannot run here: {}\n", problem);
    return kExitUnusable;
  }
  fmt::print("egressd can run here\n");
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"egressd: attributes every outbound byte to the process, executable and AI tool that sent it"};
  app.set_version_flag("--version", std::string("egressd ") + EGRESSD_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // -v works before or after the command
  app.add_flag("-v,--verbose", g_verbose, "Print libbpf's messages (verifier logs) to stderr");

  std::string config_path, metrics_addr, log_file;
  auto* run = app.add_subcommand("run", "Run the agent: JSON event log and Prometheus metrics");
  run->add_option("-c,--config", config_path, "YAML configuration file")->check(CLI::ExistingFile);
  run->add_option("--metrics-addr", metrics_addr,
                  "HOST:PORT for Prometheus metrics (default 127.0.0.1:8789; port 0 picks one)");
  run->add_option("--log-file", log_file, "Event log path, or - for stdout (default -)");

  bool no_load = false;
  auto* check = app.add_subcommand("check", "Report kernel features, privileges and the hooks egressd would use");
  check->add_flag("--no-load", no_load, "Only probe features; do not try to load the BPF programs");

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line on stderr, and the usage hint.
    fmt::print(stderr, "egressd: {}\nRun 'egressd --help' for usage.\n", e.what());
    return kExitUsage;
  }
  libbpf_set_print(libbpf_print);

  if (check->parsed()) return cmd_check("/proc", !no_load);

  egressd::Config cfg;
  try {
    if (!config_path.empty()) egressd::load_config_file(config_path, cfg);
    if (!metrics_addr.empty()) {
      egressd::parse_host_port(metrics_addr);
      cfg.metrics_address = metrics_addr;
    }
    if (!log_file.empty()) cfg.log.path = log_file;
  } catch (const std::exception& e) {
    fmt::print(stderr, "egressd: {}\n", e.what());
    return kExitUsage;
  }

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  egressd::Agent agent(cfg);
  try {
    agent.start();
  } catch (const egressd::LoaderError& e) {
    fmt::print(stderr, "egressd: {}\n", e.what());
    return kExitUnusable;
  } catch (const std::exception& e) {
    fmt::print(stderr, "egressd: {}\n", e.what());
    const std::string what = e.what();
    const bool unusable = what.rfind("privileges:", 0) == 0 || what.rfind("cgroup v2:", 0) == 0 ||
                          what.rfind("kernel BTF:", 0) == 0 || what.rfind("tp_btf/", 0) == 0 ||
                          what.rfind("helper ", 0) == 0 || what.rfind("iter/", 0) == 0;
    return unusable ? kExitUnusable : kExitRuntime;
  }
  return agent.run(g_stop);
}

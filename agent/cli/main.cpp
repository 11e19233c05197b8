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
#include "bpf_programs.h"
#include "config.h"
#include "errors.h"
#include "feature_probe.h"
#include "log.h"
#include "metrics.h"
#include "trace.h"
#include "version.h"

namespace {

// Exit codes (docs/CLI.md).
constexpr int kExitOk = 0;
constexpr int kExitUnusable = 1;  // this kernel or these privileges cannot run egressd
constexpr int kExitUsage = 2;     // bad flags or configuration
constexpr int kExitRuntime = 3;   // failed while starting or running (port in use, log file)

std::atomic<bool> g_stop{false};
std::atomic<bool> g_interrupted{false};  // SIGINT: a person stopped it (Ctrl-C)

void on_signal(int sig) {
  if (sig == SIGINT) g_interrupted.store(true);
  g_stop.store(true);
}

// By the kind of error (base/errors.h), never by its wording: bad input (2),
// this kernel or these privileges (1), anything else while starting or
// running (3).
int exit_code_for(const std::exception& e) {
  if (dynamic_cast<const egressd::UsageError*>(&e) || dynamic_cast<const egressd::ConfigError*>(&e))
    return kExitUsage;
  if (dynamic_cast<const egressd::UnusableHere*>(&e)) return kExitUnusable;
  return kExitRuntime;
}

// Prints the one-line reason egressd stops with and returns its exit code.
int fail(const std::exception& e) {
  egressd::log_error("{}", e.what());
  return exit_code_for(e);
}

int cmd_check(const std::string& proc_root, bool try_load, const egressd::LoadOptions& kernel_opts) {
  using namespace egressd;
  FeatureReport r = probe_features(proc_root);
  fmt::print("egressd {} on Linux {}\n", EGRESSD_VERSION, r.kernel_release);
  for (const auto& c : r.checks)
    fmt::print("  {:<4} {:<30} {}\n", c.ok ? "ok" : (c.required ? "FAIL" : "no"), c.name, c.detail);
  std::string problem = r.first_problem();
  if (problem.empty() && !try_load) {
    fmt::print(
        "the verifier was not asked (--no-load): only the verifier knows which programs this kernel build "
        "takes; run egressd check without --no-load to load them\n");
    fmt::print("egressd may run here: the kernel features above are present\n");
    return kExitOk;
  }
  if (problem.empty() && try_load) {
    try {
      LoadOptions opts = kernel_opts;
      opts.cgroup_path = r.cgroup2_path;
      auto bpf = BpfPrograms::load(opts);
      const unsigned refusals = bpf->load_attempts() - 1;
      fmt::print("  ok   {:<30} {}\n", "BPF programs load",
                 refusals ? fmt::format("the verifier took the plan below after refusing {} program(s) ({} "
                                        "loads, {:.0f} ms)",
                                        refusals, bpf->load_attempts(), bpf->load_ns() / 1e6)
                          : fmt::format("the verifier took every program of the first plan ({:.0f} ms)",
                                        bpf->load_ns() / 1e6));
      fmt::print("hooks that egressd run uses, per job (the first way of each the kernel accepted):\n");
      for (const auto& j : bpf->plan().jobs) {
        fmt::print("  {:<26} {}\n", j.job, j.hook);
        for (const auto& r : j.refused) fmt::print("  {:<26}   refused: {}\n", "", r);
      }
      for (const auto& note : bpf->notes()) fmt::print("  note: {}\n", note);
      fmt::print("programs:\n");
      for (const auto& h : bpf->programs()) fmt::print("  {}\n", h);
      fmt::print("cgroup hooks attach at {}\n", r.cgroup2_path);
    } catch (const std::exception& e) {
      problem = fmt::format("BPF programs do not load: {}", e.what());
    }
  }
  if (!problem.empty()) {
    log_error("cannot run here: {}", problem);
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

  std::string config_path, metrics_addr, log_file, instance;
  bool fresh = false;
  auto* run = app.add_subcommand("run", "Run the agent: JSON event log and Prometheus metrics");
  run->add_option("-c,--config", config_path, "YAML configuration file")->check(CLI::ExistingFile);
  run->add_option("--metrics-addr", metrics_addr,
                  "HOST:PORT for Prometheus metrics (default 127.0.0.1:8789; port 0 picks one)");
  run->add_option("--log-file", log_file, "Event log path, or - for stdout (default -)");
  run->add_option("--instance", instance,
                  "Name of this agent's pinned kernel state in /sys/fs/bpf/egressd/ (default: default)");
  run->add_flag("--fresh", fresh, "Discard the pinned kernel state of an earlier agent instead of adopting it");

  egressd::TraceOptions trace_opts;
  auto* trace = app.add_subcommand(
      "trace", "Follow a tool, binary, process tree, cgroup or command live; summary on exit");
  trace->add_option("--tool", trace_opts.tools, "Follow processes of this tool (catalog name), repeatable")
      ->allow_extra_args(false);
  trace->add_option("--exe", trace_opts.exes,
                    "Follow this executable: path, glob, or bare file name; repeatable")
      ->allow_extra_args(false);
  trace->add_option("--pid", trace_opts.pids, "Follow this running process and its descendants; repeatable")
      ->allow_extra_args(false);
  trace->add_option("--comm", trace_opts.comms, "Follow processes whose task name matches (glob); repeatable")
      ->allow_extra_args(false);
  trace->add_option("--cgroup", trace_opts.cgroups,
                    "Follow processes in cgroups whose path contains this (or matches this glob), "
                    "e.g. a container id; repeatable")
      ->allow_extra_args(false);
  trace->add_option("--dest", trace_opts.destinations,
                    "Only events to this CIDR, address or domain (and its subdomains); repeatable")
      ->allow_extra_args(false);
  trace->add_option("--port", trace_opts.ports, "Only events to this destination port; repeatable")
      ->allow_extra_args(false);
  trace->add_flag("--json", trace_opts.json, "JSON lines in the event log's schema, then a trace-summary line");
  trace->add_option("--color", trace_opts.color, "auto (on a terminal), always or never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  trace->add_option("--report", trace_opts.report_path, "Write the summary with a timeline as an HTML file");
  trace->add_option("--duration", trace_opts.duration_s, "Stop after this many seconds")
      ->check(CLI::NonNegativeNumber);
  trace->add_option("-c,--config", trace_opts.config_path, "YAML configuration file (tools, redaction)")
      ->check(CLI::ExistingFile);
  trace->add_option("command", trace_opts.command,
                    "-- COMMAND ARGS: start it and follow it and everything it starts");

  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Print libbpf's messages (verifier logs) to stderr");

  bool no_load = false;
  auto* check = app.add_subcommand("check", "Report kernel features, privileges and the hooks egressd would use");
  check->add_flag("--no-load", no_load, "Only probe features; do not try to load the BPF programs");
  std::string check_config;
  check->add_option("-c,--config", check_config,
                    "YAML configuration file: its kernel section (forced hooks, sizes) is what gets loaded")
      ->check(CLI::ExistingFile);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line on stderr, and the usage hint.
    egressd::log_error("{}", e.what());
    fmt::print(stderr, "Run 'egressd --help' for usage.\n");
    return kExitUsage;
  }
  egressd::set_verbose(verbose);
  egressd::route_libbpf_messages();

  if (check->parsed()) {
    egressd::Config cfg;
    try {
      if (!check_config.empty()) egressd::load_config_file(check_config, cfg);
    } catch (const egressd::ConfigError& e) {
      return fail(e);
    }
    return cmd_check("/proc", !no_load, cfg.load);
  }

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (trace->parsed()) {
    try {
      return egressd::run_trace(trace_opts, g_stop);
    } catch (const std::exception& e) {
      return fail(e);
    }
  }

  egressd::Config cfg;
  try {
    if (!config_path.empty()) egressd::load_config_file(config_path, cfg);
    if (!metrics_addr.empty()) {
      egressd::parse_host_port(metrics_addr);
      cfg.metrics_address = metrics_addr;
    }
    if (!log_file.empty()) cfg.log.path = log_file;
    if (!instance.empty()) {
      egressd::check_instance_name(instance, "--instance");
      cfg.state.instance = instance;
    }
    cfg.state.fresh = fresh;
  } catch (const std::exception& e) {
    egressd::log_error("{}", e.what());
    return kExitUsage;  // the configuration file or a flag
  }

  egressd::Agent agent(cfg);
  try {
    agent.start();
  } catch (const std::exception& e) {
    return fail(e);
  }
  return agent.run(g_stop, &g_interrupted);
}

// egressd trace: an incident responder follows one tool, binary, process
// tree, command or cgroup live, and gets a summary of where it sent what.
//
// The kernel side is the agent's object loaded with trace_mode set: it still
// counts every socket in the kernel, but emits connection, close and payload
// events only for processes flagged as followed (bpf/lib/procs.h, traced()). The
// events then go through the agent's own process and flow tables, so a trace
// shows the same names, numbers and JSON as the event log.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "process_table.h"
#include "redact.h"
#include "tool_catalog.h"

namespace egressd {

struct TraceOptions {
  // Process selectors: a process is followed when it matches any of them.
  std::vector<std::string> tools;    // tool names from the catalog
  std::vector<std::string> exes;     // executable path or glob (also the exec'd file name)
  std::vector<uint32_t> pids;        // a process and its descendants
  std::vector<std::string> comms;    // comm (task name), exact or glob
  std::vector<std::string> cgroups;  // cgroup path glob, or a substring such as a container id
  // Event filters, applied to what followed processes do.
  std::vector<std::string> destinations;  // CIDR, address, domain or *.domain
  std::vector<uint16_t> ports;
  // -- CMD ARGS: started, and followed with everything it starts.
  std::vector<std::string> command;
  bool json = false;
  std::string color = "auto";  // auto, always, never
  std::string report_path;     // self-contained HTML summary
  double duration_s = 0;       // 0: until Ctrl-C (or until the command ends)
  std::string config_path;     // tools and redaction patterns, as for run
};

// Which processes a trace follows: those matching a selector, and every
// process started by a followed one (like strace -f). No selector and no
// command: every process.
class ProcessSelector {
 public:
  // Throws UsageError naming a bad value (an unknown tool, a
  // malformed glob).
  ProcessSelector(const TraceOptions& o, const std::vector<ToolSpec>& tools);

  bool follows_all() const { return all_; }
  // Whether a process is judged at each exec (executable, comm, tool or
  // cgroup selectors), rather than only by descent from marked processes.
  bool decides_at_exec() const;
  // cgroup_path: the process's cgroup v2 path relative to the mount ("" if
  // unknown).
  bool matches(const Process& p, const std::string& cgroup_path) const;
  // What is followed, for the start line, the summary and the report: the
  // command line through redactor, as process.command_line is.
  std::string describe(const Redactor& redactor) const;

 private:
  TraceOptions o_;
  std::set<uint32_t> pids_;
  bool all_ = false;
};

// Destination and port filters, on the events of followed processes. Empty:
// everything passes. A domain matches itself and its subdomains.
class DestinationFilter {
 public:
  // Throws UsageError for a value that is neither a CIDR, an
  // address nor a domain name.
  DestinationFilter(const std::vector<std::string>& destinations, const std::vector<uint16_t>& ports);
  bool matches(const nlohmann::json& event) const;

 private:
  std::vector<std::string> domains_;
  std::vector<Cidr> cidrs_;
  std::set<uint16_t> ports_;
};

// Totals per destination and per DNS question, from the events a trace
// showed. Bytes are each flow's last reported total (source.bytes).
class TraceSummary {
 public:
  struct Destination {
    std::string name, address, transport;
    uint16_t port = 0;
    uint64_t connections = 0, failed = 0, flows = 0, bytes = 0;
    uint64_t first_ns = 0, last_ns = 0;  // wall clock
    std::set<std::string> binaries;
  };
  struct Query {
    std::string name, type;
    uint64_t count = 0, first_ns = 0, last_ns = 0;
    std::set<std::string> resolvers, binaries;
    std::vector<uint64_t> times;  // the first ones, for the timeline
  };
  struct FlowSpan {  // for the timeline
    std::string destination_key;
    uint64_t start_ns = 0, end_ns = 0, bytes = 0;
    std::string transport, result;
  };

  void add(const nlohmann::json& event);
  void set_window(uint64_t start_wall_ns, uint64_t end_wall_ns) {
    start_ns_ = start_wall_ns;
    end_ns_ = end_wall_ns;
  }

  // Destinations by bytes, then connections, then name.
  std::vector<Destination> destinations() const;
  std::vector<Query> queries() const;
  std::vector<FlowSpan> spans() const;
  uint64_t events() const { return events_; }

  nlohmann::json to_json() const;
  std::string text(bool color) const;
  // A self-contained HTML page (inline CSS and SVG, no script) with the
  // tables and a timeline chart; title names what was traced.
  std::string html(const std::string& title) const;

 private:
  struct Flow {
    Destination key;  // name, address, port, transport; totals unused
    std::string binary, result;
    bool attempted = false;
    uint64_t bytes = 0, first_ns = 0, last_ns = 0;
  };
  std::map<std::string, Flow> flows_;  // by egressd.flow.id
  std::map<std::pair<std::string, std::string>, Query> queries_;
  uint64_t start_ns_ = 0, end_ns_ = 0, events_ = 0;
};

// The live view: a header and one aligned line per event. With color, ANSI
// colours mark the event kind and failures.
std::string trace_header(bool color);
std::string trace_line(const nlohmann::json& event, bool color);

// "2026-11-24T09:00:00.123456Z" -> ns since the epoch; 0 if malformed.
uint64_t parse_iso8601_ns(const std::string& text);

// Runs `egressd trace` until Ctrl-C, the duration, or the end of the
// command. Returns the exit code: the command's when one was started.
// Throws like Agent::start when the kernel side cannot be set up, and
// UsageError for bad options.
int run_trace(const TraceOptions& o, const std::atomic<bool>& stop);

}  // namespace egressd

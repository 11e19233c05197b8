// The data path that both front ends drive, `egressd run` (run/agent.h) and
// `egressd trace` (trace/trace.h): the loaded programs, the ring buffer and
// the tables between them. A front end builds one, loads and attaches it,
// calls step() until it stops, then finish(); it adds only what is its own
// (metrics and the event log for run; the selection, live view and report
// for trace).
//
//   kernel (BpfPrograms) --ring buffer--> decode --> ProcessTable, FlowTable
//                        --maps, polled--> FlowTable --> EventSink, EgressCounters
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bpf_programs.h"
#include "counted_ledger.h"
#include "ecs.h"
#include "egress_counters.h"
#include "event_decoder.h"
#include "event_sink.h"
#include "feature_probe.h"
#include "flow_table.h"
#include "process_table.h"
#include "redact.h"
#include "tool_matcher.h"

struct ring_buffer;

namespace egressd {

struct PipelineOptions {
  LoadOptions load;                       // the cgroup path is filled in from the features
  uint64_t drain_interval_ms = 100;       // longest wait before events are read
  uint64_t poll_interval_ms = 2'000;      // read live counters from the kernel
  uint64_t update_interval_ms = 60'000;   // flow-updated for long-lived flows
  uint64_t summary_interval_ms = 0;       // flows.log: summary; 0: a line per flow
  uint64_t keep_exited_ms = 120'000;      // flows may end after their process
  SeriesBudget series;
  DestinationLabel destination_label = DestinationLabel::kName;
  std::vector<std::string> redact_patterns;  // validated by the configuration
  std::vector<ToolSpec> tools;               // merged over the built-in catalog
  std::string proc_root = "/proc";
};

// What the loop counted; read on the loop's thread.
struct PipelineStats {
  uint64_t records = 0;                           // ring buffer records, decodable or not
  std::map<std::string, uint64_t> ring_events;    // by event type: exec, connect, ...
  std::map<std::string, uint64_t> decode_errors;  // by reason: decode_short, ...
  uint64_t poll_errors = 0;                       // ring_buffer__poll failures other than EINTR
  uint64_t clock_steps = 0;                       // wall clock steps (Clock::kStepNs or more) followed
  uint64_t checkpoint_failures = 0;               // metric totals not checkpointed
  uint64_t checkpoint_ns = 0;                     // how long the last checkpoint took
  uint64_t ledger_write_failures = 0;             // counted_ledger.h: counts that would not survive a kill
  uint64_t process_record_failures = 0;           // exec/fork records not kept in the pinned state
  uint64_t flow_extra_entries = 0;                // flow_extra entries at the last poll
};

class Pipeline {
 public:
  // Checks the kernel's features and builds the process table. Throws
  // UnusableHere when this kernel or these privileges cannot run egressd,
  // before anything else is opened (an event log, a port).
  explicit Pipeline(PipelineOptions opts);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Attaches the programs, reads the processes already running into the
  // process table (oldest first, so parents are known and tagged before their
  // children) and opens the ring buffer. Returns those processes' records.
  std::vector<ExecRecord> attach();

  // Builds the flow table, whose events go to sink, and loads the programs
  // (nothing is attached yet). Throws LoaderError (an UnusableHere) when what
  // the kernel takes cannot run, std::runtime_error for anything else. Before
  // attach(); flows() and bpf() are valid from here on.
  void load(EventSink& sink);

  // Called on the loop's thread after each kernel event has been applied to
  // the tables (a tracer decides there whom to follow).
  void set_event_hook(std::function<void(const Event&)> hook) { hook_ = std::move(hook); }

  // One round: waits up to the drain interval for events and applies them,
  // reads the kernel's counters when due (or when a closed socket's counters
  // wait), reports long-lived flows and forgets processes long gone. Returns
  // the time of the round (CLOCK_BOOTTIME ns).
  uint64_t step();
  // Nothing counted is lost at the end: reads what is left in the ring buffer
  // and the counters of every open socket, then reports each open flow with
  // its count so far (flow-updated with event.reason: agent-stopped,
  // trace-stopped). Returns the time of the end.
  uint64_t finish(const char* reason);

  const PipelineOptions& options() const { return opts_; }
  const FeatureReport& features() const { return features_; }
  const HostInfo& host() const { return host_; }
  const Clock& clock() const { return clock_; }
  const Redactor& redactor() const { return redactor_; }
  const ToolMatcher& tools() const { return tools_; }
  EgressCounters& counters() { return counters_; }
  ProcessTable& procs() { return procs_; }
  FlowTable& flows() { return *flows_; }
  BpfPrograms& bpf() { return *bpf_; }
  const PipelineStats& stats() const { return stats_; }

 private:
  void handle(const void* data, size_t len);
  void apply(const Event& ev);
  void poll_counters(bool live_sockets);
  void checkpoint(uint64_t now);
  void replay_process_records(const std::vector<ExecRecord>& running, uint64_t now_ns);
  void keep_process_record(const Event& ev, const void* data, size_t len);

  PipelineOptions opts_;
  FeatureReport features_;
  HostInfo host_;
  Clock clock_;
  Redactor redactor_;
  ToolMatcher tools_;
  EgressCounters counters_;
  ProcessTable procs_;
  std::unique_ptr<FlowTable> flows_;
  std::unique_ptr<BpfPrograms> bpf_;
  std::unique_ptr<CountedLedger> ledger_;  // with pinned state only
  bool stale_entries_ = false;             // adopted: the ledger has entries of flows gone
  ring_buffer* ring_ = nullptr;
  std::function<void(const Event&)> hook_;
  PipelineStats stats_;
  uint64_t next_poll_ns_ = 0;
  static constexpr uint64_t kCheckpointEveryNs = 250'000'000;
  uint64_t checkpointed_changes_ = 0;
  uint64_t checkpointed_ns_ = 0;
  uint64_t checkpoint_gap_ns_ = kCheckpointEveryNs;
};

}  // namespace egressd

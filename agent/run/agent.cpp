#include "agent.h"

#include <mutex>

#include "ecs.h"
#include "event_log.h"
#include "metrics.h"
#include "pipeline.h"
#include "privileges.h"
#include "version.h"

namespace egressd {
namespace {

constexpr uint64_t kMs = 1'000'000;

}  // namespace

// egressd run: the pipeline, with the event log as its sink and a metrics
// server that reads its counters and health.
struct Agent::State {
  explicit State(Config c) : cfg(std::move(c)) {}

  Config cfg;
  std::unique_ptr<EventLog> log;
  std::unique_ptr<Pipeline> pipeline;
  std::unique_ptr<MetricsServer> metrics;

  // Health numbers the event loop publishes and scrapes read.
  mutable std::mutex health_mu;
  PipelineStats stats;
  uint64_t open_flows = 0, processes = 0, log_lines = 0, log_failures = 0, log_dropped = 0, log_reopens = 0;
  std::map<std::string, uint64_t> parse_failures;
  std::map<std::string, uint64_t> unsent_udp_connects;

  AgentHealth health() const;
  // The event loop went round within the last 10 seconds.
  bool healthy() const { return pipeline->clock().boot_now_ns() < last_loop_ns.load() + 10'000 * kMs; }
  std::atomic<uint64_t> last_loop_ns{0};
  std::string privileges_kept;  // "" once every capability is dropped
  void publish_health();
  void log_agent(const char* action, const char* type);
};

AgentHealth Agent::State::health() const {
  AgentHealth h;
  BpfPrograms& bpf = pipeline->bpf();
  auto k = bpf.kernel_stats();
  h.events_lost["ringbuf_full"] = k[KSTAT_RINGBUF_FULL];
  h.map_full["procs"] = k[KSTAT_PROC_MAP_FULL];
  h.map_full["flow_extra"] = k[KSTAT_FLOW_MAP_FULL];
  h.map_full["sk_storage"] = k[KSTAT_SK_STORAGE_FAIL];
  h.truncated["executable"] = k[KSTAT_PATH_TRUNCATED];
  h.truncated["args"] = k[KSTAT_ARGS_TRUNCATED];
  h.kernel_read_failures = k[KSTAT_READ_FAIL];
  auto [entries, capacity] = bpf.process_map_fill();
  h.process_map_entries = entries;
  h.process_map_capacity = capacity;
  h.flow_map_capacity = bpf.flow_map_capacity();
  h.programs = bpf.program_stats();
  h.hooks = bpf.hook_plan();
  h.pinned_state = pin_outcome_name(bpf.pin_outcome());
  for (const auto& job : bpf.plan().jobs)
    for (const auto& r : job.refused) h.refused_hooks.push_back({job.job, r});
  std::lock_guard lock(health_mu);
  for (const auto& [reason, n] : stats.decode_errors) h.events_lost[reason] = n;
  h.ring_events = stats.ring_events;
  h.open_flows = open_flows;
  h.processes = processes;
  h.log_lines = log_lines;
  h.log_write_failures = log_failures;
  h.log_dropped = log_dropped;
  h.log_reopens = log_reopens;
  h.clock_steps = stats.clock_steps;
  h.checkpoint_failures = stats.checkpoint_failures;
  h.pinned_discarded_flows = pipeline->bpf().discarded_flows();
  h.ledger_write_failures = stats.ledger_write_failures;
  h.process_record_failures = stats.process_record_failures;
  h.parse_failures = parse_failures;
  h.unsent_udp_connects = unsent_udp_connects;
  h.flow_map_entries = stats.flow_extra_entries;
  h.series_folded = pipeline->counters().folded();
  h.series_expired = pipeline->counters().expired();
  return h;
}

void Agent::State::publish_health() {
  FlowTable& flows = pipeline->flows();
  std::lock_guard lock(health_mu);
  stats = pipeline->stats();
  open_flows = flows.open_flows();
  processes = pipeline->procs().size();
  log_lines = log->lines();
  log_failures = log->write_failures();
  log_dropped = log->dropped();
  log_reopens = log->reopens();
  parse_failures = flows.parse_failures();
  unsent_udp_connects = flows.unsent_udp_connects();
}

void Agent::State::log_agent(const char* action, const char* type) {
  const Clock& clock = pipeline->clock();
  BpfPrograms& bpf = pipeline->bpf();
  nlohmann::json j = ecs_event(pipeline->host(), action, "event", {"host"}, {type},
                               clock.to_wall_ns(clock.boot_now_ns()));
  j["egressd"]["metrics"]["address"] = metrics ? metrics->bound_address() : "";
  j["egressd"]["hooks"] = bpf.attached();
  for (const auto& note : bpf.notes()) j["egressd"]["kernel"]["notes"].push_back(note);
  for (const auto& job : bpf.plan().jobs) {
    nlohmann::json o = {{"job", job.job}, {"hook", job.hook}};
    if (!job.refused.empty()) o["refused"] = job.refused;
    j["egressd"]["kernel"]["jobs"].push_back(std::move(o));
  }
  j["egressd"]["kernel"]["release"] = pipeline->features().kernel_release;
  nlohmann::json pinned = {{"state", pin_outcome_name(bpf.pin_outcome())}};
  if (!bpf.pin_dir().empty()) pinned["directory"] = bpf.pin_dir();
  if (!bpf.pin_reason().empty()) pinned["reason"] = bpf.pin_reason();
  if (bpf.pin_outcome() == PinOutcome::kDiscarded) pinned["discarded_flows"] = bpf.discarded_flows();
  j["egressd"]["kernel"]["pinned"] = std::move(pinned);
  j["egressd"]["privileges"]["capabilities"] = privileges_kept.empty() ? "none" : "kept";
  if (!privileges_kept.empty()) j["egressd"]["privileges"]["reason"] = privileges_kept;
  log->write(j);
  log->flush();
}

Agent::Agent(Config cfg) : s_(std::make_unique<State>(std::move(cfg))) {}

Agent::~Agent() = default;

void Agent::start() {
  State& s = *s_;
  s.pipeline = std::make_unique<Pipeline>(run_options(s.cfg));  // a kernel that cannot: exit 1 first
  s.log = EventLog::open(s.cfg.log);
  s.pipeline->load(*s.log);
  // Listen before attaching: a port in use fails fast, with nothing attached.
  auto collector = std::make_shared<AgentCollector>(
      s.pipeline->counters(), [&s] { return s.health(); }, EGRESSD_VERSION);
  s.metrics = std::make_unique<MetricsServer>(s.cfg.metrics_address, collector, s.cfg.metrics_auth,
                                              [&s] { return s.healthy(); });
  s.pipeline->attach();
  // Everything that needed privilege is done: programs attached, maps and
  // iterators open, the port bound.
  s.privileges_kept = drop_capabilities([&s] { return s.pipeline->bpf().map_access_works(); });
  s.publish_health();
  s.last_loop_ns = s.pipeline->clock().boot_now_ns();
  s.log_agent("agent-started", "start");
}

int Agent::run(const std::atomic<bool>& stop, const std::atomic<bool>* unpin) {
  State& s = *s_;
  while (!stop.load()) {
    s.last_loop_ns = s.pipeline->step();
    s.publish_health();
  }
  s.pipeline->finish("agent-stopped");
  if (unpin && unpin->load()) s.pipeline->bpf().unpin();
  s.log_agent("agent-stopped", "end");
  return 0;
}

}  // namespace egressd

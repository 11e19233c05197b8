#include "agent.h"

#include <bpf/libbpf.h>
#include <fmt/format.h>

#include <algorithm>
#include <mutex>

#include "bpf_loader.h"
#include "ecs.h"
#include "egress_counters.h"
#include "event_decoder.h"
#include "event_log.h"
#include "feature_probe.h"
#include "flow_table.h"
#include "metrics.h"
#include "pipeline.h"
#include "privileges.h"
#include "process_table.h"
#include "redact.h"
#include "tool_catalog.h"
#include "tool_matcher.h"
#include "version.h"

namespace egressd {
namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kKeepExitedNs = 120'000 * kMs;  // flows may end after their process

const char* event_type_name(uint16_t type) {
  switch (type) {
    case EVENT_EXEC: return "exec";
    case EVENT_FORK: return "fork";
    case EVENT_EXIT: return "exit";
    case EVENT_CONNECT: return "connect";
    case EVENT_CONNECT_RESULT: return "connect_result";
    case EVENT_SOCK_CLOSE: return "close";
    case EVENT_PAYLOAD: return "payload";
    default: return "unknown";
  }
}

}  // namespace

struct Agent::State {
  explicit State(Config c)
      : cfg(std::move(c)),
        host(HostInfo::current(EGRESSD_VERSION)),
        tools(merge_tools(builtin_tools(), cfg.tools)),
        counters(cfg.series),
        procs(cfg.proc_root, host.boot_id.substr(0, 8), &tools, &redactor) {}

  Config cfg;
  HostInfo host;
  Redactor redactor;
  ToolMatcher tools;
  EgressCounters counters;
  Clock clock;
  ProcessTable procs;
  std::unique_ptr<EventLog> log;
  std::unique_ptr<FlowTable> flows;
  std::unique_ptr<BpfPrograms> bpf;
  std::unique_ptr<MetricsServer> metrics;
  ring_buffer* ring = nullptr;

  // Health numbers the event loop writes and scrapes read.
  mutable std::mutex health_mu;
  std::map<std::string, uint64_t> ring_events;
  std::map<std::string, uint64_t> decode_errors;
  uint64_t open_flows = 0, processes = 0, log_lines = 0, log_failures = 0, log_dropped = 0;
  std::map<std::string, uint64_t> parse_failures;
  std::map<std::string, uint64_t> unsent_udp_connects;
  uint64_t flow_map_entries = 0, flow_extra_entries = 0;

  void handle(const void* data, size_t len);
  void poll_kernel(bool live_sockets);
  AgentHealth health() const;
  // The event loop went round within the last 10 seconds.
  bool healthy() const { return clock.boot_now_ns() < last_loop_ns.load() + 10'000 * kMs; }
  std::atomic<uint64_t> last_loop_ns{0};
  std::string privileges_kept;  // "" once every capability is dropped
  void publish_health();
  void log_agent(const char* action, const char* type);
};

void Agent::State::handle(const void* data, size_t len) {
  auto decoded = decode_event(data, len);
  if (auto* err = std::get_if<DecodeError>(&decoded)) {
    std::lock_guard lock(health_mu);
    ++decode_errors[fmt::format("decode_{}", decode_error_name(*err))];
    return;
  }
  dispatch_event(std::get<Event>(decoded), procs, *flows);
  event_header h;
  std::memcpy(&h, data, sizeof(h));
  std::lock_guard lock(health_mu);
  ++ring_events[event_type_name(h.type)];
}

void Agent::State::poll_kernel(bool live_sockets) {
  flow_extra_entries = poll_kernel_counters(*bpf, *flows, live_sockets);
}

AgentHealth Agent::State::health() const {
  AgentHealth h;
  auto k = bpf->kernel_stats();
  h.events_lost["ringbuf_full"] = k[KSTAT_RINGBUF_FULL];
  h.map_full["procs"] = k[KSTAT_PROC_MAP_FULL];
  h.map_full["flow_extra"] = k[KSTAT_FLOW_MAP_FULL];
  h.map_full["sk_storage"] = k[KSTAT_SK_STORAGE_FAIL];
  h.truncated["executable"] = k[KSTAT_PATH_TRUNCATED];
  h.truncated["args"] = k[KSTAT_ARGS_TRUNCATED];
  h.kernel_read_failures = k[KSTAT_READ_FAIL];
  auto [entries, capacity] = bpf->process_map_fill();
  h.process_map_entries = entries;
  h.process_map_capacity = capacity;
  h.flow_map_capacity = bpf->flow_map_capacity();
  h.programs = bpf->program_stats();
  h.hooks = bpf->hook_plan();
  for (const auto& job : bpf->plan().jobs)
    for (const auto& r : job.refused) h.refused_hooks.push_back({job.job, r});
  std::lock_guard lock(health_mu);
  for (const auto& [reason, n] : decode_errors) h.events_lost[reason] = n;
  h.ring_events = ring_events;
  h.open_flows = open_flows;
  h.processes = processes;
  h.log_lines = log_lines;
  h.log_write_failures = log_failures;
  h.log_dropped = log_dropped;
  h.parse_failures = parse_failures;
  h.unsent_udp_connects = unsent_udp_connects;
  h.flow_map_entries = flow_map_entries;
  h.series_folded = counters.folded();
  h.series_expired = counters.expired();
  return h;
}

void Agent::State::publish_health() {
  std::lock_guard lock(health_mu);
  open_flows = flows->open_flows();
  processes = procs.size();
  log_lines = log->lines();
  log_failures = log->write_failures();
  log_dropped = log->dropped();
  parse_failures = flows->parse_failures();
  unsent_udp_connects = flows->unsent_udp_connects();
  flow_map_entries = flow_extra_entries;
}

void Agent::State::log_agent(const char* action, const char* type) {
  nlohmann::json j = ecs_event(host, action, "event", {"host"}, {type},
                               clock.to_wall_ns(clock.boot_now_ns()));
  j["egressd"]["metrics"]["address"] = metrics ? metrics->bound_address() : "";
  j["egressd"]["hooks"] = bpf ? bpf->attached() : std::vector<std::string>{};
  if (bpf) {
    for (const auto& note : bpf->notes()) j["egressd"]["kernel"]["notes"].push_back(note);
    for (const auto& job : bpf->plan().jobs) {
      nlohmann::json o = {{"job", job.job}, {"hook", job.hook}};
      if (!job.refused.empty()) o["refused"] = job.refused;
      j["egressd"]["kernel"]["jobs"].push_back(std::move(o));
    }
  }
  j["egressd"]["kernel"]["release"] = probe_features(cfg.proc_root).kernel_release;
  j["egressd"]["privileges"]["capabilities"] = privileges_kept.empty() ? "none" : "kept";
  if (!privileges_kept.empty()) j["egressd"]["privileges"]["reason"] = privileges_kept;
  log->write(j);
  log->flush();
}

Agent::Agent(Config cfg) : s_(std::make_unique<State>(std::move(cfg))) {}

Agent::~Agent() {
  if (s_ && s_->ring) ring_buffer__free(s_->ring);
}

void Agent::start() {
  State& s = *s_;
  FeatureReport features = probe_features(s.cfg.proc_root);
  if (auto problem = features.first_problem(); !problem.empty()) throw std::runtime_error(problem);
  s.cfg.load.cgroup_path = features.cgroup2_path;
  for (const auto& p : s.cfg.redact_patterns) s.redactor.add_pattern(p);  // checked in config

  s.log = EventLog::open(s.cfg.log);
  s.flows = std::make_unique<FlowTable>(
      FlowTableDeps{s.procs, s.counters, *s.log, s.host, s.clock, &s.tools, s.cfg.destination_label});
  s.bpf = BpfPrograms::load(s.cfg.load);
  // Listen before attaching: a port in use fails fast, with nothing attached.
  auto collector = std::make_shared<AgentCollector>(
      s.counters, [&s] { return s.health(); }, EGRESSD_VERSION);
  s.metrics = std::make_unique<MetricsServer>(s.cfg.metrics_address, collector, s.cfg.metrics_auth,
                                              [&s] { return s.healthy(); });
  s.procs.set_tool_listener([&s](const Process& p) {
    s.bpf->set_process_tool(p.key.tgid, p.key.start_ns, p.tool_id, s.tools.follows_children(p.tool_id));
  });
  s.bpf->attach();
  // Oldest first, so parents are known (and tagged) before their children.
  auto running = s.bpf->running_processes();
  for (const auto& rec : running) s.procs.on_exec(rec);

  s.ring = ring_buffer__new(
      s.bpf->ring_buffer_fd(),
      [](void* ctx, void* data, size_t len) {
        static_cast<State*>(ctx)->handle(data, len);
        return 0;
      },
      &s, nullptr);
  if (!s.ring) throw LoaderError("open ring buffer", errno);
  // Everything that needed privilege is done: programs attached, maps and
  // iterators open, the port bound.
  s.privileges_kept = drop_capabilities([&s] { return s.bpf->map_access_works(); });
  s.publish_health();
  s.last_loop_ns = s.clock.boot_now_ns();
  s.log_agent("agent-started", "start");
}

int Agent::run(const std::atomic<bool>& stop) {
  State& s = *s_;
  uint64_t next_poll = 0;
  while (!stop.load()) {
    ring_buffer__poll(s.ring, static_cast<int>(s.cfg.drain_interval_ms));
    ring_buffer__consume(s.ring);
    const uint64_t now = s.clock.boot_now_ns();
    const bool full_poll = now >= next_poll;
    if (full_poll || s.flows->extra_ends_pending()) {
      s.poll_kernel(full_poll);
      if (full_poll) {
        next_poll = now + s.cfg.poll_interval_ms * kMs;
        s.counters.expire(now, s.flows->live_series());
      }
    }
    s.flows->emit_updates(now, s.cfg.update_interval_ms * kMs);
    s.procs.expire(now, kKeepExitedNs);
    s.publish_health();
    s.last_loop_ns = now;
  }
  // Nothing counted is lost at shutdown: read what is left, then log every
  // open flow with its final count.
  ring_buffer__consume(s.ring);
  s.poll_kernel(true);
  s.flows->flush_all(s.clock.boot_now_ns(), "agent-stopped");
  s.log_agent("agent-stopped", "end");
  return 0;
}

}  // namespace egressd

// Prometheus exposition. Values are read when Prometheus scrapes: per-flow
// totals from EgressCounters, agent health from a callback.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/collectable.h>

#include "bpf_programs.h"
#include "egress_counters.h"
#include "http_server.h"

namespace egressd {

struct AgentHealth {
  std::map<std::string, uint64_t> events_lost;  // reason -> count
  std::map<std::string, uint64_t> map_full;     // map -> count
  std::map<std::string, uint64_t> truncated;    // field -> count
  uint64_t kernel_read_failures = 0;
  std::map<std::string, uint64_t> ring_events;  // type -> count
  uint64_t open_flows = 0;
  uint64_t processes = 0;
  uint64_t process_map_entries = 0;
  uint64_t process_map_capacity = 0;
  uint64_t log_lines = 0;
  uint64_t log_write_failures = 0;
  uint64_t log_dropped = 0;
  uint64_t log_reopens = 0;
  uint64_t clock_steps = 0;
  uint64_t checkpoint_failures = 0;
  uint64_t pinned_discarded_flows = 0;
  uint64_t ledger_write_failures = 0;
  uint64_t process_record_failures = 0;
  std::string pinned_state = "off";  // pin_outcome_name
  std::map<std::string, uint64_t> parse_failures;  // parser -> count
  std::map<std::string, uint64_t> unsent_udp_connects;  // tool -> count
  uint64_t flow_map_entries = 0;
  uint64_t flow_map_capacity = 0;
  std::vector<BpfPrograms::ProgramStats> programs;
  std::vector<std::pair<std::string, std::string>> hooks;  // (job, hook)
  // (job, "hook (program): reason") for each implementation the kernel refused
  std::vector<std::pair<std::string, std::string>> refused_hooks;
  uint64_t series_folded = 0;
  uint64_t series_expired = 0;
};

class AgentCollector : public prometheus::Collectable {
 public:
  AgentCollector(const EgressCounters& counters, std::function<AgentHealth()> health,
                 std::string version)
      : counters_(counters), health_(std::move(health)), version_(std::move(version)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;
  // Counted by the metrics server, exposed with the rest.
  RejectionCounts& connection_rejections() { return rejections_; }

 private:
  const EgressCounters& counters_;
  std::function<AgentHealth()> health_;
  std::string version_;
  mutable std::atomic<double> last_scrape_seconds_{0};
  RejectionCounts rejections_;
};

struct BasicAuth {
  std::string username;
  std::string password;  // empty: no authentication
};

class MetricsServer {
 public:
  // address is HOST:PORT (port 0 picks a free one). Serves /metrics (with
  // basic authentication when auth.password is set) and /healthz, which
  // answers 200 while healthy() holds and 503 otherwise, under the limits of
  // HttpServerLimits. Throws std::runtime_error with a one-line reason when
  // it cannot listen.
  MetricsServer(const std::string& address, std::shared_ptr<AgentCollector> collector,
                const BasicAuth& auth, std::function<bool()> healthy, HttpServerLimits limits = {});
  ~MetricsServer();
  // HOST:PORT actually bound.
  std::string bound_address() const { return bound_; }

 private:
  HttpResponse serve(const RequestHead& request) const;

  std::shared_ptr<AgentCollector> collector_;
  std::string expected_authorization_;  // "Basic base64(user:password)", "" for none
  std::function<bool()> healthy_;
  std::string bound_;
  std::unique_ptr<HttpServer> server_;  // last: stopped before the rest goes
};

// Splits HOST:PORT ([v6]:PORT too). Throws std::invalid_argument.
std::pair<std::string, uint16_t> parse_host_port(const std::string& address);

}  // namespace egressd

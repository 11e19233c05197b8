// The totals behind the Prometheus series: bytes and connections per
// (tool, binary, destination, port, transport). Written by the event loop,
// read by scrapes through snapshot(): a scrape copies under a short lock and
// never waits on the kernel.
//
// The number of series is bounded. Each (tool, binary) keeps at most
// max_destinations distinct (destination, port) pairs, and all of them
// together at most max_series; a flow beyond either budget is counted under
// destination="other", port="other" (or, past the global budget, under
// tool="other", binary="other" too), so bytes still sum to the truth. Series
// not written for idle_ns are dropped, which frees their place in the budget.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace egressd {

struct SeriesKey {
  std::string tool;
  std::string binary;
  std::string destination;
  std::string port;
  std::string transport;
  // Bytes a local server sent on connections it accepted: port is the port
  // it accepted on, destination is empty. Not egress: their own metric.
  bool inbound = false;
  auto operator<=>(const SeriesKey&) const = default;
};

inline constexpr const char* kConnectResults[] = {"ok", "refused", "timeout", "denied", "error"};
inline constexpr size_t kConnectResultCount = 5;
inline constexpr const char* kOther = "other";

struct SeriesTotals {
  uint64_t sent_bytes = 0;
  uint64_t wire_bytes = 0;
  uint64_t wire_packets = 0;
  uint64_t sends = 0;
  uint64_t connections[kConnectResultCount] = {};
  uint64_t unexpected_flows = 0;  // flows of a tool to a destination it does not list
  uint64_t dns_queries = 0;       // DNS questions sent to this resolver
};

struct SeriesBudget {
  size_t max_series = 10000;
  size_t max_destinations = 200;  // per (tool, binary)
  uint64_t idle_ns = 3600ULL * 1'000'000'000ULL;
};

class EgressCounters {
 public:
  explicit EgressCounters(SeriesBudget budget = {}) : budget_(budget) {}

  // The key a new flow's counts go under: key itself while the budget allows,
  // else its folded form. Call once per flow and keep the result.
  SeriesKey admit(const SeriesKey& key, uint64_t now_ns);

  void add_sent(const SeriesKey& key, uint64_t bytes, uint64_t sends, uint64_t wire_bytes,
                uint64_t wire_packets, uint64_t now_ns = 0);
  // result: index into kConnectResults.
  void add_connection(const SeriesKey& key, size_t result, uint64_t now_ns = 0);
  void add_unexpected_flow(const SeriesKey& key, uint64_t now_ns = 0);
  void add_dns_query(const SeriesKey& key, uint64_t now_ns = 0);

  // Drops series idle since before now_ns - idle_ns, unless a live flow
  // still writes to them (in_use).
  void expire(uint64_t now_ns, const std::vector<SeriesKey>& in_use);

  // The totals now.
  std::vector<std::pair<SeriesKey, SeriesTotals>> snapshot() const;
  // What scrapes see (metrics.cpp): the totals now, or with
  // hold_until_published(true) the totals as of the last publish(). An
  // agent whose totals outlive it (checkpointed in the pinned state) shows
  // only what it checkpointed, so nothing a scraper saw is ever above what
  // the next agent restores.
  std::vector<std::pair<SeriesKey, SeriesTotals>> published() const;
  void hold_until_published(bool hold);
  void publish();
  // The totals of a checkpoint, before anything is counted (adoption).
  void restore(const std::vector<std::pair<SeriesKey, SeriesTotals>>& series, uint64_t now_ns);
  // Grows with every count added (or series made): a checkpoint is due
  // when it moved since the last one.
  uint64_t changes() const;
  size_t series() const;
  uint64_t folded() const;   // flows whose key was folded into "other"
  uint64_t expired() const;  // series dropped for idleness

 private:
  struct Entry {
    SeriesTotals totals;
    uint64_t last_ns = 0;
  };
  Entry& entry(const SeriesKey& key, uint64_t now_ns);

  SeriesBudget budget_;
  mutable std::mutex mu_;
  std::map<SeriesKey, Entry> totals_;
  bool hold_ = false;
  uint64_t changes_ = 0;
  std::vector<std::pair<SeriesKey, SeriesTotals>> published_;
  std::map<std::pair<std::string, std::string>, size_t> destinations_;  // (tool, binary) -> count
  uint64_t folded_ = 0;
  uint64_t expired_ = 0;
};

}  // namespace egressd

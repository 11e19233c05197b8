// The totals behind the Prometheus series: bytes and connections per
// (tool, binary, destination, port, transport). Written by the event loop,
// read by scrapes through snapshot(): a scrape copies under a short lock and
// never waits on the kernel.
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
  auto operator<=>(const SeriesKey&) const = default;
};

inline constexpr const char* kConnectResults[] = {"ok", "refused", "timeout", "denied", "error"};
inline constexpr size_t kConnectResultCount = 5;

struct SeriesTotals {
  uint64_t sent_bytes = 0;
  uint64_t wire_bytes = 0;
  uint64_t wire_packets = 0;
  uint64_t sends = 0;
  uint64_t connections[kConnectResultCount] = {};
  uint64_t unexpected_flows = 0;  // flows of a tool to a destination it does not list
};

class EgressCounters {
 public:
  void add_sent(const SeriesKey& key, uint64_t bytes, uint64_t sends, uint64_t wire_bytes,
                uint64_t wire_packets);
  // result: index into kConnectResults.
  void add_connection(const SeriesKey& key, size_t result);
  void add_unexpected_flow(const SeriesKey& key);

  std::vector<std::pair<SeriesKey, SeriesTotals>> snapshot() const;
  size_t series() const;

 private:
  mutable std::mutex mu_;
  std::map<SeriesKey, SeriesTotals> totals_;
};

}  // namespace egressd

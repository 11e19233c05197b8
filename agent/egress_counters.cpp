#include "egress_counters.h"

namespace egressd {

void EgressCounters::add_sent(const SeriesKey& key, uint64_t bytes, uint64_t sends,
                              uint64_t wire_bytes, uint64_t wire_packets) {
  if (!bytes && !sends && !wire_bytes && !wire_packets) return;
  std::lock_guard lock(mu_);
  SeriesTotals& t = totals_[key];
  t.sent_bytes += bytes;
  t.sends += sends;
  t.wire_bytes += wire_bytes;
  t.wire_packets += wire_packets;
}

void EgressCounters::add_connection(const SeriesKey& key, size_t result) {
  if (result >= kConnectResultCount) return;
  std::lock_guard lock(mu_);
  totals_[key].connections[result] += 1;
}

void EgressCounters::add_unexpected_flow(const SeriesKey& key) {
  std::lock_guard lock(mu_);
  totals_[key].unexpected_flows += 1;
}

std::vector<std::pair<SeriesKey, SeriesTotals>> EgressCounters::snapshot() const {
  std::lock_guard lock(mu_);
  return {totals_.begin(), totals_.end()};
}

size_t EgressCounters::series() const {
  std::lock_guard lock(mu_);
  return totals_.size();
}

}  // namespace egressd

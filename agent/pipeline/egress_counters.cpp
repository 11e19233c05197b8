#include "egress_counters.h"

#include <set>

namespace egressd {

EgressCounters::Entry& EgressCounters::entry(const SeriesKey& key, uint64_t now_ns) {
  ++changes_;
  auto [it, inserted] = totals_.try_emplace(key);
  if (inserted && key.destination != kOther) ++destinations_[{key.tool, key.binary}];
  if (now_ns) it->second.last_ns = now_ns;
  return it->second;
}

SeriesKey EgressCounters::admit(const SeriesKey& key, uint64_t now_ns) {
  std::lock_guard lock(mu_);
  if (auto it = totals_.find(key); it != totals_.end()) {
    it->second.last_ns = now_ns;
    return key;
  }
  SeriesKey folded = key;
  auto per_binary = destinations_.find({key.tool, key.binary});
  if (per_binary != destinations_.end() && per_binary->second >= budget_.max_destinations) {
    folded.destination = kOther;
    folded.port = kOther;
  }
  if (!totals_.count(folded) && totals_.size() >= budget_.max_series)
    folded = SeriesKey{kOther, kOther, kOther, kOther, kOther, key.inbound};
  if (folded != key) ++folded_;
  entry(folded, now_ns);
  return folded;
}

void EgressCounters::add_sent(const SeriesKey& key, uint64_t bytes, uint64_t sends,
                              uint64_t wire_bytes, uint64_t wire_packets, uint64_t now_ns) {
  if (!bytes && !sends && !wire_bytes && !wire_packets) return;
  std::lock_guard lock(mu_);
  SeriesTotals& t = entry(key, now_ns).totals;
  t.sent_bytes += bytes;
  t.sends += sends;
  t.wire_bytes += wire_bytes;
  t.wire_packets += wire_packets;
}

void EgressCounters::add_connection(const SeriesKey& key, size_t result, uint64_t now_ns) {
  if (result >= kConnectResultCount) return;
  std::lock_guard lock(mu_);
  entry(key, now_ns).totals.connections[result] += 1;
}

void EgressCounters::add_unexpected_flow(const SeriesKey& key, uint64_t now_ns) {
  std::lock_guard lock(mu_);
  entry(key, now_ns).totals.unexpected_flows += 1;
}

void EgressCounters::add_dns_query(const SeriesKey& key, uint64_t now_ns) {
  std::lock_guard lock(mu_);
  entry(key, now_ns).totals.dns_queries += 1;
}

void EgressCounters::expire(uint64_t now_ns, const std::vector<SeriesKey>& in_use) {
  if (now_ns < budget_.idle_ns) return;
  const uint64_t cutoff = now_ns - budget_.idle_ns;
  std::set<SeriesKey> live(in_use.begin(), in_use.end());
  std::lock_guard lock(mu_);
  for (auto it = totals_.begin(); it != totals_.end();) {
    if (it->second.last_ns < cutoff && !live.count(it->first)) {
      if (it->first.destination != kOther) {
        auto d = destinations_.find({it->first.tool, it->first.binary});
        if (d != destinations_.end() && --d->second == 0) destinations_.erase(d);
      }
      ++expired_;
      it = totals_.erase(it);
    } else {
      ++it;
    }
  }
}

std::vector<std::pair<SeriesKey, SeriesTotals>> EgressCounters::snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<SeriesKey, SeriesTotals>> out;
  out.reserve(totals_.size());
  for (const auto& [k, e] : totals_) out.emplace_back(k, e.totals);
  return out;
}

std::vector<std::pair<SeriesKey, SeriesTotals>> EgressCounters::published() const {
  {
    std::lock_guard lock(mu_);
    if (hold_) return published_;
  }
  return snapshot();
}

void EgressCounters::hold_until_published(bool hold) {
  std::lock_guard lock(mu_);
  hold_ = hold;
}

void EgressCounters::publish() {
  auto now = snapshot();
  std::lock_guard lock(mu_);
  published_ = std::move(now);
}

void EgressCounters::restore(const std::vector<std::pair<SeriesKey, SeriesTotals>>& series, uint64_t now_ns) {
  std::lock_guard lock(mu_);
  for (const auto& [k, t] : series) entry(k, now_ns).totals = t;
  std::vector<std::pair<SeriesKey, SeriesTotals>> out;
  for (const auto& [k, e] : totals_) out.emplace_back(k, e.totals);
  published_ = std::move(out);
}

uint64_t EgressCounters::changes() const {
  std::lock_guard lock(mu_);
  return changes_;
}

size_t EgressCounters::series() const {
  std::lock_guard lock(mu_);
  return totals_.size();
}

uint64_t EgressCounters::folded() const {
  std::lock_guard lock(mu_);
  return folded_;
}

uint64_t EgressCounters::expired() const {
  std::lock_guard lock(mu_);
  return expired_;
}

}  // namespace egressd

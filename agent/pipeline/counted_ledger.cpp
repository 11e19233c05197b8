#include "counted_ledger.h"

#include "checkpoint.h"

namespace egressd {

std::vector<std::pair<SeriesKey, SeriesTotals>> restored_totals(
    const std::vector<std::pair<SeriesKey, SeriesTotals>>& checkpoint, uint64_t committed,
    const std::map<uint32_t, SeriesKey>& series, const std::vector<std::pair<CountedKey, CountedEntry>>& entries,
    uint64_t* unknown_series) {
  std::map<SeriesKey, SeriesTotals> totals(checkpoint.begin(), checkpoint.end());
  auto more = [](uint64_t now, uint64_t base) { return now > base ? now - base : 0; };
  for (const auto& [_, e] : entries) {
    if (e.gen <= committed) continue;  // in the checkpoint already
    auto s = series.find(e.series);
    if (s == series.end()) {
      ++*unknown_series;
      continue;
    }
    SeriesTotals& t = totals[s->second];
    t.sent_bytes += more(e.now.bytes, e.base.bytes);
    t.sends += more(e.now.sends, e.base.sends);
    t.wire_bytes += more(e.now.wire_bytes, e.base.wire_bytes);
    t.wire_packets += more(e.now.wire_packets, e.base.wire_packets);
    if (e.now.connection && !e.base.connection && e.now.connection <= kConnectResultCount)
      t.connections[e.now.connection - 1] += 1;
  }
  return {totals.begin(), totals.end()};
}

std::vector<std::pair<SeriesKey, SeriesTotals>> CountedLedger::adopt(
    const std::vector<std::pair<SeriesKey, SeriesTotals>>& checkpoint, uint64_t* unknown_series) {
  const uint64_t committed = store_.committed();
  pending_ = committed + 1;
  std::map<uint32_t, SeriesKey> names;
  for (const auto& [id, text] : store_.all_series()) {
    if (auto key = decode_series_key(text)) {
      names[id] = *key;
      ids_[*key] = id;
    }
    if (id >= next_id_) next_id_ = id + 1;
  }
  auto entries = store_.all_counted();
  adopted_keys_.clear();
  for (const auto& [k, _] : entries) adopted_keys_.push_back(k);
  return restored_totals(checkpoint, committed, names, entries, unknown_series);
}

uint32_t CountedLedger::series_id(const SeriesKey& key) {
  if (auto it = ids_.find(key); it != ids_.end()) return it->second;
  const uint32_t id = next_id_++;
  if (!store_.set_series(id, encode_series_key(key))) {
    ++write_failures_;
    return 0;  // entries of it stop double counting, but cannot be restored
  }
  ids_.emplace(key, id);
  return id;
}

void CountedLedger::record(const CountedKey& key, const SeriesKey& series, LedgerPosition& pos,
                           const Counted& now) {
  if (pos.gen != pending_) {
    pos.base = pos.last;  // all of it is in a committed checkpoint
    pos.gen = pending_;
  }
  pos.last = now;
  if (!store_.set_counted(key, CountedEntry{pos.gen, series_id(series), 0, pos.base, now})) ++write_failures_;
}

void CountedLedger::ended(const CountedKey& key, const LedgerPosition& pos) {
  if (pos.gen == pending_)
    ended_.emplace_back(key, pos.gen);  // its last counts wait for the checkpoint
  else
    store_.forget_counted(key);
}

void CountedLedger::committed(const std::vector<std::pair<SeriesKey, SeriesTotals>>& series) {
  ++pending_;
  std::vector<std::pair<CountedKey, uint64_t>> waiting;
  std::vector<CountedKey> done;
  for (auto& [k, gen] : ended_) {
    if (gen < pending_)
      done.push_back(k);
    else
      waiting.emplace_back(k, gen);
  }
  store_.forget_counted(done);
  ended_ = std::move(waiting);
  if (ids_.size() > series.size()) {
    std::set<SeriesKey> now;
    for (const auto& [k, _] : series) now.insert(k);
    for (auto it = ids_.begin(); it != ids_.end();) {
      if (!now.count(it->first)) {
        store_.forget_series(it->second);
        it = ids_.erase(it);
      } else {
        ++it;
      }
    }
  }
}

}  // namespace egressd

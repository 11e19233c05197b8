// What each flow has added to the metrics, kept in the pinned state so that
// the metric totals survive any restart, a SIGKILL included (issue 16).
//
// The totals themselves are checkpointed (checkpoint.h) every quarter second
// at most; a checkpoint has a sequence number, its generation. Between two
// checkpoints every count a flow adds is also written to its ledger entry
// (one map update):
//
//   entry = {gen, series id, base, now}
//     now:  all the flow has added to the metrics
//     base: what of it is in the checkpoints before gen
//
// An entry whose gen is the one not yet committed (pending) holds counts no
// checkpoint has; its first write in a generation moves base up to now.
// After a kill, the next agent restores
//
//   totals = last whole checkpoint C + sum over entries with gen > C of (now - base)
//
// which is exactly what was counted: a checkpoint cut off midway is not
// committed (its head is written last), and an entry written is never ahead
// of the counts it reports. A flow's next counts start from its entry's
// now, so nothing is counted twice (a ring buffer record the killed agent
// had read but not yet released is read again, and adds nothing).
//
// Ended flows keep their entry until a checkpoint with their last counts is
// committed. Series ids are written to their own map the first time they are
// used. Connections count with the flow that made them; DNS questions and
// unexpected flows are checkpointed only (what of them was counted in the
// last quarter second before a SIGKILL is lost).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "egress_counters.h"
#include "pinned_state.h"

namespace egressd {

using Counted = PinnedState::Counted;
using CountedEntry = PinnedState::CountedEntry;
using CountedKey = PinnedState::CountedKey;

// The totals a restarted agent takes over: the committed checkpoint's, plus
// the counts of the entries written after it. Pure, for the unit tests.
std::vector<std::pair<SeriesKey, SeriesTotals>> restored_totals(
    const std::vector<std::pair<SeriesKey, SeriesTotals>>& checkpoint, uint64_t committed,
    const std::map<uint32_t, SeriesKey>& series, const std::vector<std::pair<CountedKey, CountedEntry>>& entries,
    uint64_t* unknown_series);

// Where a flow stands in the ledger (kept in the flow): the generation and
// base of its entry, and the counts it last recorded.
struct LedgerPosition {
  uint64_t gen = 0;
  Counted base, last;
};

class CountedLedger {
 public:
  explicit CountedLedger(PinnedState& store) : store_(store) {}

  // On adoption: the earlier agent's entries and series; returns the totals
  // to restore, given the committed checkpoint's (empty when there was none).
  // *unknown_series: entries whose series id the store does not have.
  std::vector<std::pair<SeriesKey, SeriesTotals>> adopt(
      const std::vector<std::pair<SeriesKey, SeriesTotals>>& checkpoint, uint64_t* unknown_series);
  // What the earlier agent counted for a flow it left (nothing: 0).
  std::optional<CountedEntry> find(const CountedKey& key) const { return store_.counted(key); }

  // A flow's counts now, after they were added to the metrics.
  void record(const CountedKey& key, const SeriesKey& series, LedgerPosition& pos, const Counted& now);
  // The flow ended after its last record.
  void ended(const CountedKey& key, const LedgerPosition& pos);
  // The checkpoint about to be written gets this sequence number.
  uint64_t pending() const { return pending_; }
  // The pending checkpoint was committed with these series: drop the
  // entries of flows that ended before it and the ids of series gone.
  void committed(const std::vector<std::pair<SeriesKey, SeriesTotals>>& series);
  // After the first full poll of an adopted state: entries of flows the
  // earlier agent left that no longer exist (the flow table has no flow for
  // them) are dropped once the next checkpoint is committed.
  template <typename Live>
  void forget_stale(Live&& live) {
    for (auto& k : adopted_keys_)
      if (!live(k)) ended_.emplace_back(k, pending_);
    adopted_keys_.clear();
  }

  // Entries or series ids that could not be written (their counts are
  // checkpointed but would not survive a SIGKILL).
  uint64_t write_failures() const { return write_failures_; }

 private:
  uint32_t series_id(const SeriesKey& key);

  PinnedState& store_;
  uint64_t pending_ = 1;
  std::map<SeriesKey, uint32_t> ids_;
  uint32_t next_id_ = 1;
  std::vector<std::pair<CountedKey, uint64_t>> ended_;  // with the gen of their last record
  std::vector<CountedKey> adopted_keys_;
  uint64_t write_failures_ = 0;
};

}  // namespace egressd

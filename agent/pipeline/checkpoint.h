// The metric totals an agent leaves for the next one (issue 16): written
// into the pinned state each poll and at SIGTERM, read back on adoption.
// Versioned JSON: a blob this build cannot read is refused with a reason,
// never half-read.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "egress_counters.h"

namespace egressd {

inline constexpr int kCheckpointVersion = 1;

struct Checkpoint {
  std::vector<std::pair<SeriesKey, SeriesTotals>> series;
  uint64_t written_boot_ns = 0;
};

std::string encode_checkpoint(const Checkpoint& c);
// One series key, as the counted ledger keeps it (JSON array).
std::string encode_series_key(const SeriesKey& k);
std::optional<SeriesKey> decode_series_key(std::string_view text);
// Nothing, with *why set, when the blob is not a checkpoint of this version.
std::optional<Checkpoint> decode_checkpoint(std::string_view blob, std::string* why);

}  // namespace egressd

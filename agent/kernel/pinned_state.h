// Kernel state that outlives the agent (issue 16). The maps that count
// (sockets, flows, processes, kernel stats, the ring buffer) and the links
// that keep the programs attached are pinned in bpffs under one directory per
// instance, with a record of the layout they were made with:
//
//   /sys/fs/bpf/egressd/<instance>/
//     meta               array map: layout version and identity (written last)
//     map_<name>         each persistent map
//     link_<program>     each attached program
//
// (bpffs refuses names with a dot.)
//
// While no agent runs the kernel keeps counting into them, and events wait
// in the pinned ring buffer (up to its size; what does not fit is counted
// in kstats). A new agent whose programs are the very ones pinned (same BPF
// object, plan, sizes and settings: the identity) adopts them: it reads the
// maps and the waiting events and attaches nothing but its iterators. Any
// other pinned state of the same layout, pinned by another build, is taken
// over: the new programs are attached next to the old ones against the same
// maps, one pinned word switches which of them count, and the old links are
// unpinned (lib/generation.h). Other layouts are discarded (unpinned, which
// detaches its programs) with a logged reason, after the new agent attached
// its own.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "events.h"
#include "unique_fd.h"

namespace egressd {

// The layout of the pinned maps this build reads. Bump it when a map's key
// or value changes, or a persistent map is added or removed.
inline constexpr uint32_t kPinLayout = 3;

struct PinOptions {
  std::string root = "/sys/fs/bpf/egressd";
  std::string instance;  // "" : nothing pinned (egressd trace, check, tests that ask)
  bool fresh = false;    // discard what is pinned, whatever it is (egressd run --fresh)
};

// How this agent's kernel state began, for its agent-started event and
// egressd_pinned_state_info.
enum class PinOutcome { kOff, kUnavailable, kNew, kAdopted, kHandedOver, kDiscarded };
const char* pin_outcome_name(PinOutcome o);

class PinnedState {
 public:
  // Locks the instance (an flock on its directory, made if missing) and reads
  // its meta. Returns nullptr with *why set when bpffs cannot hold pins here
  // (not mounted, read-only): the agent then runs without them. Throws
  // LoaderError when another egressd holds the instance.
  static std::unique_ptr<PinnedState> open(const PinOptions& opts, std::string* why);

  const std::string& dir() const { return dir_; }
  // Whether what is pinned can be adopted by programs of this identity;
  // otherwise why not ("" when nothing is pinned). *other_programs: it is
  // of this layout but pinned by other programs (another build), which can
  // take it over (BpfPrograms: the generation switch).
  bool adoptable(uint64_t identity, const std::vector<std::string>& links, std::string* why,
                 bool* other_programs = nullptr) const;
  // Unpins the links and the meta only (the maps stay): a hand-over.
  void clear_links();
  std::string map_path(const std::string& name) const { return dir_ + "/map_" + name; }
  std::string link_path(const std::string& program) const { return dir_ + "/link_" + program; }
  // Opens a pinned map; -1 when it is not there.
  int open_map(const std::string& name) const;
  // How many open flows the pinned maps hold (socket states in the hash
  // store, flow_extra entries), read by key size alone so that it works for
  // any layout: what discarding them loses. Socket states in sk_storage
  // cannot be listed from user space and are not in it.
  uint64_t flows_held() const;
  // Unpins everything in the directory (the programs of unpinned links are
  // detached once no descriptor holds them).
  void clear();
  // Records the layout and identity of what was just pinned.
  void write_meta(uint64_t identity);

  // The agent's own pinned maps (agent/pipeline/counted_ledger.h says how
  // they are used): what each flow has added to the metrics (by socket
  // cookie, and by flow_key for the flows of flow_extra), the series those
  // counts belong to, and the checkpoint of the metric totals. Made with the
  // pins (create) or opened when adopting. False, with *why, when they
  // cannot be.
  bool open_store(bool create, std::string* why);
  bool has_store() const { return static_cast<bool>(head_); }
  struct Counted {
    uint64_t bytes = 0, sends = 0, wire_bytes = 0, wire_packets = 0;
    uint32_t connection = 0;  // 1 + the index of the connect result counted; 0: none
    uint32_t unused = 0;
    bool operator==(const Counted&) const = default;
  };
  // What one flow added to the metrics: `now` in all; of it, `base` is in
  // the checkpoints before `gen`, the rest (now - base) only from `gen` on.
  struct CountedEntry {
    uint64_t gen = 0;
    uint32_t series = 0;  // its id in the series map
    uint32_t unused = 0;
    Counted base, now;
  };
  using CountedKey = std::variant<uint64_t, flow_key>;  // a socket's cookie, or a flow_extra key
  std::optional<CountedEntry> counted(const CountedKey& key) const;
  bool set_counted(const CountedKey& key, const CountedEntry& e);
  void forget_counted(const CountedKey& key);
  void forget_counted(const std::vector<CountedKey>& keys);  // in one batch per map where the kernel can
  std::vector<std::pair<CountedKey, CountedEntry>> all_counted() const;
  // Series ids to their encoded keys (up to kSeriesKeyMax bytes).
  bool set_series(uint32_t id, std::string_view key);
  void forget_series(uint32_t id);
  std::vector<std::pair<uint32_t, std::string>> all_series() const;
  static constexpr size_t kSeriesKeyMax = 8188;
  // The sequence number of the last checkpoint written whole (0: none).
  uint64_t committed() const;
  // The last exec (or fork) ring buffer record of each process the agent
  // knows, as read, so that a restarted agent still names the processes whose
  // records an agent it follows had read (after a SIGKILL too). Kept until the
  // process table forgets the process.
  bool set_process_record(uint32_t tgid, uint64_t start_ns, const void* record, size_t len);
  void forget_process_record(uint32_t tgid, uint64_t start_ns);
  std::vector<std::string> all_process_records() const;
  // The checkpoint: two slots of 4 KiB chunks and a head record written
  // last, so that a kill in the middle leaves the previous one whole.
  bool write_checkpoint(std::string_view blob, std::string* why);
  std::optional<std::string> read_checkpoint(std::string* why) const;
  static constexpr size_t kChunk = 4096, kChunksPerSlot = 1024;  // 4 MiB a slot

 private:
  struct Meta {
    uint32_t layout = 0;
    uint32_t reserved = 0;
    uint64_t identity = 0;
  };
  PinnedState() = default;

  std::string dir_;
  UniqueFd lock_;
  UniqueFd counted_, counted_extra_, series_, head_, chunks_, records_, large_records_;
  std::optional<Meta> found_;
  bool unreadable_meta_ = false;
};

// A 64-bit FNV-1a hash, for identities.
uint64_t fnv1a(const void* data, size_t len, uint64_t seed = 1469598103934665603ULL);

}  // namespace egressd

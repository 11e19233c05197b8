#include "pinned_state.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/magic.h>
#include <sys/capability.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "hook_plan.h"
#include "map_entries.h"
#include "log.h"

namespace egressd {

const char* pin_outcome_name(PinOutcome o) {
  switch (o) {
    case PinOutcome::kOff: return "off";
    case PinOutcome::kUnavailable: return "unavailable";
    case PinOutcome::kNew: return "new";
    case PinOutcome::kAdopted: return "adopted";
    case PinOutcome::kHandedOver: return "handed-over";
    case PinOutcome::kDiscarded: return "discarded";
  }
  return "off";
}

uint64_t fnv1a(const void* data, size_t len, uint64_t seed) {
  uint64_t h = seed;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < len; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

namespace {

bool has_sys_admin() {
  cap_t caps = cap_get_proc();
  if (!caps) return false;
  cap_flag_value_t v = CAP_CLEAR;
  const bool ok = cap_get_flag(caps, CAP_SYS_ADMIN, CAP_EFFECTIVE, &v) == 0 && v == CAP_SET;
  cap_free(caps);
  return ok;
}

bool is_bpffs(const std::string& path) {
  struct statfs fs {};
  return statfs(path.c_str(), &fs) == 0 && static_cast<unsigned long>(fs.f_type) == BPF_FS_MAGIC;
}

// mkdir -p within bpffs; returns errno or 0.
int make_dirs(const std::string& path) {
  for (size_t at = 1; at != std::string::npos;) {
    at = path.find('/', at + 1);
    const std::string part = path.substr(0, at);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) return errno;
  }
  return 0;
}

}  // namespace

std::unique_ptr<PinnedState> PinnedState::open(const PinOptions& opts, std::string* why) {
  // The root's parent (/sys/fs/bpf) must be bpffs: a directory elsewhere
  // would hold nothing the kernel keeps.
  const std::string parent = opts.root.substr(0, opts.root.rfind('/'));
  if (!is_bpffs(parent.empty() ? "/" : parent)) {
    // systemd mounts it at boot; a machine without systemd may not have.
    // Only root (CAP_SYS_ADMIN) may mount: a confined agent does not try.
    if (!has_sys_admin()) {
      *why = fmt::format("{} is not a mounted bpffs (mount one there: mount -t bpf bpf {})", parent, parent);
      return nullptr;
    }
    if (mount("bpf", parent.c_str(), "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") != 0) {
      *why = fmt::format("{} is not a mounted bpffs, and mounting one there failed: {}", parent, strerror(errno));
      return nullptr;
    }
    log_debug("mounted a bpffs at {} for egressd's pinned state", parent);
  }
  std::unique_ptr<PinnedState> p(new PinnedState());
  p->dir_ = opts.root + "/" + opts.instance;
  if (int e = make_dirs(p->dir_)) {
    *why = fmt::format("cannot make {}: {}", p->dir_, strerror(e));
    return nullptr;
  }
  p->lock_ = UniqueFd(::open(p->dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!p->lock_) {
    *why = fmt::format("cannot open {}: {}", p->dir_, strerror(errno));
    return nullptr;
  }
  if (flock(p->lock_.get(), LOCK_EX | LOCK_NB) != 0)
    throw LoaderError(fmt::format("instance '{}' ({}) is held by another egressd; give this one its own "
                                  "(--instance NAME)",
                                  opts.instance, p->dir_));
  // The test for writability: pins are made later, after the load.
  const std::string probe = p->dir_ + "/writable_probe";
  if (mkdir(probe.c_str(), 0700) != 0 && errno != EEXIST) {
    *why = fmt::format("cannot pin in {}: {}", p->dir_, strerror(errno));
    return nullptr;
  }
  rmdir(probe.c_str());
  if (opts.fresh) {
    p->clear();
    return p;
  }
  UniqueFd meta(bpf_obj_get((p->dir_ + "/meta").c_str()));
  if (meta) {
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    Meta m{};
    uint32_t key = 0;
    if (bpf_obj_get_info_by_fd(meta.get(), &info, &len) == 0 && info.value_size == sizeof(Meta) &&
        bpf_map_lookup_elem(meta.get(), &key, &m) == 0)
      p->found_ = m;
    else
      p->unreadable_meta_ = true;
  } else {
    // Maps or links without a meta: a pinning that did not finish.
    DIR* d = opendir(p->dir_.c_str());
    for (dirent* e; d && (e = readdir(d));)
      if (e->d_name[0] != '.' && std::string(e->d_name) != "writable_probe") p->unreadable_meta_ = true;
    if (d) closedir(d);
  }
  return p;
}

bool PinnedState::adoptable(uint64_t identity, const std::vector<std::string>& links, std::string* why,
                            bool* other_programs) const {
  why->clear();
  if (other_programs) *other_programs = false;
  if (unreadable_meta_) {
    *why = "incomplete or unreadable (no meta record this build can read)";
    return false;
  }
  if (!found_) return false;
  uint32_t layout = found_->layout;
  if (const char* force = getenv("EGRESSD_TEST_PIN_LAYOUT"); force && *force)
    layout = static_cast<uint32_t>(std::strtoul(force, nullptr, 10));  // a test switch: another build's layout
  if (layout != kPinLayout) {
    *why = fmt::format("layout {}, this build reads layout {}", layout, kPinLayout);
    return false;
  }
  if (found_->identity != identity) {
    *why = "pinned by other programs (another build, kernel choice or kernel.* setting)";
    if (other_programs) *other_programs = true;
    return false;
  }
  for (const auto& l : links) {
    struct stat st {};
    if (stat(link_path(l).c_str(), &st) != 0) {
      *why = fmt::format("link {} is missing", l);
      return false;
    }
  }
  return true;
}

int PinnedState::open_map(const std::string& name) const { return bpf_obj_get(map_path(name).c_str()); }

uint64_t PinnedState::flows_held() const {
  uint64_t n = 0;
  for (const char* name : {"sk_flows_hash", "flow_extra"}) {
    UniqueFd fd(open_map(name));
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (!fd || bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0 || !info.key_size) continue;
    std::vector<char> key(info.key_size), next(info.key_size);
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd.get(), prev, next.data()) == 0) {
      ++n;
      key.swap(next);
      prev = key.data();
    }
  }
  return n;
}

void PinnedState::clear_links() {
  unlink((dir_ + "/meta").c_str());
  DIR* d = opendir(dir_.c_str());
  if (!d) return;
  for (dirent* e; (e = readdir(d));) {
    if (std::strncmp(e->d_name, "link_", 5) != 0) continue;
    const std::string path = dir_ + "/" + e->d_name;
    if (unlink(path.c_str()) != 0) log_warning("cannot unpin {}: {}", path, strerror(errno));
  }
  closedir(d);
}

void PinnedState::clear() {
  // The meta first: a directory without it is never adopted.
  unlink((dir_ + "/meta").c_str());
  DIR* d = opendir(dir_.c_str());
  if (!d) return;
  for (dirent* e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    const std::string path = dir_ + "/" + e->d_name;
    if (unlink(path.c_str()) != 0) log_warning("cannot unpin {}: {}", path, strerror(errno));
  }
  closedir(d);
}

void PinnedState::write_meta(uint64_t identity) {
  Meta m{kPinLayout, 0, identity};
  UniqueFd fd(bpf_map_create(BPF_MAP_TYPE_ARRAY, "egressd_meta", sizeof(uint32_t), sizeof(Meta), 1, nullptr));
  uint32_t key = 0;
  if (!fd || bpf_map_update_elem(fd.get(), &key, &m, BPF_ANY) != 0 ||
      bpf_obj_pin(fd.get(), (dir_ + "/meta").c_str()) != 0)
    throw LoaderError(fmt::format("pin {}/meta", dir_), errno);
}

namespace {

struct CheckpointHead {
  uint64_t seq = 0;
  uint32_t slot = 0;
  uint32_t chunks = 0;
  uint64_t length = 0;
  uint64_t hash = 0;
};

int open_or_make(const std::string& path, bool create, bpf_map_type type, const char* name, uint32_t key_size,
                 uint32_t value_size, uint32_t entries, uint32_t flags, std::string* why) {
  if (!create) {
    const int fd = bpf_obj_get(path.c_str());
    if (fd < 0) *why = fmt::format("open {}: {}", path, errno_text(errno));
    return fd;
  }
  LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = flags);
  const int fd = bpf_map_create(type, name, key_size, value_size, entries, &o);
  if (fd < 0 || bpf_obj_pin(fd, path.c_str()) != 0) {
    *why = fmt::format("make {}: {}", path, errno_text(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

struct SeriesValue {
  uint32_t length = 0;
  char key[PinnedState::kSeriesKeyMax];
};

struct ProcessKey {
  uint32_t tgid = 0;
  uint32_t unused = 0;
  uint64_t start_ns = 0;
};
// Most exec records fit the small map; long paths and command lines go to
// the large one (values are allocated at their full size).
template <size_t N>
struct RecordValue {
  uint32_t length = 0;
  char data[N];
};
using SmallRecord = RecordValue<1020>;
using LargeRecord = RecordValue<sizeof(exec_event)>;

}  // namespace

bool PinnedState::open_store(bool create, std::string* why) {
  using E = CountedEntry;
  counted_ = UniqueFd(open_or_make(dir_ + "/counted", create, BPF_MAP_TYPE_HASH, "egressd_counted",
                                   sizeof(uint64_t), sizeof(E), 1u << 20, BPF_F_NO_PREALLOC, why));
  if (!counted_) return false;
  counted_extra_ = UniqueFd(open_or_make(dir_ + "/counted_extra", create, BPF_MAP_TYPE_HASH, "egressd_cnt_x",
                                         sizeof(flow_key), sizeof(E), 1u << 20, BPF_F_NO_PREALLOC, why));
  if (!counted_extra_) return false;
  series_ = UniqueFd(open_or_make(dir_ + "/series", create, BPF_MAP_TYPE_HASH, "egressd_series",
                                  sizeof(uint32_t), sizeof(SeriesValue), 1u << 17, BPF_F_NO_PREALLOC, why));
  if (!series_) return false;
  chunks_ = UniqueFd(open_or_make(dir_ + "/checkpoint", create, BPF_MAP_TYPE_HASH, "egressd_ckpt",
                                  sizeof(uint32_t), kChunk, 2 * kChunksPerSlot, BPF_F_NO_PREALLOC, why));
  if (!chunks_) return false;
  head_ = UniqueFd(open_or_make(dir_ + "/checkpoint_head", create, BPF_MAP_TYPE_ARRAY, "egressd_ckpt_h",
                                sizeof(uint32_t), sizeof(CheckpointHead), 1, 0, why));
  if (!head_) return false;
  records_ = UniqueFd(open_or_make(dir_ + "/processes", create, BPF_MAP_TYPE_HASH, "egressd_procs",
                                   sizeof(ProcessKey), sizeof(SmallRecord), 1u << 17, BPF_F_NO_PREALLOC, why));
  if (!records_) return false;
  large_records_ = UniqueFd(open_or_make(dir_ + "/processes_large", create, BPF_MAP_TYPE_HASH, "egressd_procs_l",
                                         sizeof(ProcessKey), sizeof(LargeRecord), 1u << 14, BPF_F_NO_PREALLOC, why));
  return static_cast<bool>(large_records_);
}

bool PinnedState::set_process_record(uint32_t tgid, uint64_t start_ns, const void* record, size_t len) {
  if (!records_ || !large_records_) return false;
  const ProcessKey key{tgid, 0, start_ns};
  auto put = [&](int fd, int other, auto& v) {
    if (len > sizeof(v.data)) return false;
    v.length = static_cast<uint32_t>(len);
    std::memcpy(v.data, record, len);
    bpf_map_delete_elem(other, &key);  // an earlier record of it, in the other map
    return bpf_map_update_elem(fd, &key, &v, BPF_ANY) == 0;
  };
  if (len <= sizeof(SmallRecord::data)) {
    SmallRecord v;
    return put(records_.get(), large_records_.get(), v);
  }
  auto v = std::make_unique<LargeRecord>();
  return put(large_records_.get(), records_.get(), *v);
}

void PinnedState::forget_process_record(uint32_t tgid, uint64_t start_ns) {
  const ProcessKey key{tgid, 0, start_ns};
  if (records_) bpf_map_delete_elem(records_.get(), &key);
  if (large_records_) bpf_map_delete_elem(large_records_.get(), &key);
}

std::vector<std::string> PinnedState::all_process_records() const {
  std::vector<std::string> out;
  auto read = [&](int fd, auto& v) {
    if (fd < 0) return;
    ProcessKey key{}, next{};
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
      if (bpf_map_lookup_elem(fd, &next, &v) == 0 && v.length <= sizeof(v.data)) out.emplace_back(v.data, v.length);
      key = next;
      prev = &key;
    }
  };
  SmallRecord small;
  read(records_.get(), small);
  auto large = std::make_unique<LargeRecord>();
  read(large_records_.get(), *large);
  return out;
}

std::optional<PinnedState::CountedEntry> PinnedState::counted(const CountedKey& key) const {
  CountedEntry e;
  const bool found = std::visit(
      [&](const auto& k) {
        const int fd = std::holds_alternative<uint64_t>(key) ? counted_.get() : counted_extra_.get();
        return fd >= 0 && bpf_map_lookup_elem(fd, &k, &e) == 0;
      },
      key);
  if (!found) return std::nullopt;
  return e;
}

bool PinnedState::set_counted(const CountedKey& key, const CountedEntry& e) {
  return std::visit(
      [&](const auto& k) {
        const int fd = std::holds_alternative<uint64_t>(key) ? counted_.get() : counted_extra_.get();
        return fd >= 0 && bpf_map_update_elem(fd, &k, &e, BPF_ANY) == 0;
      },
      key);
}

void PinnedState::forget_counted(const CountedKey& key) {
  std::visit(
      [&](const auto& k) {
        const int fd = std::holds_alternative<uint64_t>(key) ? counted_.get() : counted_extra_.get();
        if (fd >= 0) bpf_map_delete_elem(fd, &k);
      },
      key);
}

namespace {

// Deletes keys from a map in one call (5.6+), else one by one.
template <typename K>
void delete_all(int fd, std::vector<K>& keys) {
  if (fd < 0 || keys.empty()) return;
  uint32_t count = static_cast<uint32_t>(keys.size());
  LIBBPF_OPTS(bpf_map_batch_opts, o);
  if (bpf_map_delete_batch(fd, keys.data(), &count, &o) == 0) return;
  for (size_t i = count; i < keys.size(); ++i) bpf_map_delete_elem(fd, &keys[i]);
}

}  // namespace

void PinnedState::forget_counted(const std::vector<CountedKey>& keys) {
  std::vector<uint64_t> cookies;
  std::vector<flow_key> extra;
  for (const auto& k : keys) {
    if (const auto* c = std::get_if<uint64_t>(&k))
      cookies.push_back(*c);
    else
      extra.push_back(std::get<flow_key>(k));
  }
  delete_all(counted_.get(), cookies);
  delete_all(counted_extra_.get(), extra);
}

std::vector<std::pair<PinnedState::CountedKey, PinnedState::CountedEntry>> PinnedState::all_counted() const {
  std::vector<std::pair<CountedKey, CountedEntry>> out;
  for (auto& [k, e] : map_entries<uint64_t, CountedEntry>(counted_.get())) out.emplace_back(k, e);
  for (auto& [k, e] : map_entries<flow_key, CountedEntry>(counted_extra_.get())) out.emplace_back(k, e);
  return out;
}

bool PinnedState::set_series(uint32_t id, std::string_view key) {
  if (!series_ || key.size() > kSeriesKeyMax) return false;
  auto v = std::make_unique<SeriesValue>();
  v->length = static_cast<uint32_t>(key.size());
  std::memcpy(v->key, key.data(), key.size());
  return bpf_map_update_elem(series_.get(), &id, v.get(), BPF_ANY) == 0;
}

void PinnedState::forget_series(uint32_t id) {
  if (series_) bpf_map_delete_elem(series_.get(), &id);
}

std::vector<std::pair<uint32_t, std::string>> PinnedState::all_series() const {
  std::vector<std::pair<uint32_t, std::string>> out;
  if (!series_) return out;
  auto v = std::make_unique<SeriesValue>();
  uint32_t key = 0, next = 0;
  const void* prev = nullptr;
  while (bpf_map_get_next_key(series_.get(), prev, &next) == 0) {
    if (bpf_map_lookup_elem(series_.get(), &next, v.get()) == 0 && v->length <= kSeriesKeyMax)
      out.emplace_back(next, std::string(v->key, v->length));
    key = next;
    prev = &key;
  }
  return out;
}

uint64_t PinnedState::committed() const {
  const uint32_t zero = 0;
  CheckpointHead head{};
  if (!head_ || bpf_map_lookup_elem(head_.get(), &zero, &head) != 0) return 0;
  return head.seq;
}

bool PinnedState::write_checkpoint(std::string_view blob, std::string* why) {
  if (!head_) {
    *why = "no checkpoint store";
    return false;
  }
  const uint32_t zero = 0;
  CheckpointHead head{};
  bpf_map_lookup_elem(head_.get(), &zero, &head);
  const size_t chunks = (blob.size() + kChunk - 1) / kChunk;
  if (chunks > kChunksPerSlot) {
    *why = fmt::format("checkpoint of {} bytes is over the store's {}", blob.size(), kChunk * kChunksPerSlot);
    return false;
  }
  CheckpointHead next{head.seq + 1, head.seq == 0 ? 0u : 1u - head.slot, static_cast<uint32_t>(chunks),
                      blob.size(), fnv1a(blob.data(), blob.size())};
  std::vector<char> chunk(kChunk);
  for (uint32_t i = 0; i < chunks; ++i) {
    const size_t n = std::min(kChunk, blob.size() - i * kChunk);
    std::fill(chunk.begin(), chunk.end(), 0);
    std::memcpy(chunk.data(), blob.data() + i * kChunk, n);
    const uint32_t key = next.slot * kChunksPerSlot + i;
    if (bpf_map_update_elem(chunks_.get(), &key, chunk.data(), BPF_ANY) != 0) {
      *why = fmt::format("write checkpoint chunk {}: {}", i, errno_text(errno));
      return false;
    }
  }
  if (bpf_map_update_elem(head_.get(), &zero, &next, BPF_ANY) != 0) {
    *why = fmt::format("write checkpoint head: {}", errno_text(errno));
    return false;
  }
  return true;
}

std::optional<std::string> PinnedState::read_checkpoint(std::string* why) const {
  const uint32_t zero = 0;
  CheckpointHead head{};
  if (!head_ || bpf_map_lookup_elem(head_.get(), &zero, &head) != 0 || head.seq == 0) {
    *why = "no checkpoint";
    return std::nullopt;
  }
  std::string blob;
  std::vector<char> chunk(kChunk);
  for (uint32_t i = 0; i < head.chunks; ++i) {
    const uint32_t key = head.slot * kChunksPerSlot + i;
    if (bpf_map_lookup_elem(chunks_.get(), &key, chunk.data()) != 0) {
      *why = fmt::format("checkpoint chunk {} missing", i);
      return std::nullopt;
    }
    blob.append(chunk.data(), std::min<size_t>(kChunk, head.length - i * kChunk));
  }
  if (blob.size() != head.length || fnv1a(blob.data(), blob.size()) != head.hash) {
    *why = "checkpoint does not match its checksum";
    return std::nullopt;
  }
  return blob;
}

}  // namespace egressd

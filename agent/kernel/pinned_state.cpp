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

#include <cerrno>
#include <cstring>

#include "hook_plan.h"
#include "log.h"

namespace egressd {

const char* pin_outcome_name(PinOutcome o) {
  switch (o) {
    case PinOutcome::kOff: return "off";
    case PinOutcome::kUnavailable: return "unavailable";
    case PinOutcome::kNew: return "new";
    case PinOutcome::kAdopted: return "adopted";
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

bool PinnedState::adoptable(uint64_t identity, const std::vector<std::string>& links, std::string* why) const {
  why->clear();
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

}  // namespace egressd

// What this kernel and this process can do, found by probing, never by
// kernel version numbers.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

struct btf;

namespace egressd {

struct FeatureCheck {
  std::string name;
  bool ok = false;
  std::string detail;  // what was found, or why it is missing
  bool required = true;
};

struct FeatureReport {
  std::string kernel_release;
  std::string cgroup2_path;  // empty when no cgroup v2 is mounted
  std::vector<FeatureCheck> checks;

  // The first required check that failed, as one line; empty when usable.
  std::string first_problem() const;
};

// proc_root: where mountinfo is read (tests point it at a fixture).
FeatureReport probe_features(const std::string& proc_root = "/proc");

// Whether the BTF's enum `type` has a value named `value` (e.g. a helper in
// enum bpf_func_id).
bool btf_enum_has(const ::btf* b, const char* type, const char* value);

// The cgroup v2 mount the socket programs attach to, from a mountinfo text:
// one whose directory is the host's root cgroup (inode 1 on cgroup2, read
// with inode_of), preferring /sys/fs/cgroup. Inside a cgroup namespace of its
// own (a container), a fresh cgroup2 mount is that namespace's root, a
// sub-tree: attached there, egressd would watch only the processes under it.
// Then path is empty and problem says so, with the fix.
struct Cgroup2Mount {
  std::string path;
  std::string problem;  // why there is none; empty when path is set
};
Cgroup2Mount find_cgroup2_mount(const std::string& mountinfo,
                                const std::function<uint64_t(const std::string&)>& inode_of);

}  // namespace egressd

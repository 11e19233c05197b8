// What this kernel and this process can do, found by probing, never by
// kernel version numbers.
#pragma once

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

// cgroup v2 mount point from a mountinfo text; prefers /sys/fs/cgroup.
std::string find_cgroup2_mount(const std::string& mountinfo);

}  // namespace egressd

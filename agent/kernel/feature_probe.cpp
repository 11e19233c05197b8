#include "feature_probe.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <sys/capability.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "events.h"

namespace egressd {
namespace {

bool has_cap(cap_t caps, cap_value_t cap) {
  cap_flag_value_t v = CAP_CLEAR;
  return cap_get_flag(caps, cap, CAP_EFFECTIVE, &v) == 0 && v == CAP_SET;
}

FeatureCheck check_privileges() {
  FeatureCheck c{"privileges", false, "", true};
  cap_t caps = cap_get_proc();
  if (!caps) {
    c.detail = "cannot read capabilities";
    return c;
  }
  const bool admin = has_cap(caps, CAP_SYS_ADMIN);
  const bool split = CAP_IS_SUPPORTED(CAP_BPF) && has_cap(caps, CAP_BPF) &&
                     has_cap(caps, CAP_PERFMON) && has_cap(caps, CAP_NET_ADMIN);
  cap_free(caps);
  c.ok = admin || split;
  c.detail = c.ok ? (admin ? "CAP_SYS_ADMIN" : "CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN")
                  : "needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (run with sudo)";
  return c;
}

}  // namespace

std::string FeatureReport::first_problem() const {
  for (const auto& c : checks)
    if (c.required && !c.ok) return fmt::format("{}: {}", c.name, c.detail);
  return {};
}

Cgroup2Mount find_cgroup2_mount(const std::string& mountinfo,
                                const std::function<uint64_t(const std::string&)>& inode_of) {
  std::istringstream in(mountinfo);
  std::string line, found, subtree;
  while (std::getline(in, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype;
    tail >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream head(line.substr(0, dash));
    std::string id, parent, dev, root, mountpoint;
    head >> id >> parent >> dev >> root >> mountpoint;
    // ROOT is relative to this process's cgroup namespace ("/.." for the
    // host's hierarchy seen from a container), so the inode decides.
    if (inode_of(mountpoint) != 1) {
      if (subtree.empty()) subtree = mountpoint;
      continue;
    }
    if (mountpoint == "/sys/fs/cgroup") return {mountpoint, ""};
    if (found.empty()) found = mountpoint;
  }
  if (!found.empty()) return {found, ""};
  if (!subtree.empty())
    return {"", fmt::format("the cgroup2 mount at {} is not the host's root cgroup (egressd runs in a cgroup "
                            "namespace of its own, a container's): attached there it would watch only the "
                            "processes under it. Run it in the host's cgroup namespace (docker run "
                            "--cgroupns=host) or mount the host's /sys/fs/cgroup into the container, as "
                            "deploy/kubernetes/30-daemonset.yaml does",
                            subtree)};
  return {"", "no cgroup2 file system mounted (mount -t cgroup2 none /sys/fs/cgroup)"};
}

bool btf_enum_has(const btf* b, const char* type, const char* value) {
  int id = btf__find_by_name_kind(b, type, BTF_KIND_ENUM);
  if (id <= 0) return false;
  const btf_type* t = btf__type_by_id(b, static_cast<__u32>(id));
  const struct btf_enum* e = btf_enum(t);
  for (int i = 0; i < btf_vlen(t); ++i)
    if (std::string(btf__name_by_offset(b, e[i].name_off)) == value) return true;
  return false;
}

FeatureReport probe_features(const std::string& proc_root) {
  FeatureReport r;
  utsname u{};
  uname(&u);
  r.kernel_release = u.release;

  r.checks.push_back(check_privileges());

  std::ifstream mi(proc_root + "/self/mountinfo");
  std::stringstream ss;
  ss << mi.rdbuf();
  const Cgroup2Mount cg = find_cgroup2_mount(ss.str(), [](const std::string& path) -> uint64_t {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
  });
  r.cgroup2_path = cg.path;
  r.checks.push_back({"cgroup v2", !cg.path.empty(), cg.path.empty() ? cg.problem : "mounted at " + cg.path});

  btf* vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) {
    r.checks.push_back({"kernel BTF", false,
                        "/sys/kernel/btf/vmlinux missing: kernel built without CONFIG_DEBUG_INFO_BTF"});
    return r;
  }
  r.checks.push_back({"kernel BTF", true, "/sys/kernel/btf/vmlinux"});
  auto has_type = [&](const char* name, int kind) {
    return btf__find_by_name_kind(vmlinux, name, kind) > 0;
  };
  auto tracepoint = [&](const char* tp, const char* use) {
    const bool ok = has_type(fmt::format("btf_trace_{}", tp).c_str(), BTF_KIND_TYPEDEF);
    r.checks.push_back({fmt::format("tp_btf/{}", tp), ok,
                        ok ? use : fmt::format("tracepoint missing; needed for {}", use)});
  };
  tracepoint("sched_process_exec", "process identity at exec");
  tracepoint("sched_process_fork", "process identity at fork");
  tracepoint("sched_process_exit", "process exit");
  {
    // Optional: before 6.3 the bytes are counted at the return of the
    // families' sendmsg (fexit), see BytesHooks.
    const bool ok = has_type("btf_trace_sock_send_length", BTF_KIND_TYPEDEF);
    r.checks.push_back({"tp_btf/sock_send_length", ok,
                        ok ? "bytes sent on every send path"
                           : "missing (Linux before 6.3): bytes are counted with fexit on the families' sendmsg",
                        false});
  }
  tracepoint("inet_sock_set_state", "TCP connect outcome");

  const bool task_iter = has_type("bpf_iter__task", BTF_KIND_STRUCT);
  r.checks.push_back({"iter/task", task_iter,
                      task_iter ? "processes running at start" : "missing (kernel before 5.8)"});

  // Optional since each has a fallback (choose_plan in hook_plan.cpp).
  auto helper = [&](const char* name) { return btf_enum_has(vmlinux, "bpf_func_id", name); };
  const bool has_loop = helper("BPF_FUNC_loop");
  r.checks.push_back({"helper bpf_loop", has_loop,
                      has_loop ? "executable path walk"
                               : fmt::format("missing (kernel before 5.17): the path walk is a bounded loop, "
                                             "{} components deep",
                                             EGRESSD_PATH_DEPTH_BOUNDED),
                      false});
  const bool storage = has_type("bpf_sk_storage_tracing_allowed", BTF_KIND_FUNC);
  const bool from_file = helper("BPF_FUNC_sock_from_file");
  r.checks.push_back({"sk_storage in tracing", storage && from_file,
                      storage && from_file
                          ? "in the BTF: per-socket state may live in sk_storage, if the verifier takes a "
                            "live-counter iterator"
                          : "missing (kernel before 5.11): per-socket state in a hash map by socket cookie, read "
                            "by the agent",
                      false});
  btf__free(vmlinux);
  return r;
}

}  // namespace egressd

#include "bpf_loader.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <unordered_set>

#include "egressd_bpf.skel.h"
#include "feature_probe.h"

namespace egressd {
namespace {

std::string err_text(int err) {
  const char* name = strerrorname_np(err);
  return fmt::format("{} ({})", name ? name : std::to_string(err), strerror(err));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

LoaderError::LoaderError(const std::string& step, int err)
    : std::runtime_error(fmt::format("{}: {}", step, err_text(err))), err_(err) {}

constexpr const char* kBytesPrograms[] = {
    "sock_send_length",      "inet_sendmsg_exit",      "inet6_sendmsg_exit",      "packet_sendmsg_exit",
    "inet_sendpage_exit",    "inet_sendmsg_kprobe",    "inet_sendmsg_kretprobe",  "inet6_sendmsg_kprobe",
    "inet6_sendmsg_kretprobe", "packet_sendmsg_kprobe", "packet_sendmsg_kretprobe", "inet_sendpage_kprobe",
    "inet_sendpage_kretprobe"};

static bool uses(const BytesHooks& h, const char* program) {
  return std::find(h.programs.begin(), h.programs.end(), program) != h.programs.end();
}

// Whether this kernel can attach kprobes (perf PMU or tracefs).
static bool kprobes_configured() {
  return access("/sys/bus/event_source/devices/kprobe/type", F_OK) == 0 ||
         access("/sys/kernel/tracing/kprobe_events", F_OK) == 0 ||
         access("/sys/kernel/debug/tracing/kprobe_events", F_OK) == 0;
}

KernelFeatures probe_kernel_features() {
  KernelFeatures k;
  btf* vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) return k;
  auto has = [&](const char* name, int kind) { return btf__find_by_name_kind(vmlinux, name, kind) > 0; };
  k.sock_send_length = has("btf_trace_sock_send_length", BTF_KIND_TYPEDEF);
  int id = btf__find_by_name_kind(vmlinux, "proto_ops", BTF_KIND_STRUCT);
  if (id > 0) {
    const btf_type* t = btf__type_by_id(vmlinux, static_cast<__u32>(id));
    const btf_member* m = btf_members(t);
    for (int i = 0; i < btf_vlen(t); ++i)
      if (std::string(btf__name_by_offset(vmlinux, m[i].name_off)) == "sendpage") k.sendpage_op = true;
  }
  k.packet_sendmsg = has("packet_sendmsg", BTF_KIND_FUNC);
  if (!k.packet_sendmsg) {
    if (btf* mod = btf__load_module_btf("af_packet", vmlinux)) {
      k.packet_sendmsg = btf__find_by_name_kind(mod, "packet_sendmsg", BTF_KIND_FUNC) > 0;
      btf__free(mod);
    }
  }
  k.bpf_loop = btf_enum_has(vmlinux, "bpf_func_id", "BPF_FUNC_loop");
  k.sock_from_file = btf_enum_has(vmlinux, "bpf_func_id", "BPF_FUNC_sock_from_file");
  // The kernel function that admits sk_storage into tracing programs came
  // with that permission (5.11).
  k.sk_storage_tracing = has("bpf_sk_storage_tracing_allowed", BTF_KIND_FUNC);
  k.kprobes = kprobes_configured();
  btf__free(vmlinux);
  return k;
}

StateChoice choose_state(const KernelFeatures& k, const std::string& socket_state, const std::string& path_walk,
                         bool bytes_need_hash) {
  StateChoice c;
  const bool storage_ok = k.sk_storage_tracing && k.sock_from_file;
  if (bytes_need_hash && socket_state == "sk_storage")
    throw std::runtime_error(
        "kernel.socket_state sk_storage: kprobe programs cannot use sk_storage (kernel.bytes_hook kprobe needs "
        "the hash store)");
  if (socket_state == "auto") {
    c.socket_hash = !storage_ok || bytes_need_hash;
  } else if (socket_state == "hash") {
    c.socket_hash = true;
  } else if (socket_state == "sk_storage") {
    if (!storage_ok)
      throw std::runtime_error(
          "kernel.socket_state sk_storage: this kernel's tracing programs cannot use sk_storage, or it lacks "
          "bpf_sock_from_file (Linux before 5.11)");
  } else {
    throw std::runtime_error(
        fmt::format("kernel.socket_state {}: use auto, sk_storage or hash", socket_state));
  }
  if (path_walk == "auto") {
    c.bounded_walk = !k.bpf_loop;
  } else if (path_walk == "bounded") {
    c.bounded_walk = true;
  } else if (path_walk == "bpf_loop") {
    if (!k.bpf_loop)
      throw std::runtime_error("kernel.path_walk bpf_loop: this kernel has no bpf_loop helper (Linux before 5.17)");
  } else {
    throw std::runtime_error(fmt::format("kernel.path_walk {}: use auto, bpf_loop or bounded", path_walk));
  }
  if (c.socket_hash)
    c.notes.push_back(
        "AF_PACKET flows end at the agent's next poll after their socket closes; bytes sent on a socket that "
        "predates the agent count from its first packet on");
  if (c.bounded_walk)
    c.notes.push_back(fmt::format("executable paths deeper than {} components are cut (marked truncated)",
                                  EGRESSD_PATH_DEPTH_BOUNDED));
  return c;
}

BytesHooks choose_bytes_hooks(const KernelFeatures& k, const std::string& mode) {
  BytesHooks h;
  std::string m = mode;
  if (m == "auto") m = k.sock_send_length ? "sock_send_length" : "fexit";
  h.mode = m;
  auto families = [&](const char* suffix) {
    for (const char* f : {"inet_sendmsg", "inet6_sendmsg"}) h.programs.push_back(fmt::format("{}_{}", f, suffix));
    if (k.packet_sendmsg)
      h.programs.push_back(fmt::format("packet_sendmsg_{}", suffix));
    else
      h.notes.push_back("AF_PACKET bytes are not counted: packet_sendmsg is not in the kernel's BTF");
    if (k.sendpage_op) h.programs.push_back(fmt::format("inet_sendpage_{}", suffix));
  };
  if (m == "sock_send_length") {
    if (!k.sock_send_length)
      throw std::runtime_error(
          "kernel.bytes_hook sock_send_length: this kernel has no tp_btf/sock_send_length (Linux before 6.3)");
    h.programs.push_back("sock_send_length");
    if (k.sendpage_op) h.programs.push_back("inet_sendpage_exit");
  } else if (m == "fexit") {
    families("exit");
  } else if (m == "kprobe") {
    if (!k.kprobes)
      throw std::runtime_error(
          "kernel.bytes_hook kprobe: this kernel has no kprobes (built without CONFIG_KPROBE_EVENTS)");
    families("kprobe");
    // The return probes, in the same order.
    const size_t n = h.programs.size();
    for (size_t i = 0; i < n; ++i) {
      std::string ret = h.programs[i];
      ret.replace(ret.size() - 6, 6, "kretprobe");
      h.programs.push_back(ret);
    }
    h.needs_hash = true;
    h.notes.push_back(
        "kretprobes track a limited number of calls at once (the kernel's default, at least 10): sends "
        "beyond that, blocked at the same time, are not counted");
  } else {
    throw std::runtime_error(fmt::format("kernel.bytes_hook {}: use auto, sock_send_length, fexit or kprobe", mode));
  }
  return h;
}

bool retry_with_kprobes(const KernelFeatures& k, const std::string& mode, const BytesHooks& failed) {
  // fexit needs BPF trampolines, which BTF does not reveal: where they are
  // missing and kprobes are configured, auto counts with kprobes instead.
  return mode == "auto" && failed.mode == "fexit" && k.kprobes;
}

std::unique_ptr<BpfPrograms> BpfPrograms::load(const LoadOptions& opts) {
  const KernelFeatures kernel = probe_kernel_features();
  BytesHooks bytes = choose_bytes_hooks(kernel, opts.bytes_hook);
  try {
    return load_with(opts, bytes, choose_state(kernel, opts.socket_state, opts.path_walk, bytes.needs_hash));
  } catch (const LoaderError& e) {
    if (!retry_with_kprobes(kernel, opts.bytes_hook, bytes)) throw;
    BytesHooks kprobes = choose_bytes_hooks(kernel, "kprobe");
    kprobes.notes.push_back(fmt::format("fexit did not load ({}): bytes are counted with kprobes", e.what()));
    return load_with(opts, kprobes, choose_state(kernel, opts.socket_state, opts.path_walk, true));
  }
}

std::unique_ptr<BpfPrograms> BpfPrograms::load_with(const LoadOptions& opts, const BytesHooks& bytes,
                                                    const StateChoice& state) {
  std::unique_ptr<BpfPrograms> p(new BpfPrograms());
  p->opts_ = opts;
  p->bytes_ = bytes;
  p->state_ = state;
  p->skel_ = egressd_bpf__open();
  if (!p->skel_) throw LoaderError("open BPF object", errno);
  egressd_bpf* s = p->skel_;
  for (const char* name : kBytesPrograms) {
    bpf_program* prog = bpf_object__find_program_by_name(s->obj, name);
    if (prog) bpf_program__set_autoload(prog, uses(p->bytes_, name));
  }
  const bool bounded = p->state_.bounded_walk;
  bpf_program__set_autoload(s->progs.sched_process_exec, !bounded);
  bpf_program__set_autoload(s->progs.dump_task, !bounded);
  bpf_program__set_autoload(s->progs.sched_process_exec_bounded, bounded);
  bpf_program__set_autoload(s->progs.dump_task_bounded, bounded);
  bpf_program__set_autoload(s->progs.dump_sock_files, !p->state_.socket_hash);
  s->rodata->sock_state_hash = p->state_.socket_hash ? 1 : 0;
  s->rodata->ringbuf_wakeup_bytes = opts.ring_wakeup_bytes;
  s->rodata->trace_mode = opts.trace_mode ? 1 : 0;
  s->rodata->trace_decide = opts.trace_decide ? 1 : 0;
  if (int err = bpf_map__set_max_entries(s->maps.events, opts.ring_buffer_bytes))
    throw LoaderError("size ring buffer", -err);
  if (int err = bpf_map__set_max_entries(s->maps.procs, opts.process_table_entries))
    throw LoaderError("size process table", -err);
  if (int err = bpf_map__set_max_entries(s->maps.flow_extra, opts.flow_table_entries))
    throw LoaderError("size flow table", -err);
  // Unused with sk_storage; allocated per entry (BPF_F_NO_PREALLOC) anyway.
  if (int err = bpf_map__set_max_entries(s->maps.sk_flows_hash, p->state_.socket_hash ? opts.flow_table_entries : 1))
    throw LoaderError("size socket table", -err);
  if (int err = egressd_bpf__load(s)) {
    if (p->bytes_.mode == "fexit")
      throw LoaderError("load BPF programs (bytes counted with fexit on the families' sendmsg)", -err);
    throw LoaderError("load BPF programs", -err);
  }
  return p;
}

std::vector<std::string> BpfPrograms::notes() const {
  std::vector<std::string> out = bytes_.notes;
  out.insert(out.end(), state_.notes.begin(), state_.notes.end());
  return out;
}

std::vector<std::pair<std::string, std::string>> BpfPrograms::hook_plan() const {
  const bool hash = state_.socket_hash;
  std::vector<std::pair<std::string, std::string>> plan = {
      {"process identity", "tp_btf/sched_process_exec,fork,exit + iter/task"},
      {"executable path", state_.bounded_walk
                              ? fmt::format("bounded loop, {} components", EGRESSD_PATH_DEPTH_BOUNDED)
                              : std::string("bpf_loop")},
      {"socket state", hash ? "hash map by socket cookie" : "sk_storage"},
      {"connects", "cgroup/connect4,connect6 + tp_btf/inet_sock_set_state"},
      {"unconnected destinations", "cgroup/sendmsg4,sendmsg6"},
      {"packets, names", "cgroup_skb/egress,ingress"},
      {"flow end", "cgroup/sock_release"},
      {"live counters", hash ? "socket hash map, read by the agent" : "iter/task_file"},
  };
  std::string bytes;
  for (const auto& name : bytes_.programs) {
    if (name.rfind("inet_sendpage_", 0) == 0) continue;
    bpf_program* prog = bpf_object__find_program_by_name(skel_->obj, name.c_str());
    if (!bytes.empty()) bytes += ",";
    bytes += prog ? bpf_program__section_name(prog) : name;
  }
  plan.emplace_back("bytes", bytes);
  const char* sendpage = uses(bytes_, "inet_sendpage_exit")     ? "fexit/inet_sendpage"
                         : uses(bytes_, "inet_sendpage_kprobe") ? "kprobe,kretprobe/inet_sendpage"
                                                                : "same as bytes";
  plan.emplace_back("sendfile and splice", sendpage);
  return plan;
}

BpfPrograms::~BpfPrograms() {
  for (auto it = links_.rbegin(); it != links_.rend(); ++it) bpf_link__destroy(*it);
  if (skel_) egressd_bpf__destroy(skel_);
}

void BpfPrograms::attach_tracing(const char* name, bpf_program* prog) {
  bpf_link* link = bpf_program__attach(prog);
  if (!link) throw LoaderError(fmt::format("attach {}", name), errno);
  links_.push_back(link);
  attached_.push_back(fmt::format("{} -> {}", name, bpf_program__section_name(prog)));
}

void BpfPrograms::attach_cgroup(const char* name, bpf_program* prog, int cgroup_fd) {
  bpf_link* link = bpf_program__attach_cgroup(prog, cgroup_fd);
  if (!link) throw LoaderError(fmt::format("attach {} to cgroup {}", name, opts_.cgroup_path), errno);
  links_.push_back(link);
  attached_.push_back(fmt::format("{} -> {} ({})", name, bpf_program__section_name(prog),
                                  opts_.cgroup_path));
}

void BpfPrograms::attach() {
  egressd_bpf* s = skel_;
  // Process identity first: every process that starts from here on is seen
  // by an event, and the task iterator below finds the ones already running.
  const bool bounded = state_.bounded_walk;
  attach_tracing(bounded ? "sched_process_exec_bounded" : "sched_process_exec",
                 bounded ? s->progs.sched_process_exec_bounded : s->progs.sched_process_exec);
  attach_tracing("sched_process_fork", s->progs.sched_process_fork);
  attach_tracing("sched_process_exit", s->progs.sched_process_exit);

  task_iter_ = bpf_program__attach_iter(bounded ? s->progs.dump_task_bounded : s->progs.dump_task, nullptr);
  if (!task_iter_) throw LoaderError("attach dump_task (iter/task)", errno);
  links_.push_back(task_iter_);
  attached_.push_back(bounded ? "dump_task_bounded -> iter/task" : "dump_task -> iter/task");
  if (!state_.socket_hash) {
    file_iter_ = bpf_program__attach_iter(s->progs.dump_sock_files, nullptr);
    if (!file_iter_) throw LoaderError("attach dump_sock_files (iter/task_file)", errno);
    links_.push_back(file_iter_);
    attached_.push_back("dump_sock_files -> iter/task_file");
  }

  Fd cgroup(open(opts_.cgroup_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (cgroup.get() < 0) throw LoaderError(fmt::format("open cgroup {}", opts_.cgroup_path), errno);
  attach_cgroup("sock_create", s->progs.sock_create, cgroup.get());
  attach_cgroup("connect4", s->progs.connect4, cgroup.get());
  attach_cgroup("connect6", s->progs.connect6, cgroup.get());
  attach_cgroup("sendmsg4", s->progs.sendmsg4, cgroup.get());
  attach_cgroup("sendmsg6", s->progs.sendmsg6, cgroup.get());
  attach_cgroup("sock_release", s->progs.sock_release, cgroup.get());
  attach_cgroup("skb_egress", s->progs.skb_egress, cgroup.get());
  attach_cgroup("skb_ingress", s->progs.skb_ingress, cgroup.get());
  attach_tracing("inet_sock_set_state", s->progs.inet_sock_set_state);
  for (const auto& name : bytes_.programs) {
    bpf_program* prog = bpf_object__find_program_by_name(s->obj, name.c_str());
    if (!prog) throw LoaderError(fmt::format("find program {}", name), ENOENT);
    attach_tracing(name.c_str(), prog);
  }
}

std::vector<std::string> BpfPrograms::programs() const {
  std::vector<std::string> out;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    if (!bpf_program__autoload(prog)) continue;  // not for this kernel
    out.push_back(fmt::format("{} -> {}", bpf_program__name(prog), bpf_program__section_name(prog)));
  }
  return out;
}

int BpfPrograms::ring_buffer_fd() const { return bpf_map__fd(skel_->maps.events); }

uint64_t BpfPrograms::ring_buffer_size() const { return bpf_map__max_entries(skel_->maps.events); }

std::string BpfPrograms::read_iterator(bpf_link* link, const char* what) {
  Fd fd(bpf_iter_create(bpf_link__fd(link)));
  if (fd.get() < 0) throw LoaderError(fmt::format("create {} iterator", what), errno);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw LoaderError(fmt::format("read {} iterator", what), errno);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::vector<ExecRecord> BpfPrograms::running_processes() {
  std::string data = read_iterator(task_iter_, "task");
  std::vector<ExecRecord> out;
  size_t off = 0;
  while (off + sizeof(event_header) <= data.size()) {
    auto decoded = decode_event(data.data() + off, data.size() - off);
    event_header h;
    std::memcpy(&h, data.data() + off, sizeof(h));
    if (auto* ev = std::get_if<Event>(&decoded)) {
      if (auto* rec = std::get_if<ExecRecord>(ev)) out.push_back(std::move(*rec));
    }
    if (h.size < sizeof(event_header)) break;
    off += h.size;
  }
  std::sort(out.begin(), out.end(), [](const ExecRecord& a, const ExecRecord& b) {
    return a.fixed.proc.start_ns < b.fixed.proc.start_ns;
  });
  return out;
}

namespace {

// Inode numbers of every socket some process holds open, from /proc/*/fd.
std::unordered_set<uint64_t> open_socket_inodes() {
  std::unordered_set<uint64_t> out;
  std::error_code ec;
  for (const auto& proc : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = proc.path().filename();
    if (pid.empty() || !std::isdigit(static_cast<unsigned char>(pid[0]))) continue;
    std::error_code fd_ec;
    for (const auto& fd : std::filesystem::directory_iterator(proc.path() / "fd", fd_ec)) {
      char target[64];
      ssize_t n = readlink(fd.path().c_str(), target, sizeof(target) - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      unsigned long long ino = 0;
      if (std::sscanf(target, "socket:[%llu]", &ino) == 1) out.insert(ino);
    }
  }
  return out;
}

}  // namespace

std::vector<sock_flow> BpfPrograms::live_sockets() {
  if (!state_.socket_hash) {
    std::string data = read_iterator(file_iter_, "socket file");
    std::vector<sock_flow> out(data.size() / sizeof(sock_flow));
    std::memcpy(out.data(), data.data(), out.size() * sizeof(sock_flow));
    return out;
  }
  // The hash store: sock_release deletes inet sockets' entries; AF_PACKET
  // sockets have no release hook, so the agent ends those no process holds.
  std::vector<sock_flow> out;
  std::vector<uint64_t> packet_keys;
  int fd = bpf_map__fd(skel_->maps.sk_flows_hash);
  uint64_t key = 0, next = 0;
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    sock_flow f{};
    if (bpf_map_lookup_elem(fd, &next, &f) == 0 && f.cookie) {
      out.push_back(f);
      if (next & SOCK_KEY_PACKET) packet_keys.push_back(next);
    }
    key = next;
    prev = &key;
  }
  if (packet_keys.empty()) return out;
  const auto open = open_socket_inodes();
  for (uint64_t k : packet_keys) {
    if (open.count(k & ~SOCK_KEY_PACKET)) continue;
    bpf_map_delete_elem(fd, &k);
    std::erase_if(out, [k](const sock_flow& f) { return f.cookie == k; });
  }
  return out;
}

std::vector<std::pair<flow_key, flow_counters>> BpfPrograms::extra_flows() {
  std::vector<std::pair<flow_key, flow_counters>> out;
  int fd = bpf_map__fd(skel_->maps.flow_extra);
  flow_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    flow_counters c{};
    if (bpf_map_lookup_elem(fd, &next, &c) == 0) out.emplace_back(next, c);
    key = next;
    prev = &key;
  }
  return out;
}

void BpfPrograms::delete_extra_flows(const std::vector<flow_key>& keys) {
  int fd = bpf_map__fd(skel_->maps.flow_extra);
  for (const auto& k : keys) bpf_map_delete_elem(fd, &k);
}

void BpfPrograms::set_process_tool(uint32_t tgid, uint64_t start_ns, uint32_t tool_id, bool follow) {
  int fd = bpf_map__fd(skel_->maps.procs);
  proc_state st{};
  if (bpf_map_lookup_elem(fd, &tgid, &st) != 0 || st.start_ns != start_ns) return;
  st.tool_id = tool_id;
  st.flags = follow ? (st.flags & ~PROC_F_NO_FOLLOW) : (st.flags | PROC_F_NO_FOLLOW);
  bpf_map_update_elem(fd, &tgid, &st, BPF_EXIST);
}

bool BpfPrograms::set_trace_state(uint32_t tgid, uint64_t start_ns, uint32_t gen, bool traced) {
  int fd = bpf_map__fd(skel_->maps.procs);
  proc_state st{};
  if (bpf_map_lookup_elem(fd, &tgid, &st) != 0 || st.start_ns != start_ns) return false;
  if ((st.flags >> PROC_GEN_SHIFT) != gen) return false;
  if (st.flags & PROC_F_TRACED) return true;  // followed for good
  st.flags &= ~PROC_F_UNDECIDED;
  if (traced) st.flags |= PROC_F_TRACED;
  return bpf_map_update_elem(fd, &tgid, &st, BPF_EXIST) == 0;
}

std::optional<uint64_t> BpfPrograms::follow_process(uint32_t tgid) {
  int fd = bpf_map__fd(skel_->maps.procs);
  proc_state st{};
  if (bpf_map_lookup_elem(fd, &tgid, &st) != 0) return std::nullopt;
  st.flags = (st.flags & ~PROC_F_UNDECIDED) | PROC_F_TRACED;
  if (bpf_map_update_elem(fd, &tgid, &st, BPF_EXIST) != 0) return std::nullopt;
  return st.start_ns;
}

std::array<uint64_t, KSTAT_MAX> BpfPrograms::kernel_stats() const {
  std::array<uint64_t, KSTAT_MAX> out{};
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return out;
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu));
  int fd = bpf_map__fd(skel_->maps.kstats);
  for (uint32_t i = 0; i < KSTAT_MAX; ++i) {
    if (bpf_map_lookup_elem(fd, &i, per_cpu.data()) != 0) continue;
    for (uint64_t v : per_cpu) out[i] += v;
  }
  return out;
}

uint64_t BpfPrograms::flow_map_capacity() const { return bpf_map__max_entries(skel_->maps.flow_extra); }

bool BpfPrograms::map_access_works() const {
  uint32_t key = 0;
  std::vector<uint64_t> per_cpu(static_cast<size_t>(std::max(1, libbpf_num_possible_cpus())));
  return bpf_map_lookup_elem(bpf_map__fd(skel_->maps.kstats), &key, per_cpu.data()) == 0;
}

std::vector<BpfPrograms::ProgramStats> BpfPrograms::program_stats() const {
  std::vector<ProgramStats> out;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) != 0) continue;
    out.push_back({bpf_program__name(prog), info.run_cnt, info.run_time_ns});
  }
  return out;
}

std::pair<uint64_t, uint64_t> BpfPrograms::process_map_fill() const {
  int fd = bpf_map__fd(skel_->maps.procs);
  uint32_t key = 0, next = 0;
  const void* prev = nullptr;
  uint64_t n = 0;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    ++n;
    key = next;
    prev = &key;
  }
  return {n, bpf_map__max_entries(skel_->maps.procs)};
}

}  // namespace egressd

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

LoaderError::LoaderError(const std::string& message) : std::runtime_error(message), err_(0) {}

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

namespace {

// Every program in bpf/egressd.bpf.c, for EGRESSD_REFUSE_PROGRAMS.
std::vector<std::string> object_programs(const egressd_bpf* s) {
  std::vector<std::string> out;
  bpf_program* prog;
  bpf_object__for_each_program(prog, s->obj) out.emplace_back(bpf_program__name(prog));
  return out;
}

// The hook a bytes program attaches to, from its name.
std::string bytes_section(const std::string& program) {
  if (program == "sock_send_length") return "tp_btf/sock_send_length";
  for (const auto& [suffix, kind] : {std::pair{"_kretprobe", "kretprobe"}, {"_kprobe", "kprobe"}, {"_exit", "fexit"}}) {
    const std::string sfx = suffix;
    if (program.size() > sfx.size() && program.compare(program.size() - sfx.size(), sfx.size(), sfx) == 0)
      return fmt::format("{}/{}", kind, program.substr(0, program.size() - sfx.size()));
  }
  return program;
}

// An implementation of a job: the hook it names and the programs it loads.
struct Candidate {
  std::string hook;
  std::vector<std::string> programs;
};

// The first program of c that counts as refused.
const std::string* refused_in(const Candidate& c, const Refusals& refused) {
  for (const auto& p : c.programs)
    if (auto it = refused.find(p); it != refused.end()) return &it->first;
  return nullptr;
}

std::string refusal_line(const Candidate& c, const std::string& program, const Refusals& refused) {
  return fmt::format("{} ({}): {}", c.hook, program, refused.at(program));
}

// Picks the first candidate nothing refused; records the others in job.
// Returns its index, or -1 when every one was refused.
int pick(const std::vector<Candidate>& candidates, const Refusals& refused, JobChoice& job) {
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (const std::string* p = refused_in(candidates[i], refused)) {
      job.refused.push_back(refusal_line(candidates[i], *p, refused));
      continue;
    }
    job.hook = candidates[i].hook;
    return static_cast<int>(i);
  }
  return -1;
}

[[noreturn]] void nothing_left(const JobChoice& job) {
  std::string msg = fmt::format("load BPF programs: the kernel refused every way egressd has to do '{}':", job.job);
  for (const auto& r : job.refused) msg += "\n  " + r;
  throw LoaderError(msg);
}

}  // namespace

std::vector<std::string> LoadPlan::notes() const {
  std::vector<std::string> out = bytes.notes;
  out.insert(out.end(), state.notes.begin(), state.notes.end());
  return out;
}

LoadPlan choose_plan(const KernelFeatures& k, const LoadOptions& opts, const Refusals& refused) {
  LoadPlan plan;
  std::vector<JobChoice> jobs;
  auto add_programs = [&](const Candidate& c) {
    plan.programs.insert(plan.programs.end(), c.programs.begin(), c.programs.end());
  };

  // Process identity: one way only.
  {
    Candidate c{"tp_btf/sched_process_exec,fork,exit + iter/task", {"sched_process_fork", "sched_process_exit"}};
    JobChoice job{"process identity", "", {}};
    if (pick({c}, refused, job) < 0) nothing_left(job);
    add_programs(c);
    jobs.push_back(job);
  }

  // Executable path: bpf_loop (5.17+), else a bounded loop.
  {
    if (opts.path_walk != "auto" && opts.path_walk != "bpf_loop" && opts.path_walk != "bounded")
      throw std::runtime_error(fmt::format("kernel.path_walk {}: use auto, bpf_loop or bounded", opts.path_walk));
    if (opts.path_walk == "bpf_loop" && !k.bpf_loop)
      throw std::runtime_error("kernel.path_walk bpf_loop: this kernel has no bpf_loop helper (Linux before 5.17)");
    std::vector<Candidate> cs;
    if (k.bpf_loop && opts.path_walk != "bounded") cs.push_back({"bpf_loop", {"sched_process_exec", "dump_task"}});
    if (opts.path_walk != "bpf_loop")
      cs.push_back({fmt::format("bounded loop, {} components", EGRESSD_PATH_DEPTH_BOUNDED),
                    {"sched_process_exec_bounded", "dump_task_bounded"}});
    JobChoice job{"executable path", "", {}};
    int i = pick(cs, refused, job);
    if (i < 0) nothing_left(job);
    add_programs(cs[i]);
    plan.state.bounded_walk = cs[i].programs.front() == "sched_process_exec_bounded";
    jobs.push_back(job);
  }

  // Bytes: the tracepoint (6.3+), fexit on each family's sendmsg, kprobes.
  {
    std::vector<std::string> modes;
    if (opts.bytes_hook == "auto") {
      if (k.sock_send_length) modes.push_back("sock_send_length");
      modes.push_back("fexit");
      if (k.kprobes) modes.push_back("kprobe");
    } else {
      modes.push_back(opts.bytes_hook);
    }
    JobChoice job{"bytes", "", {}};
    std::vector<BytesHooks> hooks;
    std::vector<Candidate> cs;
    for (const auto& m : modes) {
      hooks.push_back(choose_bytes_hooks(k, m));  // a forced mode that cannot work throws
      Candidate c{"", hooks.back().programs};
      for (const auto& p : c.programs) {
        if (p.rfind("inet_sendpage_", 0) == 0) continue;  // its own job below
        c.hook += (c.hook.empty() ? "" : ",") + bytes_section(p);
      }
      cs.push_back(c);
    }
    int i = pick(cs, refused, job);
    if (i < 0) nothing_left(job);
    plan.bytes = hooks[i];
    add_programs(cs[i]);
    jobs.push_back(job);
    std::string sendpage = "same as bytes";
    for (const auto& p : plan.bytes.programs)
      if (p.rfind("inet_sendpage_", 0) == 0 && p.find("kretprobe") == std::string::npos)
        sendpage = p == "inet_sendpage_exit" ? "fexit/inet_sendpage" : "kprobe,kretprobe/inet_sendpage";
    jobs.push_back({"sendfile and splice", sendpage, {}});
  }

  // Socket state and live counters. sk_storage (5.11+) needs a way to read
  // the counters of open sockets: iter/task_file, else the storage map's own
  // iterator. Without either, or with kprobe bytes, the hash store.
  JobChoice state_job{"socket state", "", {}};
  JobChoice live_job{"live counters", "", {}};
  {
    const std::string& mode = opts.socket_state;
    if (mode != "auto" && mode != "sk_storage" && mode != "hash")
      throw std::runtime_error(fmt::format("kernel.socket_state {}: use auto, sk_storage or hash", mode));
    if (mode == "sk_storage" && plan.bytes.needs_hash)
      throw std::runtime_error(
          "kernel.socket_state sk_storage: kprobe programs cannot use sk_storage (kernel.bytes_hook kprobe needs "
          "the hash store)");
    const bool storage_here = k.sk_storage_tracing && (k.task_file_iter || k.sk_storage_map_iter);
    if (mode == "sk_storage" && !storage_here)
      throw std::runtime_error(
          "kernel.socket_state sk_storage: this kernel's tracing programs cannot use sk_storage (Linux before "
          "5.11)");
    const bool storage = storage_here && mode != "hash" && !plan.bytes.needs_hash;
    if (storage) {
      if (auto it = refused.find(kSkStorageRefusal); it != refused.end())
        state_job.refused.push_back(fmt::format("sk_storage: {}", it->second));
    }
    std::vector<Candidate> cs;
    std::vector<LiveCounters> kinds;  // cs[i] reads live counters the way kinds[i] says
    auto offer = [&](Candidate c, LiveCounters kind) {
      cs.push_back(std::move(c));
      kinds.push_back(kind);
    };
    if (storage && !refused.count(kSkStorageRefusal)) {
      if (k.task_file_iter && k.sock_from_file)
        offer({"iter/task_file", {"dump_sock_files"}}, LiveCounters::kTaskFile);
      if (k.sk_storage_map_iter) offer({"iter/bpf_sk_storage_map", {"dump_sk_storage"}}, LiveCounters::kSkStorageMap);
    }
    if (mode != "sk_storage") offer({"socket hash map, read by the agent", {}}, LiveCounters::kHashMap);
    int i = pick(cs, refused, live_job);
    if (i < 0) {
      if (mode == "sk_storage")
        live_job.refused.push_back("socket hash map: kernel.socket_state is sk_storage (the configuration)");
      nothing_left(live_job);
    }
    add_programs(cs[i]);
    plan.live = kinds[i];
    plan.state.socket_hash = plan.live == LiveCounters::kHashMap;
    if (plan.state.socket_hash && storage && !refused.count(kSkStorageRefusal))
      state_job.refused.push_back("sk_storage: no live-counter iterator left (see live counters)");
    state_job.hook = plan.state.socket_hash ? "hash map by socket cookie" : "sk_storage";
  }

  // The socket hooks: one way each, none the agent can run without.
  const std::vector<std::pair<Candidate, std::string>> fixed = {
      {{"cgroup/connect4,connect6 + tp_btf/inet_sock_set_state", {"connect4", "connect6", "inet_sock_set_state"}},
       "connects"},
      {{"cgroup/sendmsg4,sendmsg6", {"sendmsg4", "sendmsg6"}}, "unconnected destinations"},
      {{"cgroup_skb/egress,ingress", {"skb_egress", "skb_ingress"}}, "packets, names"},
      {{"cgroup/sock_create,sock_release", {"sock_create", "sock_release"}}, "flow end"},
  };
  std::vector<JobChoice> socket_jobs;
  for (const auto& [c, name] : fixed) {
    JobChoice job{name, "", {}};
    if (pick({c}, refused, job) < 0) nothing_left(job);
    add_programs(c);
    socket_jobs.push_back(job);
  }

  plan.state.tracing_cookie = plan.state.socket_hash && !plan.bytes.needs_hash && k.socket_ptr_cookie &&
                              !refused.count(kTracingCookieRefusal);
  if (plan.state.socket_hash && !plan.bytes.needs_hash && k.socket_ptr_cookie)
    if (auto it = refused.find(kTracingCookieRefusal); it != refused.end())
      state_job.refused.push_back(fmt::format("cookies made in tracing programs: {}", it->second));

  // The order egressd check prints them in.
  plan.jobs = {jobs[0], jobs[1], state_job};
  plan.jobs.insert(plan.jobs.end(), socket_jobs.begin(), socket_jobs.end());
  plan.jobs.push_back(live_job);
  plan.jobs.push_back(jobs[2]);
  plan.jobs.push_back(jobs[3]);

  if (plan.state.socket_hash)
    plan.state.notes.push_back(fmt::format(
        "socket state is in a hash map of {} sockets (kernel.flow_table_entries); sockets beyond it are counted "
        "in egressd_kernel_map_full_total{{map=\"sk_storage\"}}{}",
        opts.flow_table_entries,
        plan.state.tracing_cookie ? ""
                                  : "; bytes sent on a socket that predates the agent count from its first "
                                    "packet on"));
  if (plan.state.bounded_walk)
    plan.state.notes.push_back(fmt::format("executable paths deeper than {} components are cut (marked truncated)",
                                           EGRESSD_PATH_DEPTH_BOUNDED));
  return plan;
}

std::optional<Refusal> refused_program(const std::string& log) {
  // libbpf 1.x: "libbpf: prog 'NAME': BPF program load failed: ...", the
  // verifier's log between BEGIN and END PROG LOAD LOG, then
  // "libbpf: prog 'NAME': failed to load: -13". A program whose hook is not
  // in the kernel fails before the verifier: "failed to find kernel BTF ...".
  std::istringstream in(log);
  std::string line, name, first_warning, last_verifier_line, helper;
  bool in_log = false;
  auto prog_of = [](const std::string& l, std::string* rest) -> std::string {
    auto at = l.find("prog '");
    if (at == std::string::npos) return {};
    auto end = l.find("': ", at + 6);
    if (end == std::string::npos) return {};
    if (rest) *rest = l.substr(end + 3);
    return l.substr(at + 6, end - at - 6);
  };
  auto says_nothing = [](const std::string& l) {
    return l.empty() || l.rfind("processed ", 0) == 0 || l.rfind("verification time", 0) == 0 ||
           l.rfind("stack depth", 0) == 0 || l.rfind("max_states_per_insn", 0) == 0 || l.rfind("-- ", 0) == 0;
  };
  std::string failed;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    std::string rest;
    const std::string prog = prog_of(line, &rest);
    if (!prog.empty() && rest.find("-- BEGIN PROG LOAD LOG --") != std::string::npos) {
      in_log = true;
      name = prog;
      last_verifier_line.clear();
      helper.clear();
      continue;
    }
    if (in_log) {
      if (line.find("-- END PROG LOAD LOG --") != std::string::npos) {
        in_log = false;
        std::string before = line.substr(0, line.find("-- END PROG LOAD LOG --"));
        if (!says_nothing(before)) last_verifier_line = before;
        continue;
      }
      if (!says_nothing(line)) last_verifier_line = line;
      // "73: (85) call bpf_get_socket_cookie#46"
      if (auto at = line.find(") call "); at != std::string::npos) {
        helper = line.substr(at + 7);
        helper = helper.substr(0, helper.find_first_of("#( "));
      }
      continue;
    }
    if (prog.empty()) continue;
    if (rest.rfind("failed to load", 0) == 0) {
      failed = prog;
      break;
    }
    if (first_warning.empty() || name != prog) {
      if (name != prog) last_verifier_line.clear();
      name = prog;
      first_warning = rest;
    }
  }
  if (failed.empty()) {
    if (name.empty()) return std::nullopt;
    failed = name;
  }
  if (name == failed && !last_verifier_line.empty()) return Refusal{failed, last_verifier_line, helper};
  if (name == failed && !first_warning.empty()) return Refusal{failed, first_warning, ""};
  return Refusal{failed, "refused (libbpf said no more)", ""};
}

Refusals refusals_from_env(const char* value, const std::vector<std::string>& known) {
  Refusals out;
  if (!value) return out;
  std::string list = value;
  std::replace(list.begin(), list.end(), ',', ' ');
  std::istringstream in(list);
  for (std::string name; in >> name;) {
    if (name != kSkStorageRefusal && name != kTracingCookieRefusal &&
        std::find(known.begin(), known.end(), name) == known.end())
      throw std::runtime_error(
          fmt::format("EGRESSD_REFUSE_PROGRAMS: no BPF program named '{}' (egressd check lists them)", name));
    out[name] = "refused by EGRESSD_REFUSE_PROGRAMS (a test switch)";
  }
  return out;
}

namespace {

// libbpf's messages while a load runs, kept to find the refused program;
// passed on to the print function that was set before (egressd -v).
std::mutex g_capture_mu;
std::string* g_capture = nullptr;
libbpf_print_fn_t g_previous_print = nullptr;

int capture_print(enum libbpf_print_level level, const char* format, va_list args) {
  va_list for_size, for_text;
  va_copy(for_size, args);
  va_copy(for_text, args);
  if (g_capture) {
    int n = vsnprintf(nullptr, 0, format, for_size);
    if (n > 0) {
      std::string text(static_cast<size_t>(n) + 1, '\0');
      vsnprintf(text.data(), text.size(), format, for_text);
      text.pop_back();
      g_capture->append(text);
    }
  }
  va_end(for_size);
  va_end(for_text);
  return g_previous_print ? g_previous_print(level, format, args) : 0;
}

class CaptureLibbpf {
 public:
  explicit CaptureLibbpf(std::string& out) : lock_(g_capture_mu) {
    g_capture = &out;
    g_previous_print = libbpf_set_print(capture_print);
  }
  ~CaptureLibbpf() {
    libbpf_set_print(g_previous_print);
    g_capture = nullptr;
  }

 private:
  std::lock_guard<std::mutex> lock_;
};

}  // namespace

std::unique_ptr<BpfPrograms> BpfPrograms::load(const LoadOptions& opts) {
  const KernelFeatures kernel = probe_kernel_features();
  Refusals refused;
  std::string names = opts.refuse_programs;
  if (const char* env = getenv("EGRESSD_REFUSE_PROGRAMS"); env && *env) names += std::string(" ") + env;
  if (names.find_first_not_of(" ,") != std::string::npos) {
    egressd_bpf* s = egressd_bpf__open();
    if (!s) throw LoaderError("open BPF object", errno);
    std::vector<std::string> known = object_programs(s);
    egressd_bpf__destroy(s);
    refused = refusals_from_env(names.c_str(), known);
    fmt::print(stderr, "egressd: counted as refused (EGRESSD_REFUSE_PROGRAMS, a test switch):{}\n", names);
  }
  return load_refusing(opts, kernel, std::move(refused));
}

std::unique_ptr<BpfPrograms> BpfPrograms::load_refusing(const LoadOptions& opts, const KernelFeatures& kernel,
                                                        Refusals refused) {
  const auto start = std::chrono::steady_clock::now();
  // Each refusal takes one implementation away: this ends.
  for (unsigned attempt = 1;; ++attempt) {
    LoadPlan plan = choose_plan(kernel, opts, refused);
    int err = 0;
    std::string log;
    auto p = load_plan(opts, plan, err, log);
    if (p) {
      p->kernel_ = kernel;
      p->refused_ = std::move(refused);
      p->load_attempts_ = attempt;
      p->load_ns_ = static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count());
      return p;
    }
    auto which = refused_program(log);
    if (!which || refused.count(which->program))
      throw LoaderError(plan.bytes.mode == "fexit"
                            ? "load BPF programs (bytes counted with fexit on the families' sendmsg)"
                            : "load BPF programs",
                        err);
    const std::string& program = which->program;
    const std::string& reason = which->reason;
    // A call to the helper a switch turns on is the switch's refusal, not
    // the program's: every tracing program makes cookies with it.
    if (plan.state.tracing_cookie && which->helper == "bpf_get_socket_cookie" &&
        !refused.count(kTracingCookieRefusal)) {
      refused[kTracingCookieRefusal] = fmt::format("{} was refused with it: {}", program, reason);
      continue;
    }
    // A program the agent cannot do without, refused while socket state is
    // in sk_storage, may load against the hash store: try that first.
    Refusals with = refused;
    with[program] = reason;
    bool replaceable = true;
    try {
      choose_plan(kernel, opts, with);
    } catch (const LoaderError&) {
      replaceable = false;
    }
    if (!replaceable && !plan.state.socket_hash && opts.socket_state == "auto" && !refused.count(kSkStorageRefusal))
      refused[kSkStorageRefusal] = fmt::format("{} was refused with it: {}", program, reason);
    else
      refused = std::move(with);
  }
}

std::unique_ptr<BpfPrograms> BpfPrograms::load_plan(const LoadOptions& opts, const LoadPlan& plan, int& err,
                                                    std::string& log) {
  std::unique_ptr<BpfPrograms> p(new BpfPrograms());
  p->opts_ = opts;
  p->plan_ = plan;
  p->skel_ = egressd_bpf__open();
  if (!p->skel_) throw LoaderError("open BPF object", errno);
  egressd_bpf* s = p->skel_;
  bpf_program* prog;
  bpf_object__for_each_program(prog, s->obj) {
    const std::string name = bpf_program__name(prog);
    bpf_program__set_autoload(prog, std::find(plan.programs.begin(), plan.programs.end(), name) != plan.programs.end());
  }
  s->rodata->sock_state_hash = plan.state.socket_hash ? 1 : 0;
  s->rodata->tracing_cookie = plan.state.tracing_cookie ? 1 : 0;
  s->rodata->ringbuf_wakeup_bytes = opts.ring_wakeup_bytes;
  s->rodata->trace_mode = opts.trace_mode ? 1 : 0;
  s->rodata->trace_decide = opts.trace_decide ? 1 : 0;
  if (int e = bpf_map__set_max_entries(s->maps.events, opts.ring_buffer_bytes))
    throw LoaderError("size ring buffer", -e);
  if (int e = bpf_map__set_max_entries(s->maps.procs, opts.process_table_entries))
    throw LoaderError("size process table", -e);
  if (int e = bpf_map__set_max_entries(s->maps.flow_extra, opts.flow_table_entries))
    throw LoaderError("size flow table", -e);
  // Unused with sk_storage; allocated per entry (BPF_F_NO_PREALLOC) anyway.
  if (int e = bpf_map__set_max_entries(s->maps.sk_flows_hash, plan.state.socket_hash ? opts.flow_table_entries : 1))
    throw LoaderError("size socket table", -e);
  int e;
  {
    CaptureLibbpf capture(log);
    e = egressd_bpf__load(s);
  }
  if (e) {
    err = -e;
    return nullptr;
  }
  return p;
}

std::vector<std::pair<std::string, std::string>> BpfPrograms::hook_plan() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& j : plan_.jobs) out.emplace_back(j.job, j.hook);
  return out;
}

BpfPrograms::~BpfPrograms() {
  detach_all();
  if (skel_) egressd_bpf__destroy(skel_);
}

namespace {

// A program the kernel would not attach: the job may have another way.
struct AttachRefused {
  std::string program;
  std::string reason;
};

}  // namespace

void BpfPrograms::attach_tracing(const char* name, bpf_program* prog) {
  bpf_link* link = bpf_program__attach(prog);
  if (!link) throw AttachRefused{name, fmt::format("attach {}: {}", bpf_program__section_name(prog), err_text(errno))};
  links_.push_back(link);
  attached_.push_back(fmt::format("{} -> {}", name, bpf_program__section_name(prog)));
}

void BpfPrograms::attach_cgroup(const char* name, bpf_program* prog, int cgroup_fd) {
  bpf_link* link = bpf_program__attach_cgroup(prog, cgroup_fd);
  if (!link)
    throw AttachRefused{name, fmt::format("attach to cgroup {}: {}", opts_.cgroup_path, err_text(errno))};
  links_.push_back(link);
  attached_.push_back(fmt::format("{} -> {} ({})", name, bpf_program__section_name(prog),
                                  opts_.cgroup_path));
}

void BpfPrograms::attach_iter(const char* name, bpf_program* prog, bpf_link** out, int map_fd) {
  union bpf_iter_link_info info {};
  DECLARE_LIBBPF_OPTS(bpf_iter_attach_opts, o);
  if (map_fd >= 0) {
    info.map.map_fd = static_cast<__u32>(map_fd);
    o.link_info = &info;
    o.link_info_len = sizeof(info);
  }
  bpf_link* link = bpf_program__attach_iter(prog, map_fd >= 0 ? &o : nullptr);
  if (!link) throw AttachRefused{name, fmt::format("attach {}: {}", bpf_program__section_name(prog), err_text(errno))};
  links_.push_back(link);
  *out = link;
  attached_.push_back(fmt::format("{} -> {}", name, bpf_program__section_name(prog)));
}

void BpfPrograms::detach_all() {
  for (auto it = links_.rbegin(); it != links_.rend(); ++it) bpf_link__destroy(*it);
  links_.clear();
  attached_.clear();
  task_iter_ = live_iter_ = nullptr;
}

void BpfPrograms::attach() {
  for (;;) {
    try {
      attach_all();
      return;
    } catch (const AttachRefused& r) {
      // Load the next plan without this program and attach that instead.
      detach_all();
      Refusals refused = refused_;
      refused[r.program] = r.reason;
      std::unique_ptr<BpfPrograms> next = load_refusing(opts_, kernel_, std::move(refused));
      std::swap(skel_, next->skel_);
      std::swap(plan_, next->plan_);
      std::swap(refused_, next->refused_);
      load_attempts_ += next->load_attempts_;
      load_ns_ += next->load_ns_;
    }
  }
}

void BpfPrograms::attach_all() {
  egressd_bpf* s = skel_;
  // Process identity first: every process that starts from here on is seen
  // by an event, and the task iterator below finds the ones already running.
  const bool bounded = plan_.state.bounded_walk;
  attach_tracing(bounded ? "sched_process_exec_bounded" : "sched_process_exec",
                 bounded ? s->progs.sched_process_exec_bounded : s->progs.sched_process_exec);
  attach_tracing("sched_process_fork", s->progs.sched_process_fork);
  attach_tracing("sched_process_exit", s->progs.sched_process_exit);
  attach_iter(bounded ? "dump_task_bounded" : "dump_task", bounded ? s->progs.dump_task_bounded : s->progs.dump_task,
              &task_iter_);
  if (plan_.live == LiveCounters::kTaskFile)
    attach_iter("dump_sock_files", s->progs.dump_sock_files, &live_iter_);
  else if (plan_.live == LiveCounters::kSkStorageMap)
    attach_iter("dump_sk_storage", s->progs.dump_sk_storage, &live_iter_, bpf_map__fd(s->maps.sk_flows));

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
  for (const auto& name : plan_.bytes.programs) {
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
  if (live_iter_) {
    std::string data = read_iterator(live_iter_, "live socket");
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

#include "hook_plan.h"

#include <bpf/btf.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <sstream>

#include "feature_probe.h"

namespace egressd {

LoaderError::LoaderError(const std::string& step, int err)
    : UnusableHere(fmt::format("{}: {}", step, errno_text(err))), err_(err) {}

LoaderError::LoaderError(const std::string& message) : UnusableHere(message), err_(0) {}

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
      throw UnusableHere("kernel.bytes_hook sock_send_length: this kernel has no tp_btf/sock_send_length (Linux before 6.3)");
    h.programs.push_back("sock_send_length");
    if (k.sendpage_op) h.programs.push_back("inet_sendpage_exit");
  } else if (m == "fexit") {
    families("exit");
  } else if (m == "kprobe") {
    if (!k.kprobes)
      throw UnusableHere("kernel.bytes_hook kprobe: this kernel has no kprobes (built without CONFIG_KPROBE_EVENTS)");
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
    throw UsageError(fmt::format("kernel.bytes_hook {}: use auto, sock_send_length, fexit or kprobe", mode));
  }
  return h;
}

namespace {

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
      throw UsageError(fmt::format("kernel.path_walk {}: use auto, bpf_loop or bounded", opts.path_walk));
    if (opts.path_walk == "bpf_loop" && !k.bpf_loop)
      throw UnusableHere("kernel.path_walk bpf_loop: this kernel has no bpf_loop helper (Linux before 5.17)");
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
      throw UsageError(fmt::format("kernel.socket_state {}: use auto, sk_storage or hash", mode));
    if (mode == "sk_storage" && plan.bytes.needs_hash)
      throw UnusableHere("kernel.socket_state sk_storage: kprobe programs cannot use sk_storage (kernel.bytes_hook kprobe needs "
          "the hash store)");
    const bool storage_here = k.sk_storage_tracing && (k.task_file_iter || k.sk_storage_map_iter);
    if (mode == "sk_storage" && !storage_here)
      throw UnusableHere("kernel.socket_state sk_storage: this kernel's tracing programs cannot use sk_storage (Linux before "
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
      throw UsageError(
          fmt::format("EGRESSD_REFUSE_PROGRAMS: no BPF program named '{}' (egressd check lists them)", name));
    out[name] = "refused by EGRESSD_REFUSE_PROGRAMS (a test switch)";
  }
  return out;
}

}  // namespace egressd

// Which programs count bytes, per kernel: the choice made at start-up from
// what the kernel's BTF has (never from its version number).
#include <gtest/gtest.h>

#include <algorithm>

#include "hook_plan.h"

namespace egressd {
namespace {

using Programs = std::vector<std::string>;

// The message a choice throws with, or "" if it does not throw.
template <typename F>
std::string error_of(F&& choose) {
  try {
    choose();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(BytesHooks, TracepointWhereTheKernelHasIt) {  // 6.5 and later
  KernelFeatures k{.sock_send_length = true, .sendpage_op = false, .packet_sendmsg = true};
  auto h = choose_bytes_hooks(k, "auto");
  EXPECT_EQ(h.programs, Programs{"sock_send_length"});
  EXPECT_TRUE(h.notes.empty());
}

TEST(BytesHooks, TracepointPlusSendpageBefore6_5) {  // 6.3, 6.4: sendfile and splice skip the tracepoint
  KernelFeatures k{.sock_send_length = true, .sendpage_op = true, .packet_sendmsg = true};
  EXPECT_EQ(choose_bytes_hooks(k, "auto").programs, (Programs{"sock_send_length", "inet_sendpage_exit"}));
}

TEST(BytesHooks, FexitBefore6_3) {  // 5.10, 6.1
  KernelFeatures k{.sock_send_length = false, .sendpage_op = true, .packet_sendmsg = true};
  EXPECT_EQ(choose_bytes_hooks(k, "auto").programs,
            (Programs{"inet_sendmsg_exit", "inet6_sendmsg_exit", "packet_sendmsg_exit", "inet_sendpage_exit"}));
}

TEST(BytesHooks, FexitWithoutAfPacketSaysWhatIsNotCounted) {
  KernelFeatures k{.sock_send_length = false, .sendpage_op = true, .packet_sendmsg = false};
  auto h = choose_bytes_hooks(k, "auto");
  EXPECT_EQ(h.programs, (Programs{"inet_sendmsg_exit", "inet6_sendmsg_exit", "inet_sendpage_exit"}));
  ASSERT_EQ(h.notes.size(), 1u);
  EXPECT_EQ(h.notes[0], "AF_PACKET bytes are not counted: packet_sendmsg is not in the kernel's BTF");
}

TEST(BytesHooks, ForcedChoices) {
  KernelFeatures modern{.sock_send_length = true, .sendpage_op = false, .packet_sendmsg = true};
  EXPECT_EQ(choose_bytes_hooks(modern, "fexit").programs,
            (Programs{"inet_sendmsg_exit", "inet6_sendmsg_exit", "packet_sendmsg_exit"}));
  KernelFeatures old{.sock_send_length = false, .sendpage_op = true, .packet_sendmsg = true};
  EXPECT_EQ(error_of([&] { choose_bytes_hooks(old, "sock_send_length"); }),
            "kernel.bytes_hook sock_send_length: this kernel has no tp_btf/sock_send_length (Linux before 6.3)");
  EXPECT_THROW(choose_bytes_hooks(modern, "uprobe"), UsageError);  // exit 2: the configuration
  EXPECT_THROW(choose_bytes_hooks(old, "sock_send_length"), UnusableHere);  // exit 1: this kernel
}

TEST(BytesHooks, KprobesWhereTheyAreConfigured) {  // a kernel without BPF trampolines
  KernelFeatures k{.sock_send_length = false, .sendpage_op = true, .packet_sendmsg = true, .kprobes = true};
  auto h = choose_bytes_hooks(k, "kprobe");
  EXPECT_EQ(h.programs, (Programs{"inet_sendmsg_kprobe", "inet6_sendmsg_kprobe", "packet_sendmsg_kprobe",
                                  "inet_sendpage_kprobe", "inet_sendmsg_kretprobe", "inet6_sendmsg_kretprobe",
                                  "packet_sendmsg_kretprobe", "inet_sendpage_kretprobe"}));
  EXPECT_TRUE(h.needs_hash);
  ASSERT_EQ(h.notes.size(), 1u);  // what a kretprobe can miss
  EXPECT_NE(h.notes[0].find("not counted"), std::string::npos);
  // kprobe programs cannot use sk_storage: the hash store comes with them,
  // and they cannot make socket cookies.
  LoadOptions o;
  o.bytes_hook = "kprobe";
  auto plan = choose_plan(k, o, {});
  EXPECT_TRUE(plan.state.socket_hash);
  EXPECT_FALSE(plan.state.tracing_cookie);
  o.socket_state = "sk_storage";
  EXPECT_THROW(choose_plan(k, o, {}), std::runtime_error);
  k.kprobes = false;
  EXPECT_EQ(error_of([&] { choose_bytes_hooks(k, "kprobe"); }),
            "kernel.bytes_hook kprobe: this kernel has no kprobes (built without CONFIG_KPROBE_EVENTS)");
}

TEST(BytesHooks, ThisKernel) {
  // The probe reads the running kernel's BTF; on the development machine
  // (6.18) the tracepoint is there and ->sendpage is gone.
  // Elsewhere (an older kernel), the fallback is chosen instead.
  KernelFeatures k = probe_kernel_features();
  const auto programs = choose_bytes_hooks(k, "auto").programs;
  if (k.sock_send_length) {
    EXPECT_FALSE(k.sendpage_op);
    EXPECT_EQ(programs, Programs{"sock_send_length"});
  } else {
    EXPECT_EQ(programs.front(), "inet_sendmsg_exit");
  }
}

// The hook chosen for a job, and what was refused on the way.
const JobChoice& job(const LoadPlan& p, const std::string& name) {
  for (const auto& j : p.jobs)
    if (j.job == name) return j;
  throw std::runtime_error("no job " + name);
}

TEST(LoadPlan, AutoFallsBackToKprobesOnlyWhenFexitIsRefused) {
  KernelFeatures old{.sock_send_length = false, .packet_sendmsg = true, .kprobes = true};
  LoadOptions o;
  EXPECT_EQ(choose_plan(old, o, {}).bytes.mode, "fexit");
  Refusals fexit_refused{{"inet_sendmsg_exit", "attach_btf_id: trampolines not supported"}};
  auto p = choose_plan(old, o, fexit_refused);
  EXPECT_EQ(p.bytes.mode, "kprobe");
  EXPECT_TRUE(p.state.socket_hash);  // kprobes need the hash store
  EXPECT_EQ(job(p, "bytes").refused,
            (Programs{"fexit/inet_sendmsg,fexit/inet6_sendmsg,fexit/packet_sendmsg (inet_sendmsg_exit): "
                      "attach_btf_id: trampolines not supported"}));
  o.bytes_hook = "fexit";  // forced: the user asked for fexit, nothing else will do
  EXPECT_EQ(error_of([&] { choose_plan(old, o, fexit_refused); }),
            "load BPF programs: the kernel refused every way egressd has to do 'bytes':\n"
            "  fexit/inet_sendmsg,fexit/inet6_sendmsg,fexit/packet_sendmsg (inet_sendmsg_exit): attach_btf_id: "
            "trampolines not supported");
  KernelFeatures no_kprobes = old;
  no_kprobes.kprobes = false;
  EXPECT_THROW(choose_plan(no_kprobes, LoadOptions{}, fexit_refused), LoaderError);
}

TEST(LoadPlan, RefusedTracepointMovesBytesToFexit) {
  KernelFeatures modern{.packet_sendmsg = true};
  auto p = choose_plan(modern, LoadOptions{}, {{"sock_send_length", "R1 invalid mem access"}});
  EXPECT_EQ(p.bytes.mode, "fexit");
  EXPECT_EQ(job(p, "bytes").hook, "fexit/inet_sendmsg,fexit/inet6_sendmsg,fexit/packet_sendmsg");
  EXPECT_FALSE(p.state.socket_hash);
}

TEST(LoadPlan, SkStorageAndBpfLoopWhereTheKernelHasThem) {  // 6.3 and later
  auto p = choose_plan(KernelFeatures{.sock_send_length = true}, LoadOptions{}, {});
  EXPECT_FALSE(p.state.socket_hash);
  EXPECT_FALSE(p.state.bounded_walk);
  EXPECT_EQ(p.live, LiveCounters::kTaskFile);
  EXPECT_TRUE(p.state.notes.empty());
  for (const auto& j : p.jobs) EXPECT_TRUE(j.refused.empty()) << j.job;
  EXPECT_EQ(job(p, "live counters").hook, "iter/task_file");
  // Every program a job names is loaded, and no other.
  for (const char* prog : {"sched_process_exec", "dump_task", "sched_process_fork", "sched_process_exit",
                           "sock_send_length", "dump_sock_files", "connect4", "connect6", "inet_sock_set_state",
                           "sendmsg4", "sendmsg6", "skb_egress", "skb_ingress", "sock_create", "sock_release"})
    EXPECT_NE(std::find(p.programs.begin(), p.programs.end(), prog), p.programs.end()) << prog;
  EXPECT_EQ(p.programs.size(), 15u);
}

TEST(LoadPlan, LiveCountersWalkTheirChain) {  // this VM's build: both iterators refused
  Refusals refused{{"dump_sock_files", "R2 type=untrusted_ptr_ expected=ptr_, trusted_ptr_, rcu_ptr_"}};
  auto p = choose_plan(KernelFeatures{}, LoadOptions{}, refused);
  EXPECT_EQ(p.live, LiveCounters::kSkStorageMap);
  EXPECT_FALSE(p.state.socket_hash);
  EXPECT_EQ(job(p, "live counters").refused,
            (Programs{"iter/task_file (dump_sock_files): R2 type=untrusted_ptr_ expected=ptr_, trusted_ptr_, "
                      "rcu_ptr_"}));
  refused["dump_sk_storage"] = "BPF program load failed: Operation not permitted";
  p = choose_plan(KernelFeatures{}, LoadOptions{}, refused);
  EXPECT_EQ(p.live, LiveCounters::kHashMap);
  EXPECT_TRUE(p.state.socket_hash);
  EXPECT_TRUE(p.state.tracing_cookie);  // exact for sockets from before the agent
  EXPECT_EQ(job(p, "live counters").refused.size(), 2u);
  EXPECT_EQ(job(p, "socket state").hook, "hash map by socket cookie");
  EXPECT_EQ(job(p, "socket state").refused,
            (Programs{"sk_storage: no live-counter iterator left (see live counters)"}));
  EXPECT_EQ(std::count(p.programs.begin(), p.programs.end(), "dump_sk_storage"), 0);
  // Forced sk_storage cannot take the hash store: nothing is left.
  LoadOptions forced;
  forced.socket_state = "sk_storage";
  EXPECT_EQ(error_of([&] { choose_plan(KernelFeatures{}, forced, refused); }),
            "load BPF programs: the kernel refused every way egressd has to do 'live counters':\n"
            "  iter/task_file (dump_sock_files): R2 type=untrusted_ptr_ expected=ptr_, trusted_ptr_, rcu_ptr_\n"
            "  iter/bpf_sk_storage_map (dump_sk_storage): BPF program load failed: Operation not permitted\n"
            "  socket hash map: kernel.socket_state is sk_storage (the configuration)");
}

TEST(LoadPlan, SkStorageRefusedItselfMovesStateToTheHashStore) {
  Refusals refused{{kSkStorageRefusal, "connect4 was refused with it: R1 invalid mem access 'scalar'"}};
  auto p = choose_plan(KernelFeatures{}, LoadOptions{}, refused);
  EXPECT_TRUE(p.state.socket_hash);
  EXPECT_EQ(job(p, "socket state").refused,
            (Programs{"sk_storage: connect4 was refused with it: R1 invalid mem access 'scalar'"}));
  EXPECT_TRUE(job(p, "live counters").refused.empty());  // the iterators were never tried
}

TEST(LoadPlan, RefusedExecProgramMovesThePathWalkToTheBoundedLoop) {
  auto p = choose_plan(KernelFeatures{}, LoadOptions{}, {{"dump_task", "back-edge from insn 40 to 12"}});
  EXPECT_TRUE(p.state.bounded_walk);
  EXPECT_EQ(job(p, "executable path").hook, "bounded loop, 32 components");
  EXPECT_EQ(job(p, "executable path").refused, (Programs{"bpf_loop (dump_task): back-edge from insn 40 to 12"}));
  ASSERT_EQ(p.state.notes.size(), 1u);
  EXPECT_EQ(p.state.notes[0], "executable paths deeper than 32 components are cut (marked truncated)");
}

TEST(LoadPlan, ARequiredProgramRefusedStopsTheStartWithItsReason) {
  for (const auto& [prog, job_name] :
       std::vector<std::pair<std::string, std::string>>{{"connect4", "connects"},
                                                        {"sendmsg6", "unconnected destinations"},
                                                        {"skb_egress", "packets, names"},
                                                        {"sock_release", "flow end"},
                                                        {"sched_process_fork", "process identity"}}) {
    const std::string e = error_of([&] { choose_plan(KernelFeatures{}, LoadOptions{}, {{prog, "R3 !read_ok"}}); });
    EXPECT_EQ(e.substr(0, e.find('\n')),
              "load BPF programs: the kernel refused every way egressd has to do '" + job_name + "':");
    EXPECT_NE(e.find("(" + prog + "): R3 !read_ok"), std::string::npos) << e;
  }
  // Both walks refused: no way to name executables.
  EXPECT_THROW(choose_plan(KernelFeatures{}, LoadOptions{}, {{"dump_task", "x"}, {"dump_task_bounded", "y"}}),
               LoaderError);
}

TEST(LoadPlan, HashStoreAndBoundedWalkBefore5_11) {  // 5.10
  KernelFeatures k{.bpf_loop = false, .sk_storage_tracing = false, .sock_from_file = false,
                   .socket_ptr_cookie = false};
  auto p = choose_plan(k, LoadOptions{}, {});
  EXPECT_TRUE(p.state.socket_hash);
  EXPECT_FALSE(p.state.tracing_cookie);
  EXPECT_TRUE(p.state.bounded_walk);
  ASSERT_EQ(p.state.notes.size(), 2u);
  EXPECT_NE(p.state.notes[0].find("predates the agent"), std::string::npos);
  EXPECT_EQ(p.state.notes[1], "executable paths deeper than 32 components are cut (marked truncated)");
  // The BTF settled it: nothing was tried, so nothing is listed as refused.
  for (const auto& j : p.jobs) EXPECT_TRUE(j.refused.empty()) << j.job;
}

TEST(LoadPlan, BoundedWalkAloneBefore5_17) {  // 5.11 to 5.16
  auto p = choose_plan(KernelFeatures{.bpf_loop = false}, LoadOptions{}, {});
  EXPECT_FALSE(p.state.socket_hash);
  EXPECT_TRUE(p.state.bounded_walk);
}

TEST(LoadPlan, SkStorageMapIteratorWhereSockFromFileIsMissing) {
  auto p = choose_plan(KernelFeatures{.sock_from_file = false}, LoadOptions{}, {});
  EXPECT_FALSE(p.state.socket_hash);
  EXPECT_EQ(p.live, LiveCounters::kSkStorageMap);
  EXPECT_TRUE(choose_plan(KernelFeatures{.sk_storage_tracing = false}, LoadOptions{}, {}).state.socket_hash);
}

TEST(LoadPlan, ForcedChoices) {
  LoadOptions o;
  o.socket_state = "hash";
  o.path_walk = "bounded";
  auto p = choose_plan(KernelFeatures{}, o, {});
  EXPECT_TRUE(p.state.socket_hash);
  EXPECT_TRUE(p.state.bounded_walk);
  KernelFeatures old{.bpf_loop = false, .sk_storage_tracing = false, .sock_from_file = false};
  o = LoadOptions{};
  o.socket_state = "sk_storage";
  EXPECT_EQ(error_of([&] { choose_plan(old, o, {}); }),
            "kernel.socket_state sk_storage: this kernel's tracing programs cannot use sk_storage (Linux before "
            "5.11)");
  o = LoadOptions{};
  o.path_walk = "bpf_loop";
  EXPECT_EQ(error_of([&] { choose_plan(old, o, {}); }),
            "kernel.path_walk bpf_loop: this kernel has no bpf_loop helper (Linux before 5.17)");
  o = LoadOptions{};
  o.socket_state = "array";
  EXPECT_THROW(choose_plan(KernelFeatures{}, o, {}), UsageError);
  o = LoadOptions{};
  o.path_walk = "unrolled";
  EXPECT_THROW(choose_plan(KernelFeatures{}, o, {}), UsageError);
}

// libbpf 1.1's messages when the verifier refuses a program, as this VM's
// kernel printed them for dump_sock_files.
constexpr const char* kRefusedLog =
    "libbpf: prog 'dump_task': skipped loading\n"
    "libbpf: prog 'dump_sock_files': BPF program load failed: Permission denied\n"
    "libbpf: prog 'dump_sock_files': -- BEGIN PROG LOAD LOG --\n"
    "0: R1=ctx() R10=fp0\n"
    "; struct file *file = ctx->file; @ egressd.bpf.c:1216\n"
    "0: (79) r1 = *(u64 *)(r1 +24)         ; R1_w=trusted_ptr_or_null_file(id=1)\n"
    "13: (85) call bpf_sk_storage_get#107\n"
    "R2 type=untrusted_ptr_ expected=ptr_, trusted_ptr_, rcu_ptr_\n"
    "processed 13 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 0\n"
    "-- END PROG LOAD LOG --\n"
    "libbpf: prog 'dump_sock_files': failed to load: -13\n"
    "libbpf: failed to load object 'egressd_bpf'\n";

TEST(RefusedProgram, TheVerifiersLastLineThatSaysWhy) {
  auto r = refused_program(kRefusedLog);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->program, "dump_sock_files");
  EXPECT_EQ(r->reason, "R2 type=untrusted_ptr_ expected=ptr_, trusted_ptr_, rcu_ptr_");
  EXPECT_EQ(r->helper, "bpf_sk_storage_get");
}

TEST(RefusedProgram, RefusedBeforeTheVerifierRan) {
  auto r = refused_program(
      "libbpf: prog 'dump_sk_storage': BPF program load failed: Operation not permitted\n"
      "libbpf: permission error while running as root; try raising 'ulimit -l'? current value: 8.0 MiB\n"
      "libbpf: prog 'dump_sk_storage': -- BEGIN PROG LOAD LOG --\n"
      "processed 0 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n"
      "-- END PROG LOAD LOG --\n"
      "libbpf: prog 'dump_sk_storage': failed to load: -1\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->program, "dump_sk_storage");
  EXPECT_EQ(r->reason, "BPF program load failed: Operation not permitted");
  // A hook missing from the kernel: no verifier log at all.
  r = refused_program(
      "libbpf: prog 'inet_sendmsg_exit': failed to find kernel BTF type ID of 'inet_sendmsg': -3\n"
      "libbpf: prog 'inet_sendmsg_exit': failed to prepare load attributes: -3\n"
      "libbpf: prog 'inet_sendmsg_exit': failed to load: -3\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->program, "inet_sendmsg_exit");
  EXPECT_EQ(r->reason, "failed to find kernel BTF type ID of 'inet_sendmsg': -3");
  // Debian's 5.10: the helper is in the BTF but not for tracing programs.
  r = refused_program(
      "libbpf: prog 'inet_sendmsg_exit': BPF program load failed: Invalid argument\n"
      "libbpf: prog 'inet_sendmsg_exit': -- BEGIN PROG LOAD LOG --\n"
      "; return tracing_cookie ? bpf_get_socket_cookie(sk) : 0;\n"
      "72: (bf) r1 = r6\n"
      "73: (85) call bpf_get_socket_cookie#46\n"
      "unknown func bpf_get_socket_cookie#46\n"
      "processed 34 insns (limit 1000000) max_states_per_insn 0 total_states 3 peak_states 3 mark_read 1\n"
      "-- END PROG LOAD LOG --\n"
      "libbpf: prog 'inet_sendmsg_exit': failed to load: -22\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reason, "unknown func bpf_get_socket_cookie#46");
  EXPECT_EQ(r->helper, "bpf_get_socket_cookie");
}

TEST(LoadPlan, RefusedTracingCookiesLeaveTheCookiesToTheCgroupHooks) {
  KernelFeatures k{.bpf_loop = false, .sk_storage_tracing = false, .sock_from_file = false};
  EXPECT_TRUE(choose_plan(k, LoadOptions{}, {}).state.tracing_cookie);
  auto p = choose_plan(k, LoadOptions{},
                       {{kTracingCookieRefusal, "inet_sendmsg_exit was refused with it: unknown func"}});
  EXPECT_FALSE(p.state.tracing_cookie);
  EXPECT_EQ(p.bytes.mode, "fexit");  // bytes keep their hook
  EXPECT_EQ(job(p, "socket state").refused,
            (Programs{"cookies made in tracing programs: inet_sendmsg_exit was refused with it: unknown func"}));
  EXPECT_NE(p.state.notes[0].find("predates the agent"), std::string::npos);
}

TEST(RefusedProgram, NothingWhenNoProgramFailed) {
  EXPECT_FALSE(refused_program("libbpf: map 'events': failed to create: Operation not permitted(-1)\n"
                               "libbpf: failed to load object 'egressd_bpf'\n"));
  EXPECT_FALSE(refused_program(""));
}

TEST(RefusalsFromEnv, NamesProgramsOrSaysWhichIsUnknown) {
  const Programs known{"dump_sock_files", "sock_send_length"};
  auto r = refusals_from_env("dump_sock_files,sk_storage", known);
  EXPECT_EQ(r.size(), 2u);
  EXPECT_EQ(r.at("dump_sock_files"), "refused by EGRESSD_REFUSE_PROGRAMS (a test switch)");
  EXPECT_TRUE(refusals_from_env(nullptr, known).empty());
  EXPECT_EQ(error_of([&] { refusals_from_env("dump_sock_file", known); }),
            "EGRESSD_REFUSE_PROGRAMS: no BPF program named 'dump_sock_file' (egressd check lists them)");
}

TEST(StateChoice, ThisKernel) {
  // 6.18 here: every feature the newest path needs is in its BTF.
  KernelFeatures k = probe_kernel_features();
  if (k.sock_send_length) {
    EXPECT_TRUE(k.bpf_loop);
    EXPECT_TRUE(k.sk_storage_tracing);
    EXPECT_TRUE(k.sock_from_file);
  }
}

}  // namespace
}  // namespace egressd

// The hook plan: what this kernel offers (from BTF), and which program does
// each job, best first, given what the verifier and the kernel refused.
// probe_kernel_features reads this kernel's BTF once; choose_plan is pure
// logic over what it found, so every kernel's plan is unit-tested here.
#pragma once

#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "errors.h"
#include "events.h"
#include "pinned_state.h"

namespace egressd {

class LoaderError : public UnusableHere {
 public:
  LoaderError(const std::string& step, int err);
  // A kernel that refused what egressd cannot run without (err() is 0).
  explicit LoaderError(const std::string& message);
  int err() const { return err_; }

 private:
  int err_;
};

// What this kernel's BTF says it offers egressd, read once at load.
struct KernelFeatures {
  bool sock_send_length = false;    // tracepoint in BTF (6.3+)
  bool sendpage_op = false;         // struct proto_ops has ->sendpage (before 6.5)
  bool packet_sendmsg = false;      // AF_PACKET's sendmsg is in BTF (built in or loaded)
  bool bpf_loop = true;             // helper bpf_loop (5.17+)
  bool sk_storage_tracing = true;   // tracing programs may use sk_storage (5.11+)
  bool sock_from_file = true;       // helper bpf_sock_from_file (5.11+)
  bool kprobes = false;             // kprobes can be attached (perf PMU or tracefs)
  bool task_file_iter = true;       // iter/task_file (5.8+)
  bool sk_storage_map_iter = true;  // iter/bpf_sk_storage_map (5.9+)
  bool socket_ptr_cookie = true;    // bpf_get_socket_cookie on a struct sock in tracing programs (5.12+)
};
KernelFeatures probe_kernel_features();

// Which programs count bytes on this kernel. sock_send_length (6.3+) sees
// every send path; before it, fexit on the sendmsg of each family egressd
// counts. Before 6.5 sendfile and splice use ->sendpage, which neither sees,
// so fexit on inet_sendpage is added there.
//
// Where neither loads (no BPF trampolines) but kprobes are configured, a
// kprobe and a kretprobe on each of those functions; kprobe programs cannot
// use sk_storage, so they need the hash store (StateChoice).
struct BytesHooks {
  std::string mode;                   // sock_send_length, fexit or kprobe
  std::vector<std::string> programs;  // BPF program names to load and attach
  std::vector<std::string> notes;     // what is less exact on this kernel
  bool needs_hash = false;            // programs that cannot use sk_storage
};
// mode: "auto", "sock_send_length", "fexit" or "kprobe". Throws LoaderError-like
// std::runtime_error when the mode cannot work on this kernel.
BytesHooks choose_bytes_hooks(const KernelFeatures& k, const std::string& mode);

// Where per-socket state lives and how the executable path is walked.
// sk_storage needs tracing programs that may use it (5.11+); else a hash map
// keyed by socket cookie, which the agent reads itself. The path walk uses
// bpf_loop (5.17+), else a loop the verifier follows, PATH_DEPTH_BOUNDED
// components deep.
struct StateChoice {
  bool socket_hash = false;
  bool tracing_cookie = false;  // hash store: tracing programs make cookies (bpf/lib/state_store.h)
  bool bounded_walk = false;
  std::vector<std::string> notes;
};

// How the agent reads the counters of sockets still open: iter/task_file
// (every open file of every task), iter/bpf_sk_storage_map (every socket
// with state), or the hash store read with map calls.
enum class LiveCounters { kTaskFile, kSkStorageMap, kHashMap };

// Programs that count as refused, and why: by the verifier at load, by the
// kernel at attach, or by EGRESSD_REFUSE_PROGRAMS (a test switch). The key
// "sk_storage" stands for the per-socket store itself: a program that the
// verifier took only once state moved to the hash store.
using Refusals = std::map<std::string, std::string>;
inline constexpr const char* kSkStorageRefusal = "sk_storage";
// Likewise for the tracing programs making socket cookies (the hash store's
// tracing_cookie switch): a kernel whose BTF has the helper but whose
// verifier does not give it to tracing programs (seen on Debian's 5.10).
inline constexpr const char* kTracingCookieRefusal = "tracing_cookie";

// One job egressd does in the kernel: the hook chosen for it, and each
// better implementation that was refused, as "hook: reason".
struct JobChoice {
  std::string job;
  std::string hook;
  std::vector<std::string> refused;
};

// Every choice made for this kernel: one per job, each the first of its
// implementations (best first) that the kernel offers and nothing refused.
struct LoadPlan {
  BytesHooks bytes;
  StateChoice state;
  LiveCounters live = LiveCounters::kTaskFile;
  std::vector<JobChoice> jobs;
  std::vector<std::string> programs;  // every BPF program to load
  std::vector<std::string> notes() const;  // what is less exact than on the newest kernel
};

struct LoadOptions {
  uint32_t ring_buffer_bytes = 4u << 20;  // mapped twice by libbpf: 8 MB of RSS
  uint32_t process_table_entries = 65536;
  uint32_t flow_table_entries = 65536;
  uint64_t ring_wakeup_bytes = 256 * 1024;
  std::string cgroup_path;  // cgroup v2 directory the socket hooks attach to
  // egressd trace: emit connection events only for followed processes
  // (bpf/lib/config.h trace_mode, bpf/lib/procs.h traced()); with decide, every exec waits for
  // set_trace_state, else following is inherited from marked processes only.
  bool trace_mode = false;
  bool trace_decide = false;
  std::string bytes_hook = "auto";    // kernel.bytes_hook: auto, sock_send_length, fexit, kprobe
  std::string socket_state = "auto";  // kernel.socket_state: auto, sk_storage, hash
  std::string path_walk = "auto";     // kernel.path_walk: auto, bpf_loop, bounded
  // kernel.refuse_programs, a test switch: program names (commas or spaces)
  // that count as refused, as EGRESSD_REFUSE_PROGRAMS does.
  std::string refuse_programs;
  // Where the kernel state is pinned to outlive the agent (pinned_state.h);
  // an empty instance pins nothing.
  PinOptions pin;
};

// Throws LoaderError when a job the agent cannot run without has no
// implementation left (one line per refused program), and
// std::runtime_error when a forced kernel.* choice cannot work here.
LoadPlan choose_plan(const KernelFeatures& k, const LoadOptions& opts, const Refusals& refused);

// The program the verifier refused, its reason (the verifier's last line
// that says what is wrong), and the helper of the last call the verifier
// reached (where the reason is about a call), from libbpf's messages of a
// failed load. Nothing when no program's load failed (a map, BTF or
// privileges instead).
struct Refusal {
  std::string program;
  std::string reason;
  std::string helper;  // "bpf_get_socket_cookie", or empty
};
std::optional<Refusal> refused_program(const std::string& libbpf_log);

// EGRESSD_REFUSE_PROGRAMS=a,b (or kernel.refuse_programs): programs that
// count as refused, so tests walk every fallback on any kernel. Names are
// separated by commas or spaces. Throws std::runtime_error on a name that is
// not one of egressd's programs.
Refusals refusals_from_env(const char* value, const std::vector<std::string>& known);

}  // namespace egressd

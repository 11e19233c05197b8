// Owns the BPF programs and maps: open, size, load, attach, and the reads
// the agent makes of them. Every failure names the step and the errno.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "event_decoder.h"
#include "events.h"

struct egressd_bpf;
struct bpf_link;
struct bpf_program;

namespace egressd {

class LoaderError : public std::runtime_error {
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
  bool tracing_cookie = false;  // hash store: tracing programs make cookies (bpf/egressd.bpf.c)
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
  // (bpf/egressd.bpf.c, trace_mode); with decide, every exec waits for
  // set_trace_state, else following is inherited from marked processes only.
  bool trace_mode = false;
  bool trace_decide = false;
  std::string bytes_hook = "auto";    // kernel.bytes_hook: auto, sock_send_length, fexit, kprobe
  std::string socket_state = "auto";  // kernel.socket_state: auto, sk_storage, hash
  std::string path_walk = "auto";     // kernel.path_walk: auto, bpf_loop, bounded
  // kernel.refuse_programs, a test switch: program names (commas or spaces)
  // that count as refused, as EGRESSD_REFUSE_PROGRAMS does.
  std::string refuse_programs;
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

class BpfPrograms {
 public:
  // Opens and loads (verifies) the programs of the best plan the kernel
  // takes: a program the verifier refuses moves its job to the next
  // implementation and the load is tried again (choose_plan). Throws
  // LoaderError when what is left cannot run.
  static std::unique_ptr<BpfPrograms> load(const LoadOptions& opts);
  ~BpfPrograms();
  BpfPrograms(const BpfPrograms&) = delete;
  BpfPrograms& operator=(const BpfPrograms&) = delete;

  // Attaches process hooks first, then the iterators, then socket hooks. A
  // program the kernel will not attach counts as refused: its job moves to
  // the next implementation (the programs are loaded again). Throws
  // LoaderError naming the program when nothing can replace it.
  void attach();
  // "program -> hook" for every attached program, for check and logs.
  const std::vector<std::string>& attached() const { return attached_; }
  // The choices made at load, per job, with what was refused.
  const LoadPlan& plan() const { return plan_; }
  // What is less exact on this kernel than on the newest (bytes, state).
  std::vector<std::string> notes() const { return plan_.notes(); }
  // (job, hook) for every job, for egressd check and egressd_kernel_hook_info.
  std::vector<std::pair<std::string, std::string>> hook_plan() const;
  // How long loading took, and how many loads the verifier saw (1 when it
  // took the first plan).
  uint64_t load_ns() const { return load_ns_; }
  unsigned load_attempts() const { return load_attempts_; }
  // "program -> section" for every program in the object, attached or not.
  std::vector<std::string> programs() const;

  int ring_buffer_fd() const;
  // Processes running now, oldest first (parents before their children).
  std::vector<ExecRecord> running_processes();
  std::vector<sock_flow> live_sockets();
  std::vector<std::pair<flow_key, flow_counters>> extra_flows();
  void delete_extra_flows(const std::vector<flow_key>& keys);
  // Tags a process in the kernel's process map, so the children it forks
  // from now on carry the tool (unless follow is false). A process that has
  // exited, or whose pid was reused, is left alone.
  void set_process_tool(uint32_t tgid, uint64_t start_ns, uint32_t tool_id, bool follow);
  // trace_mode: the tracer's decision about a process as of its exec number
  // gen (exec_event.exec_gen); dropped when the process exec'd again since,
  // exited, or its pid was reused. Returns whether it was applied.
  bool set_trace_state(uint32_t tgid, uint64_t start_ns, uint32_t gen, bool traced);
  // trace_mode: follows a running process (and what it starts from now on)
  // whatever it execs. Returns its start time, or nothing if it is not in
  // the process map.
  std::optional<uint64_t> follow_process(uint32_t tgid);
  std::array<uint64_t, KSTAT_MAX> kernel_stats() const;
  // Fill of the maps with a fixed size: entries / max_entries.
  std::pair<uint64_t, uint64_t> process_map_fill() const;
  uint64_t flow_map_capacity() const;
  // Whether the map operations the agent keeps doing work with the caller's
  // current privileges (kernels before 6.4 refuse bpf() without CAP_BPF
  // while unprivileged BPF is disabled).
  bool map_access_works() const;

  struct ProgramStats {
    std::string name;
    uint64_t runs = 0;
    uint64_t run_ns = 0;
  };
  // Per-program run count and time, counted by the kernel only while
  // kernel.bpf_stats_enabled is 1 (zero otherwise).
  std::vector<ProgramStats> program_stats() const;
  uint64_t ring_buffer_size() const;

 private:
  BpfPrograms() = default;
  static std::unique_ptr<BpfPrograms> load_refusing(const LoadOptions& opts, const KernelFeatures& kernel,
                                                    Refusals refused);
  static std::unique_ptr<BpfPrograms> load_plan(const LoadOptions& opts, const LoadPlan& plan, int& err,
                                                std::string& log);
  void attach_all();
  void detach_all();
  void attach_tracing(const char* name, struct bpf_program* prog);
  void attach_cgroup(const char* name, struct bpf_program* prog, int cgroup_fd);
  void attach_iter(const char* name, struct bpf_program* prog, struct bpf_link** out, int map_fd = -1);
  std::string read_iterator(struct bpf_link* link, const char* what);

  egressd_bpf* skel_ = nullptr;
  std::vector<bpf_link*> links_;
  bpf_link* task_iter_ = nullptr;
  bpf_link* live_iter_ = nullptr;  // null when live counters are read from the hash map
  std::vector<std::string> attached_;
  LoadOptions opts_;
  KernelFeatures kernel_;
  Refusals refused_;
  LoadPlan plan_;
  uint64_t load_ns_ = 0;
  unsigned load_attempts_ = 0;
};

}  // namespace egressd

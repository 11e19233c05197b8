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
#include "hook_plan.h"

struct egressd_bpf;
struct bpf_link;
struct bpf_program;

namespace egressd {

// libbpf's messages go to egressd's log: its warnings as one line each, and
// with -v (set_verbose) everything it says, verifier logs included.
void route_libbpf_messages();

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
  // How the kernel state began (pinned_state.h), and why when it was
  // discarded or could not be pinned.
  PinOutcome pin_outcome() const { return pin_outcome_; }
  const std::string& pin_reason() const { return pin_reason_; }
  // Discarded: the open flows the earlier state held (PinnedState::flows_held),
  // whose counts since the earlier agent's last read are lost.
  uint64_t discarded_flows() const { return discarded_flows_; }
  // The instance's pin directory; "" when nothing is pinned.
  const std::string& pin_dir() const;
  // Removes this instance's pins: the programs are detached when this
  // agent's descriptors close, and the next agent starts anew.
  void unpin();
  // Whether this agent reads the pinned state of an earlier one: its
  // counters and waiting events began before this agent did.
  // The state of the agent before goes on: adopted, or handed over by
  // another build.
  bool adopted() const { return pin_outcome_ == PinOutcome::kAdopted || pin_outcome_ == PinOutcome::kHandedOver; }
  // The pinned store of what the metrics counted (pinned_state.h), when
  // the state is pinned; null otherwise.
  PinnedState* store() const { return pins_ && pins_->has_store() ? pins_.get() : nullptr; }

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

 private:
  BpfPrograms() = default;
  static std::unique_ptr<BpfPrograms> load_refusing(const LoadOptions& opts, const KernelFeatures& kernel,
                                                    Refusals refused, std::shared_ptr<PinnedState> pins,
                                                    PinOutcome outcome, const std::string& reason);
  static std::unique_ptr<BpfPrograms> load_plan(const LoadOptions& opts, const LoadPlan& plan,
                                                std::shared_ptr<PinnedState> pins, int& err, std::string& log);
  void attach_all();
  void detach_all();
  // The tracing and cgroup programs attach_all attaches, in its order.
  std::vector<std::string> hooked_programs() const;
  uint64_t identity() const;
  void pin_all();
  void hand_over();
  std::string pin_links_and_meta(bool make_store);
  void attach_tracing(const char* name, struct bpf_program* prog);
  void attach_cgroup(const char* name, struct bpf_program* prog, int cgroup_fd);
  void attach_iter(const char* name, struct bpf_program* prog, struct bpf_link** out, int map_fd = -1);
  std::string read_iterator(struct bpf_link* link, const char* what);

  egressd_bpf* skel_ = nullptr;
  std::vector<bpf_link*> links_;
  std::vector<std::string> link_names_;  // the program of each of links_
  bpf_link* task_iter_ = nullptr;
  bpf_link* live_iter_ = nullptr;  // null when live counters are read from the hash map
  std::vector<std::string> attached_;
  LoadOptions opts_;
  KernelFeatures kernel_;
  Refusals refused_;
  LoadPlan plan_;
  uint64_t load_ns_ = 0;
  unsigned load_attempts_ = 0;
  std::shared_ptr<PinnedState> pins_;
  PinOutcome pin_outcome_ = PinOutcome::kOff;
  std::string pin_reason_;
  uint64_t discarded_flows_ = 0;
  uint32_t taken_from_generation_ = 0;  // kHandedOver: the generation of the programs replaced
};

}  // namespace egressd

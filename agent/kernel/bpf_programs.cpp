#include "bpf_programs.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
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
#include "log.h"
#include "map_entries.h"

namespace egressd {
namespace {

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

namespace {

// Every program in the object (bpf/progs/), for EGRESSD_REFUSE_PROGRAMS.
std::vector<std::string> object_programs(const egressd_bpf* s) {
  std::vector<std::string> out;
  bpf_program* prog;
  bpf_object__for_each_program(prog, s->obj) out.emplace_back(bpf_program__name(prog));
  return out;
}

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
  // What a refusal says is summarized by the loader (egressd check lists it);
  // -v shows it all.
  return g_previous_print && verbose() ? g_previous_print(level, format, args) : 0;
}

// Outside a load: with -v everything libbpf says, as it says it (verifier
// logs span lines); else its warnings, one line each.
int print_libbpf(enum libbpf_print_level level, const char* format, va_list args) {
  if (verbose()) return vfprintf(stderr, format, args);
  if (level != LIBBPF_WARN) return 0;
  char text[1024];
  int n = vsnprintf(text, sizeof(text), format, args);
  if (n <= 0) return n;
  std::string_view line(text, std::min(static_cast<size_t>(n), sizeof(text) - 1));
  while (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  log_line(Severity::kWarning, line);
  return n;
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

void route_libbpf_messages() { libbpf_set_print(print_libbpf); }

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
    log_info("counted as refused (EGRESSD_REFUSE_PROGRAMS, a test switch):{}", names);
  }
  std::shared_ptr<PinnedState> pins;
  PinOutcome outcome = PinOutcome::kOff;
  std::string reason;
  if (!opts.pin.instance.empty()) {
    pins = PinnedState::open(opts.pin, &reason);
    if (!pins) {
      outcome = PinOutcome::kUnavailable;
      log_warning("the kernel state will not outlive this agent: {}", reason);
    } else if (opts.pin.fresh) {
      outcome = PinOutcome::kDiscarded;
      reason = "--fresh";
    }
  }
  return load_refusing(opts, kernel, std::move(refused), std::move(pins), outcome, reason);
}

namespace {

// The maps whose contents outlive the agent when pinned: what counts and
// what waits to be read. Scratch maps and the programs' own maps are not.
constexpr const char* kPersistentMaps[] = {"events", "procs", "sk_flows", "sk_flows_hash",
                                           "flow_extra", "pending", "kstats", "generation"};

// The pinned generation word (lib/generation.h); 0 when it cannot be read.
uint32_t read_generation(int fd) {
  uint32_t zero = 0, g = 0;
  if (fd < 0 || bpf_map_lookup_elem(fd, &zero, &g) != 0) return 0;
  return g;
}

}  // namespace

std::unique_ptr<BpfPrograms> BpfPrograms::load_refusing(const LoadOptions& opts, const KernelFeatures& kernel,
                                                        Refusals refused, std::shared_ptr<PinnedState> pins,
                                                        PinOutcome outcome, const std::string& reason) {
  const auto start = std::chrono::steady_clock::now();
  // Each refusal takes one implementation away: this ends.
  for (unsigned attempt = 1;; ++attempt) {
    LoadPlan plan = choose_plan(kernel, opts, refused);
    int err = 0;
    std::string log;
    auto p = load_plan(opts, plan, pins, err, log);
    if (p) {
      if (!p->adopted() && outcome != PinOutcome::kOff) {
        p->pin_outcome_ = outcome;  // unavailable, or discarded by --fresh
        p->pin_reason_ = reason;
      }
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

std::unique_ptr<BpfPrograms> BpfPrograms::load_plan(const LoadOptions& opts, const LoadPlan& plan,
                                                    std::shared_ptr<PinnedState> pins, int& err, std::string& log) {
  std::unique_ptr<BpfPrograms> p(new BpfPrograms());
  p->opts_ = opts;
  p->plan_ = plan;
  p->pins_ = std::move(pins);
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
  s->rodata->my_generation = 1;
  if (p->pins_) {
    // The very programs pinned: this agent reads their maps, and their
    // links stay as they are. Programs of another build with the same
    // layout: this agent's take over the same maps (attach_all). Anything
    // else is replaced after the attach.
    std::string why;
    bool other_programs = false;
    const bool same = p->pins_->adoptable(p->identity(), p->hooked_programs(), &why, &other_programs);
    if (same || other_programs) {
      p->pin_outcome_ = same ? PinOutcome::kAdopted : PinOutcome::kHandedOver;
      if (other_programs) {
        p->pin_reason_ = why;
        UniqueFd g(p->pins_->open_map("generation"));
        p->taken_from_generation_ = read_generation(g.get());
        s->rodata->my_generation = p->taken_from_generation_ + 1;
      }
      for (const char* name : kPersistentMaps) {
        UniqueFd fd(p->pins_->open_map(name));
        bpf_map* map = bpf_object__find_map_by_name(s->obj, name);
        int e = fd && map ? bpf_map__reuse_fd(map, fd.get()) : -ENOENT;
        if (e) {
          p->pin_outcome_ = PinOutcome::kDiscarded;
          p->pin_reason_ = fmt::format("pinned map {} cannot be reused: {}", name, errno_text(-e));
          break;
        }
      }
      if (p->pin_outcome_ == PinOutcome::kDiscarded) {
        // Some maps reused, not all: start again with none.
        egressd_bpf__destroy(p->skel_);
        p->skel_ = nullptr;
        auto fresh = load_plan(opts, plan, nullptr, err, log);
        if (fresh) {
          fresh->pins_ = p->pins_;
          fresh->pin_outcome_ = p->pin_outcome_;
          fresh->pin_reason_ = p->pin_reason_;
        }
        return fresh;
      }
    } else {
      p->pin_outcome_ = why.empty() ? PinOutcome::kNew : PinOutcome::kDiscarded;
      p->pin_reason_ = why;
    }
  }
  int e;
  {
    CaptureLibbpf capture(log);
    e = egressd_bpf__load(s);
  }
  if (e) {
    err = -e;
    return nullptr;
  }
  if (p->pin_outcome_ != PinOutcome::kAdopted && p->pin_outcome_ != PinOutcome::kHandedOver) {
    // Maps of its own: its programs count from their attach on.
    uint32_t zero = 0, one = 1;
    if (bpf_map_update_elem(bpf_map__fd(s->maps.generation), &zero, &one, BPF_ANY) != 0)
      throw LoaderError("set the generation word", errno);
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
  if (!link) throw AttachRefused{name, fmt::format("attach {}: {}", bpf_program__section_name(prog), errno_text(errno))};
  links_.push_back(link);
  link_names_.push_back(name);
  attached_.push_back(fmt::format("{} -> {}", name, bpf_program__section_name(prog)));
}

void BpfPrograms::attach_cgroup(const char* name, bpf_program* prog, int cgroup_fd) {
  bpf_link* link = bpf_program__attach_cgroup(prog, cgroup_fd);
  if (!link)
    throw AttachRefused{name, fmt::format("attach to cgroup {}: {}", opts_.cgroup_path, errno_text(errno))};
  links_.push_back(link);
  link_names_.push_back(name);
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
  if (!link) throw AttachRefused{name, fmt::format("attach {}: {}", bpf_program__section_name(prog), errno_text(errno))};
  links_.push_back(link);
  link_names_.push_back("");  // an iterator: never pinned
  *out = link;
  attached_.push_back(fmt::format("{} -> {}", name, bpf_program__section_name(prog)));
}

void BpfPrograms::detach_all() {
  for (auto it = links_.rbegin(); it != links_.rend(); ++it) bpf_link__destroy(*it);
  links_.clear();
  link_names_.clear();
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
      std::unique_ptr<BpfPrograms> next =
          load_refusing(opts_, kernel_, std::move(refused), pins_, pin_outcome_, pin_reason_);
      std::swap(skel_, next->skel_);
      std::swap(plan_, next->plan_);
      std::swap(refused_, next->refused_);
      std::swap(pin_outcome_, next->pin_outcome_);
      std::swap(pin_reason_, next->pin_reason_);
      load_attempts_ += next->load_attempts_;
      load_ns_ += next->load_ns_;
    }
  }
}

std::vector<std::string> BpfPrograms::hooked_programs() const {
  const bool bounded = plan_.state.bounded_walk;
  std::vector<std::string> out = {bounded ? "sched_process_exec_bounded" : "sched_process_exec",
                                  "sched_process_fork", "sched_process_exit", "sock_create", "connect4",
                                  "connect6", "sendmsg4", "sendmsg6", "sock_release", "skb_egress",
                                  "skb_ingress", "inet_sock_set_state"};
  out.insert(out.end(), plan_.bytes.programs.begin(), plan_.bytes.programs.end());
  return out;
}

uint64_t BpfPrograms::identity() const {
  size_t size = 0;
  const void* elf = egressd_bpf__elf_bytes(&size);
  std::string settings = fmt::format(
      "{}|live={}|hash={}|cookie={}|bounded={}|ring={}|procs={}|flows={}|wakeup={}|trace={}{}|cgroup={}",
      fmt::join(plan_.programs, ","), static_cast<int>(plan_.live), plan_.state.socket_hash,
      plan_.state.tracing_cookie, plan_.state.bounded_walk, opts_.ring_buffer_bytes, opts_.process_table_entries,
      opts_.flow_table_entries, opts_.ring_wakeup_bytes, opts_.trace_mode, opts_.trace_decide, opts_.cgroup_path);
  for (const auto& name : hooked_programs()) settings += "|" + name;
  // A test switch: this build as if it were another one (a hand-over).
  if (const char* as = getenv("EGRESSD_TEST_PIN_IDENTITY"); as && *as) settings += std::string("|test=") + as;
  return fnv1a(settings.data(), settings.size(), fnv1a(elf, size));
}

void BpfPrograms::unpin() {
  if (!pins_ || pin_outcome_ == PinOutcome::kUnavailable) return;
  pins_->clear();
  log_info("interrupted: unpinned {}; the programs detach as egressd exits", pins_->dir());
}

const std::string& BpfPrograms::pin_dir() const {
  static const std::string none;
  return pins_ ? pins_->dir() : none;
}

// Replaces what was pinned for the instance with this agent's maps and
// links. A pin that fails leaves nothing pinned: the state is then this
// agent's alone, as without pinning.
// This agent's links, its store (made, or the one pinned), and the meta
// record last; what failed, or "".
std::string BpfPrograms::pin_links_and_meta(bool make_store) {
  std::string failed;
  for (size_t i = 0; failed.empty() && i < links_.size(); ++i) {
    if (link_names_[i].empty()) continue;
    if (int e = bpf_link__pin(links_[i], pins_->link_path(link_names_[i]).c_str()))
      failed = fmt::format("pin link {}: {}", link_names_[i], errno_text(-e));
  }
  if (failed.empty()) pins_->open_store(make_store, &failed);
  if (failed.empty()) {
    try {
      pins_->write_meta(identity());
    } catch (const LoaderError& e) {
      failed = e.what();
    }
  }
  return failed;
}

void BpfPrograms::pin_all() {
  if (pin_outcome_ == PinOutcome::kDiscarded) discarded_flows_ = pins_->flows_held();
  pins_->clear();
  std::string failed;
  for (const char* name : kPersistentMaps) {
    bpf_map* map = bpf_object__find_map_by_name(skel_->obj, name);
    if (int e = map ? bpf_map__pin(map, pins_->map_path(name).c_str()) : -ENOENT) {
      failed = fmt::format("pin map {}: {}", name, errno_text(-e));
      break;
    }
  }
  if (failed.empty()) failed = pin_links_and_meta(true);
  if (failed.empty()) return;
  log_warning("the kernel state will not outlive this agent: {}", failed);
  for (size_t i = 0; i < links_.size(); ++i)
    if (!link_names_[i].empty()) bpf_link__unpin(links_[i]);
  for (const char* name : kPersistentMaps)
    if (bpf_map* map = bpf_object__find_map_by_name(skel_->obj, name)) bpf_map__unpin(map, nullptr);
  pins_->clear();
  pin_outcome_ = PinOutcome::kUnavailable;
  pin_reason_ = failed;
}

void BpfPrograms::attach_all() {
  egressd_bpf* s = skel_;
  const bool bounded = plan_.state.bounded_walk;
  if (pin_outcome_ == PinOutcome::kAdopted) {
    // The pinned links keep the earlier agent's programs, the same as
    // these, attached: nothing stopped counting. Only the iterators are
    // this agent's.
    for (const auto& name : hooked_programs()) {
      bpf_program* prog = bpf_object__find_program_by_name(s->obj, name.c_str());
      attached_.push_back(fmt::format("{} -> {} (pinned, kept from the previous agent)", name,
                                      prog ? bpf_program__section_name(prog) : "?"));
    }
    attach_iter(bounded ? "dump_task_bounded" : "dump_task",
                bounded ? s->progs.dump_task_bounded : s->progs.dump_task, &task_iter_);
    if (plan_.live == LiveCounters::kTaskFile)
      attach_iter("dump_sock_files", s->progs.dump_sock_files, &live_iter_);
    else if (plan_.live == LiveCounters::kSkStorageMap)
      attach_iter("dump_sk_storage", s->progs.dump_sk_storage, &live_iter_, bpf_map__fd(s->maps.sk_flows));
    if (std::string why; !pins_->open_store(false, &why))
      log_warning("the metrics of the agent before this one are not carried over: {}", why);
    return;
  }
  // Process identity first: every process that starts from here on is seen
  // by an event, and the task iterator below finds the ones already running.
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
  if (pin_outcome_ == PinOutcome::kHandedOver) {
    hand_over();
    return;
  }
  if (pins_ && pin_outcome_ != PinOutcome::kUnavailable) pin_all();
}

// Another build's programs are attached beside these, on the same maps, and
// count until the generation word says these do; then their links are
// unpinned (no one else holds them: they detach) and these are pinned in
// their place. A send whose two programs run either side of the switch is
// counted by both or by neither: the word changes in one store, so that is
// at most one event in flight per hook at that instant.
void BpfPrograms::hand_over() {
  uint32_t zero = 0, mine = taken_from_generation_ + 1;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.generation), &zero, &mine, BPF_ANY) != 0)
    throw LoaderError("switch the generation word", errno);
  pins_->clear_links();
  const std::string failed = pin_links_and_meta(false);
  if (failed.empty()) return;
  // The maps are pinned and this agent's programs count into them, but a
  // next agent would not find its links: it discards.
  log_warning("the kernel state was taken over but not pinned again whole: {}; the next agent starts afresh", failed);
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
  return map_entries<flow_key, flow_counters>(bpf_map__fd(skel_->maps.flow_extra));
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

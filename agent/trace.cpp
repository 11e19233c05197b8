#include "trace.h"

#include <bpf/libbpf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <fnmatch.h>
#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "bpf_loader.h"
#include "config.h"
#include "ecs.h"
#include "egress_counters.h"
#include "feature_probe.h"
#include "flow_table.h"
#include "pipeline.h"
#include "redact.h"
#include "tool_matcher.h"
#include "version.h"

namespace egressd {
namespace {

constexpr uint64_t kMs = 1'000'000;

bool has_glob(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

bool glob_matches(const std::string& pattern, const std::string& text) {
  return fnmatch(pattern.c_str(), text.c_str(), 0) == 0;
}

std::string basename_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Cgroup v2 paths by id (the kernfs node id, which is the directory's inode
// number), read from the mount; re-read when an unknown id shows up.
class CgroupPaths {
 public:
  explicit CgroupPaths(std::string root) : root_(std::move(root)) {}

  std::string path(uint64_t id) {
    if (!id || root_.empty()) return "";
    auto it = paths_.find(id);
    if (it != paths_.end()) return it->second;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_scan_ > std::chrono::milliseconds(100)) {
      last_scan_ = now;
      scan();
      it = paths_.find(id);
      if (it != paths_.end()) return it->second;
    }
    return "";
  }

 private:
  void scan() {
    paths_.clear();
    current_ = this;
    nftw(root_.c_str(), visit, 32, FTW_PHYS | FTW_MOUNT);
    current_ = nullptr;
  }
  static int visit(const char* path, const struct stat* st, int type, struct FTW*) {
    if (type != FTW_D) return 0;
    std::string rel = path + current_->root_.size();
    current_->paths_[st->st_ino] = rel.empty() ? "/" : rel;
    return 0;
  }

  std::string root_;
  std::map<uint64_t, std::string> paths_;
  std::chrono::steady_clock::time_point last_scan_{};
  static inline CgroupPaths* current_ = nullptr;
};

struct SudoUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

// The user who ran sudo, when we are root through sudo: the command runs as
// them. Resolved before fork (the child may only make raw system calls).
std::optional<SudoUser> sudo_user() {
  const char* uid = getenv("SUDO_UID");
  const char* gid = getenv("SUDO_GID");
  if (getuid() != 0 || !uid || !gid) return std::nullopt;
  SudoUser u;
  try {
    u.uid = static_cast<uid_t>(std::stoul(uid));
    u.gid = static_cast<gid_t>(std::stoul(gid));
  } catch (const std::exception&) {
    throw std::invalid_argument("SUDO_UID or SUDO_GID is not a number");
  }
  if (u.uid == 0) return std::nullopt;
  u.groups.push_back(u.gid);
  if (const char* name = getenv("SUDO_USER")) {
    int n = 64;
    std::vector<gid_t> groups(static_cast<size_t>(n));
    if (getgrouplist(name, u.gid, groups.data(), &n) < 0) {
      groups.resize(static_cast<size_t>(n));
      getgrouplist(name, u.gid, groups.data(), &n);
    }
    groups.resize(static_cast<size_t>(std::max(n, 0)));
    if (!groups.empty()) u.groups = groups;
  }
  return u;
}

// A started command that waits on a pipe until it is followed, so not even
// its first instruction runs unobserved.
class LaunchedCommand {
 public:
  LaunchedCommand(const std::vector<std::string>& argv, const std::optional<SudoUser>& user) {
    int go[2], err[2];
    if (pipe2(go, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
      throw std::runtime_error(fmt::format("start command: pipe: {}", strerror(errno)));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error(fmt::format("start command: fork: {}", strerror(errno)));
    if (pid_ == 0) {
      close(go[1]);
      close(err[0]);
      char c;
      while (read(go[0], &c, 1) < 0 && errno == EINTR) {
      }
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGHUP}) sigaction(sig, &dfl, nullptr);
      int e = 0;
      if (user) {
        if (setgroups(user->groups.size(), user->groups.data()) != 0 || setgid(user->gid) != 0 ||
            setuid(user->uid) != 0)
          e = errno;
      }
      if (!e) {
        execvp(args[0], args.data());
        e = errno;
      }
      (void)!write(err[1], &e, sizeof(e));
      _exit(127);
    }
    close(go[0]);
    close(err[1]);
    go_fd_ = go[1];
    err_fd_ = err[0];
  }
  // A command that was never let go is killed; one that runs is left to run
  // (Ctrl-C reaches it through the terminal, as it reaches the trace).
  ~LaunchedCommand() {
    if (err_fd_ >= 0) close(err_fd_);
    if (go_fd_ >= 0) {
      close(go_fd_);
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }

  // Lets it exec. Throws with the reason when the exec (or the change of
  // user) failed.
  void release(const std::string& name) {
    (void)!write(go_fd_, "x", 1);
    close(go_fd_);
    go_fd_ = -1;
    int e = 0;
    ssize_t n;
    while ((n = read(err_fd_, &e, sizeof(e))) < 0 && errno == EINTR) {
    }
    close(err_fd_);
    err_fd_ = -1;
    if (n == sizeof(e)) {
      waitpid(pid_, nullptr, 0);
      exited_ = true;
      throw std::runtime_error(fmt::format("cannot run {}: {}", name, strerror(e)));
    }
  }
  // The exit status as a shell reports it, once the command has ended.
  std::optional<int> poll_exit() {
    if (exited_) return status_;
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r != pid_) return std::nullopt;
    exited_ = true;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return status_;
  }

 private:
  pid_t pid_ = -1;
  int go_fd_ = -1, err_fd_ = -1;
  bool exited_ = false;
  int status_ = 0;
};

bool use_color(const std::string& mode) {
  if (mode == "always") return true;
  if (mode == "never") return false;
  const char* term = getenv("TERM");
  return isatty(STDOUT_FILENO) && !getenv("NO_COLOR") && !(term && std::string(term) == "dumb");
}

}  // namespace

ProcessSelector::ProcessSelector(const TraceOptions& o, const std::vector<ToolSpec>& tools) : o_(o) {
  for (const auto& t : o.tools) {
    bool known = std::any_of(tools.begin(), tools.end(), [&](const ToolSpec& s) { return s.name == t; });
    if (!known) {
      std::string names;
      for (const auto& s : tools) names += (names.empty() ? "" : ", ") + s.name;
      throw std::invalid_argument(fmt::format("--tool {}: no such tool (known: {})", t, names));
    }
  }
  for (const auto& lists : {&o.exes, &o.comms, &o.cgroups})
    for (const auto& v : *lists)
      if (v.empty()) throw std::invalid_argument("an empty selector matches nothing");
  pids_.insert(o.pids.begin(), o.pids.end());
  all_ = o.tools.empty() && o.exes.empty() && o.pids.empty() && o.comms.empty() && o.cgroups.empty() &&
         o.command.empty();
}

bool ProcessSelector::decides_at_exec() const {
  return !o_.tools.empty() || !o_.exes.empty() || !o_.comms.empty() || !o_.cgroups.empty();
}

bool ProcessSelector::matches(const Process& p, const std::string& cgroup_path) const {
  if (all_) return true;
  if (pids_.count(p.key.tgid)) return true;
  for (const auto& t : o_.tools)
    if (p.tool == t) return true;
  for (const auto& e : o_.exes) {
    if (e.find('/') == std::string::npos) {  // a bare name: the file name of either path
      if (glob_matches(e, basename_of(p.exe)) || glob_matches(e, basename_of(p.filename))) return true;
    } else if (glob_matches(e, p.exe) || glob_matches(e, p.filename)) {
      return true;
    }
  }
  for (const auto& c : o_.comms)
    if (glob_matches(c, p.comm)) return true;
  if (!cgroup_path.empty())
    for (const auto& c : o_.cgroups)
      if (has_glob(c) ? glob_matches(c, cgroup_path) : cgroup_path.find(c) != std::string::npos) return true;
  return false;
}

std::string ProcessSelector::describe(const Redactor& redactor) const {
  std::vector<std::string> parts;
  auto add = [&](const char* what, const auto& values) {
    for (const auto& v : values) parts.push_back(fmt::format("{} {}", what, v));
  };
  add("tool", o_.tools);
  add("executable", o_.exes);
  add("pid", o_.pids);
  add("comm", o_.comms);
  add("cgroup", o_.cgroups);
  if (!o_.command.empty()) {
    std::string cmd;
    for (const auto& a : redactor.redact_argv(o_.command)) cmd += (cmd.empty() ? "" : " ") + a;
    parts.push_back(fmt::format("command '{}'", cmd));
  }
  if (parts.empty()) return "every process";
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out;
}

DestinationFilter::DestinationFilter(const std::vector<std::string>& destinations,
                                     const std::vector<uint16_t>& ports)
    : ports_(ports.begin(), ports.end()) {
  for (const auto& d : destinations) {
    if (auto c = Cidr::parse(d)) {
      cidrs_.push_back(*c);
      continue;
    }
    std::string name = d;
    if (name.rfind("*.", 0) == 0) name = name.substr(2);
    while (!name.empty() && name.back() == '.') name.pop_back();
    const bool valid = !name.empty() && name.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") ==
                                            std::string::npos;
    if (!valid) throw std::invalid_argument(fmt::format("--dest {}: not a CIDR, address or domain", d));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    domains_.push_back(name);
  }
}

bool DestinationFilter::matches(const nlohmann::json& ev) const {
  using P = nlohmann::json::json_pointer;
  const bool dns = ev.value(P("/event/action"), std::string()) == "dns-query";
  if (!ports_.empty()) {
    const auto port = ev.value(P("/destination/port"), 0u);
    if (!ports_.count(static_cast<uint16_t>(port))) return false;
  }
  if (cidrs_.empty() && domains_.empty()) return true;
  // An address filter applies to where the packets went; a domain filter to
  // the destination's name, or to the name a DNS query asks for.
  if (!dns && !cidrs_.empty()) {
    const std::string ip = ev.value(P("/destination/ip"), std::string());
    flow_addr a{};
    if (auto c = Cidr::parse(ip)) {
      a.family = c->family;
      std::copy(c->addr.begin(), c->addr.end(), a.addr_be);
      for (const auto& cidr : cidrs_)
        if (cidr.contains(a)) return true;
    }
  }
  std::string name = dns ? ev.value(P("/dns/question/name"), std::string())
                         : ev.value(P("/destination/domain"), std::string());
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  while (!name.empty() && name.back() == '.') name.pop_back();
  for (const auto& d : domains_) {
    if (name == d) return true;
    if (name.size() > d.size() && name.compare(name.size() - d.size(), d.size(), d) == 0 &&
        name[name.size() - d.size() - 1] == '.')
      return true;
  }
  return false;
}

namespace {

// Receives the flow table's events: keeps those of followed processes that
// pass the destination filter, shows them, and adds them to the summary.
class TraceSink : public EventSink {
 public:
  TraceSink(const DestinationFilter& filter, bool all, bool json, bool color)
      : filter_(filter), all_(all), json_(json), color_(color) {}

  void follow(const std::string& entity_id) { followed_.insert(entity_id); }
  bool follows(const std::string& entity_id) const { return all_ || followed_.count(entity_id); }

  void write(const nlohmann::json& ev) override {
    using P = nlohmann::json::json_pointer;
    if (!follows(ev.value(P("/process/entity_id"), std::string()))) return;
    if (!filter_.matches(ev)) return;
    summary.add(ev);
    const std::string line = json_ ? ev.dump() : trace_line(ev, color_);
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }

  TraceSummary summary;

 private:
  const DestinationFilter& filter_;
  std::set<std::string> followed_;
  bool all_, json_, color_;
};

}  // namespace

int run_trace(const TraceOptions& o, const std::atomic<bool>& stop) {
  // Everything the user typed is checked before anything is loaded.
  Config cfg;
  if (!o.config_path.empty()) load_config_file(o.config_path, cfg);
  ToolMatcher tools(merge_tools(builtin_tools(), cfg.tools));
  ProcessSelector selector(o, tools.tools());
  DestinationFilter filter(o.destinations, o.ports);
  if (o.color != "auto" && o.color != "always" && o.color != "never")
    throw std::invalid_argument(fmt::format("--color {}: use auto, always or never", o.color));
  if (o.duration_s < 0) throw std::invalid_argument("--duration must not be negative");
  std::optional<std::ofstream> report;
  if (!o.report_path.empty()) {
    report.emplace(o.report_path, std::ios::trunc);
    if (!*report) throw std::runtime_error(fmt::format("--report {}: {}", o.report_path, strerror(errno)));
  }
  std::optional<SudoUser> user;
  if (!o.command.empty()) user = sudo_user();

  FeatureReport features = probe_features(cfg.proc_root);
  if (auto problem = features.first_problem(); !problem.empty()) throw std::runtime_error(problem);

  const bool color = !o.json && use_color(o.color);
  HostInfo host = HostInfo::current(EGRESSD_VERSION);
  Redactor redactor;
  for (const auto& p : cfg.redact_patterns) redactor.add_pattern(p);
  EgressCounters counters(cfg.series);
  Clock clock;
  ProcessTable procs(cfg.proc_root, host.boot_id.substr(0, 8), &tools, &redactor);
  TraceSink sink(filter, selector.follows_all(), o.json, color);
  FlowTable flows(FlowTableDeps{procs, counters, sink, host, clock, &tools, cfg.destination_label});
  CgroupPaths cgroups(features.cgroup2_path);

  LoadOptions load = cfg.load;
  load.cgroup_path = features.cgroup2_path;
  load.trace_mode = !selector.follows_all();
  load.trace_decide = selector.decides_at_exec();
  load.ring_wakeup_bytes = 0;  // a responder watches: every event wakes the reader
  auto bpf = BpfPrograms::load(load);
  procs.set_tool_listener([&](const Process& p) {
    bpf->set_process_tool(p.key.tgid, p.key.start_ns, p.tool_id, tools.follows_children(p.tool_id));
  });

  // Following: a decision per process as of its last exec (gen), kept in user
  // space for the views and written to the kernel's process map.
  std::set<ProcKey> followed;
  std::map<ProcKey, uint32_t> gens;
  auto follow = [&](ProcKey key) {
    followed.insert(key);
    sink.follow(procs.entity_id(key));
  };
  auto judge = [&](const Process& p, bool inherited, uint32_t gen) {
    const bool yes = followed.count(p.key) || inherited || selector.matches(p, cgroups.path(p.cgroup_id));
    if (yes) follow(p.key);
    gens[p.key] = gen;
    if (load.trace_mode && load.trace_decide) bpf->set_trace_state(p.key.tgid, p.key.start_ns, gen, yes);
    return yes;
  };

  bpf->attach();
  auto running = bpf->running_processes();
  std::set<uint32_t> missing_pids(o.pids.begin(), o.pids.end());
  for (const auto& rec : running) {
    auto p = procs.on_exec(rec);
    missing_pids.erase(p->key.tgid);
    const bool yes = judge(*p, followed.count(p->parent) > 0, rec.fixed.exec_gen);
    if (yes && load.trace_mode && !load.trace_decide) bpf->follow_process(p->key.tgid);
  }
  if (!missing_pids.empty()) {
    const uint32_t pid = *missing_pids.begin();
    if (access(fmt::format("{}/{}", cfg.proc_root, pid).c_str(), F_OK) == 0)
      throw std::runtime_error(fmt::format(
          "--pid {}: the kernel's task iterator does not list this process (some kernels skip pid 1); "
          "follow it by --exe or --comm instead",
          pid));
    throw std::invalid_argument(fmt::format("--pid {}: no such process", pid));
  }
  if (load.trace_mode && !load.trace_decide && !o.pids.empty()) {
    // A process forked between the task walk and the marking above escaped
    // the kernel's inheritance: a second walk finds it.
    auto again = bpf->running_processes();
    for (const auto& rec : again) {
      const ProcKey key{rec.fixed.proc.tgid, rec.fixed.proc.start_ns};
      const ProcKey parent{rec.fixed.parent.tgid, rec.fixed.parent.start_ns};
      if (followed.count(key) || !followed.count(parent)) continue;
      auto p = procs.on_exec(rec);
      judge(*p, true, rec.fixed.exec_gen);
      bpf->follow_process(key.tgid);
    }
  }

  std::optional<LaunchedCommand> command;
  if (!o.command.empty()) {
    command.emplace(o.command, user);
    auto start = bpf->follow_process(static_cast<uint32_t>(command->pid()));
    if (!start) throw std::runtime_error("cannot follow the command: it is missing from the kernel's process map");
    follow({static_cast<uint32_t>(command->pid()), *start});
    gens[{static_cast<uint32_t>(command->pid()), *start}] = 0;
  }

  struct Ctx {
    ProcessTable& procs;
    FlowTable& flows;
    std::function<void(const Event&)> after;
    uint64_t decode_errors = 0, records = 0;
  } ctx{procs, flows, nullptr};
  ctx.after = [&](const Event& ev) {
    if (const auto* e = std::get_if<ExecRecord>(&ev)) {
      if (auto p = procs.find({e->fixed.proc.tgid, e->fixed.proc.start_ns})) judge(*p, false, e->fixed.exec_gen);
    } else if (const auto* f = std::get_if<fork_event>(&ev)) {
      const ProcKey parent{f->parent.tgid, f->parent.start_ns}, child{f->child.tgid, f->child.start_ns};
      auto it = gens.find(parent);
      if (auto p = procs.find(child)) judge(*p, followed.count(parent) > 0, it == gens.end() ? 0 : it->second);
    } else if (const auto* x = std::get_if<exit_event>(&ev)) {
      gens.erase({x->proc.tgid, x->proc.start_ns});
    }
  };
  ring_buffer* ring = ring_buffer__new(
      bpf->ring_buffer_fd(),
      [](void* c, void* data, size_t len) {
        auto* ctx = static_cast<Ctx*>(c);
        ++ctx->records;
        auto decoded = decode_event(data, len);
        if (std::holds_alternative<DecodeError>(decoded)) {
          ++ctx->decode_errors;
          return 0;
        }
        const Event& ev = std::get<Event>(decoded);
        dispatch_event(ev, ctx->procs, ctx->flows);
        ctx->after(ev);
        return 0;
      },
      &ctx, nullptr);
  if (!ring) throw LoaderError("open ring buffer", errno);
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> ring_owner(ring, ring_buffer__free);

  const uint64_t started = clock.boot_now_ns();
  const std::string following = selector.describe(redactor);
  fmt::print(stderr, "egressd trace: following {}{}; Ctrl-C to stop\n", following,
             o.destinations.empty() && o.ports.empty() ? "" : " (destination filters on)");
  if (!o.json) {
    const std::string header = trace_header(color);
    std::fwrite(header.data(), 1, header.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  if (command) command->release(o.command.front());

  std::optional<int> exit_status;
  uint64_t next_poll = 0;
  const uint64_t deadline = o.duration_s > 0 ? started + static_cast<uint64_t>(o.duration_s * 1e9) : 0;
  while (!stop.load()) {
    ring_buffer__poll(ring, 100);
    ring_buffer__consume(ring);
    const uint64_t now = clock.boot_now_ns();
    if (now >= next_poll || flows.extra_ends_pending()) {
      poll_kernel_counters(*bpf, flows, now >= next_poll);
      if (now >= next_poll) next_poll = now + 1000 * kMs;
    }
    flows.emit_updates(now, 10'000 * kMs);
    procs.expire(now, 120'000 * kMs);
    if (command && (exit_status = command->poll_exit())) break;
    if (deadline && now >= deadline) break;
  }
  // The command's sockets were released before it could be reaped, so their
  // events are in the ring: read them, then the counters of what is open.
  ring_buffer__consume(ring);
  poll_kernel_counters(*bpf, flows, true);
  const uint64_t end = clock.boot_now_ns();
  flows.flush_all(end, "trace-stopped");

  sink.summary.set_window(clock.to_wall_ns(started), clock.to_wall_ns(end));
  if (o.json) {
    nlohmann::json j = ecs_event(host, "trace-summary", "event", {"network"}, {"info"}, clock.to_wall_ns(end));
    j["egressd"]["trace"] = sink.summary.to_json();
    j["egressd"]["trace"]["following"] = following;
    j["egressd"]["trace"]["kernel_events"] = ctx.records;
    std::string line = j.dump();
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fputc('\n', stdout);
  } else {
    const std::string text = sink.summary.text(color);
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
  std::fflush(stdout);
  if (report) {
    *report << sink.summary.html(following);
    report->close();
    if (!*report) throw std::runtime_error(fmt::format("--report {}: write failed", o.report_path));
    fmt::print(stderr, "egressd trace: report written to {}\n", o.report_path);
  }
  if (ctx.decode_errors) fmt::print(stderr, "egressd trace: {} malformed kernel events dropped\n", ctx.decode_errors);
  return exit_status.value_or(0);
}

}  // namespace egressd

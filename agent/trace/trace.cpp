#include "trace.h"

#include <fmt/format.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "command.h"
#include "config.h"
#include "ecs.h"
#include "errors.h"
#include "log.h"
#include "pipeline.h"

namespace egressd {
namespace {

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

bool use_color(const std::string& mode) {
  if (mode == "always") return true;
  if (mode == "never") return false;
  const char* term = getenv("TERM");
  return isatty(STDOUT_FILENO) && !getenv("NO_COLOR") && !(term && std::string(term) == "dumb");
}

}  // namespace

namespace {

// Receives the flow table's events: keeps those of followed processes that
// pass the destination filter, shows them, and adds them to the summary.
class TraceSink : public EventSink {
 public:
  TraceSink(const DestinationFilter& filter, bool all, bool json, bool color)
      : filter_(filter), all_(all), json_(json), color_(color) {}

  void follow(const std::string& entity_id) { followed_.insert(entity_id); }
  bool follows(const std::string& entity_id) const { return all_ || followed_.count(entity_id); }

  void write(LogEvent event) override {
    using P = nlohmann::json::json_pointer;
    const nlohmann::json& ev = event.doc();
    if (!follows(ev.value(P("/process/entity_id"), std::string()))) return;
    if (!filter_.matches(ev)) return;
    summary.add(ev);
    const std::string line = json_ ? event.line() : trace_line(ev, color_);
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
  ProcessSelector selector(o, merge_tools(builtin_tools(), cfg.tools));
  DestinationFilter filter(o.destinations, o.ports);
  if (o.color != "auto" && o.color != "always" && o.color != "never")
    throw UsageError(fmt::format("--color {}: use auto, always or never", o.color));
  if (o.duration_s < 0) throw UsageError("--duration must not be negative");
  std::optional<std::ofstream> report;
  if (!o.report_path.empty()) {
    report.emplace(o.report_path, std::ios::trunc);
    if (!*report) throw std::runtime_error(fmt::format("--report {}: {}", o.report_path, strerror(errno)));
  }
  std::optional<SudoUser> user;
  if (!o.command.empty()) user = sudo_user();

  // The agent's pipeline, with the kernel emitting connection events only for
  // followed processes, and a responder's pace: every event wakes the reader,
  // counters are read each second and long flows reported every 10 s.
  PipelineOptions opts = pipeline_options(cfg);
  opts.load.trace_mode = !selector.follows_all();
  opts.load.trace_decide = selector.decides_at_exec();
  opts.load.ring_wakeup_bytes = 0;
  opts.drain_interval_ms = 100;
  opts.poll_interval_ms = 1'000;
  opts.update_interval_ms = 10'000;
  const bool color = !o.json && use_color(o.color);
  TraceSink sink(filter, selector.follows_all(), o.json, color);
  Pipeline pipeline(std::move(opts));
  pipeline.load(sink);
  const LoadOptions& load = pipeline.options().load;
  BpfPrograms& bpf = pipeline.bpf();
  ProcessTable& procs = pipeline.procs();
  CgroupPaths cgroups(pipeline.features().cgroup2_path);

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
    if (load.trace_mode && load.trace_decide) bpf.set_trace_state(p.key.tgid, p.key.start_ns, gen, yes);
    return yes;
  };

  const std::vector<ExecRecord> running = pipeline.attach();
  std::set<uint32_t> missing_pids(o.pids.begin(), o.pids.end());
  for (const auto& rec : running) {
    auto p = procs.find({rec.fixed.proc.tgid, rec.fixed.proc.start_ns});
    if (!p) continue;
    missing_pids.erase(p->key.tgid);
    const bool yes = judge(*p, followed.count(p->parent) > 0, rec.fixed.exec_gen);
    if (yes && load.trace_mode && !load.trace_decide) bpf.follow_process(p->key.tgid);
  }
  if (!missing_pids.empty()) {
    const uint32_t pid = *missing_pids.begin();
    if (access(fmt::format("{}/{}", cfg.proc_root, pid).c_str(), F_OK) == 0)
      throw std::runtime_error(fmt::format(
          "--pid {}: the kernel's task iterator does not list this process (some kernels skip pid 1); "
          "follow it by --exe or --comm instead",
          pid));
    throw UsageError(fmt::format("--pid {}: no such process", pid));
  }
  if (load.trace_mode && !load.trace_decide && !o.pids.empty()) {
    // A process forked between the task walk and the marking above escaped
    // the kernel's inheritance: a second walk finds it.
    auto again = bpf.running_processes();
    for (const auto& rec : again) {
      const ProcKey key{rec.fixed.proc.tgid, rec.fixed.proc.start_ns};
      const ProcKey parent{rec.fixed.parent.tgid, rec.fixed.parent.start_ns};
      if (followed.count(key) || !followed.count(parent)) continue;
      auto p = procs.on_exec(rec);
      judge(*p, true, rec.fixed.exec_gen);
      bpf.follow_process(key.tgid);
    }
  }

  std::optional<LaunchedCommand> command;
  if (!o.command.empty()) {
    command.emplace(o.command, user);
    auto start = bpf.follow_process(static_cast<uint32_t>(command->pid()));
    if (!start) throw std::runtime_error("cannot follow the command: it is missing from the kernel's process map");
    follow({static_cast<uint32_t>(command->pid()), *start});
    gens[{static_cast<uint32_t>(command->pid()), *start}] = 0;
  }

  pipeline.set_event_hook([&](const Event& ev) {
    if (const auto* e = std::get_if<ExecRecord>(&ev)) {
      if (auto p = procs.find({e->fixed.proc.tgid, e->fixed.proc.start_ns})) judge(*p, false, e->fixed.exec_gen);
    } else if (const auto* f = std::get_if<fork_event>(&ev)) {
      const ProcKey parent{f->parent.tgid, f->parent.start_ns}, child{f->child.tgid, f->child.start_ns};
      auto it = gens.find(parent);
      if (auto p = procs.find(child)) judge(*p, followed.count(parent) > 0, it == gens.end() ? 0 : it->second);
    } else if (const auto* x = std::get_if<exit_event>(&ev)) {
      gens.erase({x->proc.tgid, x->proc.start_ns});
    }
  });

  const Clock& clock = pipeline.clock();
  const uint64_t started = clock.boot_now_ns();
  const std::string following = selector.describe(pipeline.redactor());
  log_line(Severity::kInfo,
           fmt::format("following {}{}; Ctrl-C to stop", following,
                       o.destinations.empty() && o.ports.empty() ? "" : " (destination filters on)"),
           "egressd trace");
  if (!o.json) {
    const std::string header = trace_header(color);
    std::fwrite(header.data(), 1, header.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  if (command) command->release(o.command.front());

  std::optional<int> exit_status;
  const uint64_t deadline = o.duration_s > 0 ? started + static_cast<uint64_t>(o.duration_s * 1e9) : 0;
  while (!stop.load()) {
    const uint64_t now = pipeline.step();
    if (command && (exit_status = command->poll_exit())) break;
    if (deadline && now >= deadline) break;
  }
  // The command's sockets were released before it could be reaped, so their
  // events are in the ring: finish reads them, then the counters of what is open.
  const uint64_t end = pipeline.finish("trace-stopped");

  sink.summary.set_window(clock.to_wall_ns(started), clock.to_wall_ns(end));
  if (o.json) {
    nlohmann::json j =
        ecs_event(pipeline.host(), "trace-summary", "event", {"network"}, {"info"}, clock.to_wall_ns(end));
    j["egressd"]["trace"] = sink.summary.to_json();
    j["egressd"]["trace"]["following"] = following;
    j["egressd"]["trace"]["kernel_events"] = pipeline.stats().records;
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
    log_line(Severity::kInfo, fmt::format("report written to {}", o.report_path), "egressd trace");
  }
  uint64_t malformed = 0;
  for (const auto& [reason, n] : pipeline.stats().decode_errors) malformed += n;
  if (malformed)
    log_line(Severity::kWarning, fmt::format("{} malformed kernel events dropped", malformed), "egressd trace");
  return exit_status.value_or(0);
}

}  // namespace egressd

#include "process_table.h"

#include "redact.h"
#include "tool_matcher.h"

#include <fmt/format.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace egressd {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Field 22 of /proc/PID/stat (start time in clock ticks since boot); the
// comm field may hold spaces and parentheses, so parse after the last ')'.
bool stat_start_ticks(const std::string& stat, uint64_t* ticks, uint32_t* ppid) {
  auto close = stat.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream in(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && in >> field; ++i) {
    if (i == 4) *ppid = static_cast<uint32_t>(std::stoul(field));
    if (i == 22) {
      *ticks = std::stoull(field);
      return true;
    }
  }
  return false;
}

}  // namespace

ProcessTable::ProcessTable(std::string proc_root, std::string host_tag, const ToolMatcher* tools,
                           const Redactor* redactor)
    : proc_root_(std::move(proc_root)), host_tag_(std::move(host_tag)), tools_(tools), redactor_(redactor) {}

void ProcessTable::set_argv(Process& p, std::vector<std::string> argv) const {
  p.argv = std::move(argv);
  p.redacted_argv = redactor_ ? redactor_->redact_argv(p.argv) : p.argv;
  p.command_line = join_command_line(p.redacted_argv);
}

void ProcessTable::set_tool(Process& p, uint32_t id, bool own) {
  const ToolSpec* spec = tools_ ? tools_->tool(id) : nullptr;
  p.tool_id = spec ? id : 0;
  p.tool = spec ? spec->name : "";
  p.tool_own = spec && own;
  if (spec && tool_listener_) tool_listener_(p);
}

uint32_t ProcessTable::inherited_tool(ProcKey parent) const {
  auto it = procs_.find(parent);
  if (it == procs_.end() || !tools_) return 0;
  const uint32_t id = it->second.proc->tool_id;
  return tools_->follows_children(id) ? id : 0;
}

std::string ProcessTable::entity_id(ProcKey key) const {
  return fmt::format("{}-{}-{}", host_tag_, key.tgid, key.start_ns);
}

std::shared_ptr<const Process> ProcessTable::on_exec(const ExecRecord& rec) {
  const exec_event& e = rec.fixed;
  auto p = std::make_shared<Process>();
  p->key = {e.proc.tgid, e.proc.start_ns};
  p->parent = {e.parent.tgid, e.parent.start_ns};
  p->entity_id = entity_id(p->key);
  p->exe = rec.exe;
  p->filename = rec.filename;
  set_argv(*p, rec.argv);
  p->comm = e.comm;
  p->uid = e.uid;
  p->gid = e.gid;
  p->cgroup_id = e.cgroup_id;
  p->exec_id = e.proc.exec_id;
  p->fileless = e.flags & EXEC_F_FILELESS;
  // The task iterator cannot read another process's memory: its command
  // line comes from proc_root, as a running process's would.
  if ((e.flags & EXEC_F_FROM_ITER) && p->argv.empty()) fill_from_proc_fs(*p);
  // A process that is a tool itself takes its own tag; otherwise it keeps
  // the one it had before exec (from its parent at fork).
  const uint32_t own = tools_ ? tools_->match(p->exe, p->argv, p->comm,
                                               fmt::format("{}/{}/exe", proc_root_, p->key.tgid))
                              : 0;
  if (own) {
    set_tool(*p, own, true);
  } else if (auto it = procs_.find(p->key); it != procs_.end() && it->second.proc->tool_id) {
    p->tool_id = it->second.proc->tool_id;
    p->tool = it->second.proc->tool;
  } else if (uint32_t inherited = inherited_tool(p->parent)) {
    set_tool(*p, inherited, false);
  } else if (e.tool_id) {
    set_tool(*p, e.tool_id, false);  // the kernel's tag, when the tree is unknown here
  }
  Entry next{p, 0, {}};
  if (auto it = procs_.find(p->key); it != procs_.end()) {
    next.earlier = std::move(it->second.earlier);
    if (next.earlier.size() == kImagesKept) next.earlier.erase(next.earlier.begin());
    next.earlier.push_back(std::move(it->second.proc));
  }
  procs_[p->key] = std::move(next);
  return p;
}

std::shared_ptr<const Process> ProcessTable::on_fork(const fork_event& ev) {
  ProcKey child{ev.child.tgid, ev.child.start_ns};
  ProcKey parent{ev.parent.tgid, ev.parent.start_ns};
  auto p = std::make_shared<Process>();
  if (auto it = procs_.find(parent); it != procs_.end()) {
    *p = *it->second.proc;
  } else {
    p->known = false;
  }
  p->key = child;
  p->parent = parent;
  p->entity_id = entity_id(child);
  p->comm = ev.comm;
  p->uid = ev.uid;
  p->cgroup_id = ev.cgroup_id;
  p->exec_id = ev.child.exec_id;
  p->tool_id = 0;
  p->tool.clear();
  p->tool_own = false;
  // The agent's view of the parent is the more current one (the kernel may
  // not have the parent's tag yet); without it, the kernel's decision stands.
  const bool parent_known = procs_.count(parent) > 0;
  if (uint32_t inherited = inherited_tool(parent)) {
    set_tool(*p, inherited, false);
  } else if (!parent_known && ev.tool_id) {
    set_tool(*p, ev.tool_id, false);
  }
  procs_[child] = Entry{p, 0, {}};
  return p;
}

void ProcessTable::on_exit(ProcKey key, uint64_t ts_ns) {
  if (auto it = procs_.find(key); it != procs_.end()) it->second.exit_ns = ts_ns ? ts_ns : 1;
}

std::shared_ptr<const Process> ProcessTable::find(ProcKey key) const {
  auto it = procs_.find(key);
  return it == procs_.end() ? nullptr : it->second.proc;
}

bool ProcessTable::knows(ProcKey key, uint32_t exec_id) const {
  auto it = procs_.find(key);
  if (it == procs_.end()) return false;
  if (it->second.proc->exec_id == exec_id) return true;
  for (const auto& image : it->second.earlier)
    if (image->exec_id == exec_id) return true;
  return false;
}

std::shared_ptr<const Process> ProcessTable::resolve(ProcKey key, uint32_t exec_id) {
  auto it = procs_.find(key);
  if (it == procs_.end()) return resolve(key);
  const Entry& e = it->second;
  if (e.proc->exec_id != exec_id)
    for (const auto& image : e.earlier)
      if (image->exec_id == exec_id) return image;
  return e.proc;
}

std::shared_ptr<const Process> ProcessTable::resolve(ProcKey key) {
  if (auto p = find(key)) return p;
  std::shared_ptr<const Process> p = from_proc_fs(key);
  procs_[key] = Entry{p, 0, {}};
  return p;
}

void ProcessTable::fill_from_proc_fs(Process& p) const {
  const std::string dir = fmt::format("{}/{}", proc_root_, p.key.tgid);
  std::string cmdline = read_file(dir + "/cmdline");
  set_argv(p, split_args(cmdline.data(), cmdline.size()));
}

std::shared_ptr<Process> ProcessTable::from_proc_fs(ProcKey key) const {
  auto p = std::make_shared<Process>();
  p->key = key;
  p->entity_id = entity_id(key);
  p->known = false;
  const std::string dir = fmt::format("{}/{}", proc_root_, key.tgid);
  uint64_t ticks = 0;
  uint32_t ppid = 0;
  if (!stat_start_ticks(read_file(dir + "/stat"), &ticks, &ppid)) return p;
  // Same process only if its start time matches at /proc's tick resolution.
  const uint64_t ns_per_tick = 1'000'000'000ULL / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
  if (ticks != key.start_ns / ns_per_tick) return p;
  char exe[4096];
  ssize_t n = readlink((dir + "/exe").c_str(), exe, sizeof(exe) - 1);
  if (n > 0) p->exe.assign(exe, static_cast<size_t>(n));
  std::string comm = read_file(dir + "/comm");
  if (!comm.empty() && comm.back() == '\n') comm.pop_back();
  p->comm = comm;
  p->parent.tgid = ppid;
  fill_from_proc_fs(*p);
  p->known = true;
  return p;
}

void ProcessTable::expire(uint64_t now_ns, uint64_t keep_ns, const std::function<void(ProcKey)>& forgotten) {
  for (auto it = procs_.begin(); it != procs_.end();) {
    if (it->second.exit_ns && now_ns > it->second.exit_ns + keep_ns) {
      if (forgotten) forgotten(it->first);
      it = procs_.erase(it);
    } else
      ++it;
  }
}

}  // namespace egressd

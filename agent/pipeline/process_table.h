// Processes known to the agent, keyed by (tgid, start time) so that a reused
// pid never inherits another process's identity. Records are immutable
// snapshots shared with the flows that reference them: an exec creates a new
// snapshot for the same process, and flows opened before it keep the old one.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "event_decoder.h"

namespace egressd {

struct ProcKey {
  uint32_t tgid = 0;
  uint64_t start_ns = 0;
  auto operator<=>(const ProcKey&) const = default;
};

// A value built once per process snapshot and reused by every event of it.
// A copy starts empty: a snapshot made from another (at exec) builds its own.
template <typename T>
class PerSnapshot {
 public:
  PerSnapshot() = default;
  PerSnapshot(const PerSnapshot&) {}
  PerSnapshot& operator=(const PerSnapshot&) {
    value_.reset();
    return *this;
  }
  // Read and filled on the event loop's thread only.
  template <typename Make>
  const T& get(Make make) const {
    if (!value_) value_ = std::make_shared<const T>(make());
    return *value_;
  }

 private:
  mutable std::shared_ptr<const T> value_;
};

// The ECS "process" object's members (pipeline/ecs.h ecs_process).
struct EcsProcessText {
  std::string head, tail;
};

struct Process {
  ProcKey key;
  ProcKey parent;
  std::string entity_id;
  std::string exe;       // resolved in the kernel at exec
  std::string filename;  // as given to execve (the script, for interpreters)
  std::vector<std::string> argv;
  // argv with secrets masked, and joined: what the log shows. Computed once
  // per process, so a long command line costs one pass, not one per event.
  std::vector<std::string> redacted_argv;
  std::string command_line;
  std::string comm;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t cgroup_id = 0;
  // Which program of the process this is: the kernel's self_exec_id (low
  // bits), which each execve moves on. Bytes carry it, so they are charged to
  // the image that sent them.
  uint32_t exec_id = 0;
  bool fileless = false;  // run from a memfd or another file in no directory
  bool known = true;  // false: seen only through a socket, identity not found
  uint32_t tool_id = 0;  // ToolMatcher id; 0: not a tool
  std::string tool;      // its name, "" when none
  bool tool_own = false; // matched itself, rather than inherited from a parent
  // The ECS "process" object of its events, serialized (pipeline/ecs.h).
  PerSnapshot<EcsProcessText> ecs;
};

class ToolMatcher;
class Redactor;

class ProcessTable {
 public:
  // proc_root is read for processes the kernel did not describe (command
  // lines of processes that ran before the agent; identities of processes
  // whose exec event was lost). host_tag goes into entity ids.
  // redactor: masks secrets in command lines (nullptr: argv is shown as is).
  ProcessTable(std::string proc_root, std::string host_tag, const ToolMatcher* tools = nullptr,
               const Redactor* redactor = nullptr);

  // Called for every process that becomes (part of) a tool, so the kernel's
  // process map can carry the tag to children forked from now on.
  void set_tool_listener(std::function<void(const Process&)> listener) {
    tool_listener_ = std::move(listener);
  }

  std::shared_ptr<const Process> on_exec(const ExecRecord& rec);
  std::shared_ptr<const Process> on_fork(const fork_event& ev);
  void on_exit(ProcKey key, uint64_t ts_ns);

  // The process, or a record built from proc_root, or an unknown placeholder.
  std::shared_ptr<const Process> resolve(ProcKey key);
  // The image of the process that ran with exec_id: the current one, one of
  // the last kImagesKept before it, or the current one when none matches.
  std::shared_ptr<const Process> resolve(ProcKey key, uint32_t exec_id);
  static constexpr size_t kImagesKept = 4;
  std::shared_ptr<const Process> find(ProcKey key) const;
  // Whether the table has the image of the process that ran with exec_id
  // (else its exec or fork record may still wait in the ring buffer).
  bool knows(ProcKey key, uint32_t exec_id) const;

  // Forget processes that exited more than keep_ns before now_ns (each one
  // is passed to forgotten).
  void expire(uint64_t now_ns, uint64_t keep_ns, const std::function<void(ProcKey)>& forgotten = {});
  size_t size() const { return procs_.size(); }

  std::string entity_id(ProcKey key) const;

 private:
  struct Entry {
    std::shared_ptr<const Process> proc;
    uint64_t exit_ns = 0;  // 0 while running
    // The images it ran before, oldest first: sockets they opened may
    // still report bytes.
    std::vector<std::shared_ptr<const Process>> earlier;
  };
  std::shared_ptr<Process> from_proc_fs(ProcKey key) const;
  void fill_from_proc_fs(Process& p) const;
  void set_tool(Process& p, uint32_t id, bool own);
  void set_argv(Process& p, std::vector<std::string> argv) const;
  uint32_t inherited_tool(ProcKey parent) const;

  std::string proc_root_;
  std::string host_tag_;
  const ToolMatcher* tools_;
  const Redactor* redactor_;
  std::function<void(const Process&)> tool_listener_;
  std::map<ProcKey, Entry> procs_;
};

}  // namespace egressd

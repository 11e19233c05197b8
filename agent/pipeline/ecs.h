// Elastic Common Schema building blocks shared by every log event.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "process_table.h"

namespace egressd {

inline constexpr const char* kEcsVersion = "8.11.0";

struct HostInfo {
  std::string hostname;
  std::string boot_id;
  std::string agent_version;

  static HostInfo current(const std::string& version);
};

// The members every event has that never change in a run, serialized once:
// "agent":{...}, "ecs":{...} and "host":{...} (events write their members in
// key order, as nlohmann::json does, so each is its own piece).
struct EcsConstants {
  std::string agent, ecs, host;
  static EcsConstants of(const HostInfo& host);
};

// Kernel timestamps are CLOCK_BOOTTIME; the log wants wall-clock time. The
// wall clock may be stepped (NTP's first sync, an administrator, a VM that
// resumes): resync() follows it, so events are stamped with the wall clock of
// the moment they are written.
class Clock {
 public:
  Clock();
  uint64_t boot_now_ns() const;
  uint64_t to_wall_ns(uint64_t boot_ns) const { return boot_ns + offset_ns_; }
  // Takes the wall clock's offset again when it moved by 1 ms or more (a
  // slew is followed in 1 ms steps). Returns how far it moved (0 if less).
  int64_t resync();

  static constexpr int64_t kStepNs = 1'000'000'000;  // a move this large is a step

 private:
  uint64_t offset_ns_;
};

// RFC 3339 UTC with microseconds: 2026-11-24T09:00:00.123456Z
std::string iso8601(uint64_t wall_ns);

nlohmann::json ecs_event(const HostInfo& host, std::string_view action, std::string_view kind,
                         std::vector<std::string> category, std::vector<std::string> type,
                         uint64_t wall_ns);

// The ECS "process" object's members, serialized: those that sort before
// "thread" and those after it, so an event that names the thread
// (connection-attempted) puts it in between.
EcsProcessText ecs_process(const Process& p, const Clock& clock);

}  // namespace egressd

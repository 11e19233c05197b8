#include "ecs.h"

#include <fmt/format.h>
#include <unistd.h>

#include <ctime>
#include <fstream>

#include "text.h"

namespace egressd {
namespace {

uint64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ULL + uint64_t(ts.tv_nsec);
}

}  // namespace

HostInfo HostInfo::current(const std::string& version) {
  HostInfo h;
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  h.hostname = name;
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::getline(in, h.boot_id);
  h.agent_version = version;
  return h;
}

Clock::Clock() : offset_ns_(clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_BOOTTIME)) {}

uint64_t Clock::boot_now_ns() const { return clock_ns(CLOCK_BOOTTIME); }

std::string iso8601(uint64_t wall_ns) {
  time_t secs = static_cast<time_t>(wall_ns / 1'000'000'000ULL);
  tm utc{};
  gmtime_r(&secs, &utc);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &utc);
  return fmt::format("{}.{:06d}Z", buf, (wall_ns % 1'000'000'000ULL) / 1000);
}

nlohmann::json ecs_event(const HostInfo& host, std::string_view action, std::string_view kind,
                         std::vector<std::string> category, std::vector<std::string> type,
                         uint64_t wall_ns) {
  nlohmann::json j;
  j["@timestamp"] = iso8601(wall_ns);
  j["ecs"]["version"] = "8.11.0";
  j["event"]["kind"] = kind;
  j["event"]["category"] = std::move(category);
  j["event"]["type"] = std::move(type);
  j["event"]["action"] = action;
  j["event"]["module"] = "egressd";
  j["host"]["name"] = host.hostname;
  j["host"]["boot"]["id"] = host.boot_id;
  j["agent"]["type"] = "egressd";
  j["agent"]["version"] = host.agent_version;
  return j;
}

nlohmann::json ecs_process(const Process& p, const Clock& clock) {
  nlohmann::json j;
  j["pid"] = p.key.tgid;
  j["entity_id"] = p.entity_id;
  j["start"] = iso8601(clock.to_wall_ns(p.key.start_ns));
  if (!p.exe.empty()) {
    j["executable"] = p.exe;
    j["name"] = basename_of(p.exe);
  } else if (!p.comm.empty()) {
    j["name"] = p.comm;
  }
  if (!p.redacted_argv.empty()) {
    j["command_line"] = p.command_line;
    j["args"] = p.redacted_argv;
    j["args_count"] = p.redacted_argv.size();
  }
  if (p.parent.tgid) {
    j["parent"]["pid"] = p.parent.tgid;
    if (p.parent.start_ns)
      j["parent"]["entity_id"] = fmt::format("{}-{}-{}", p.entity_id.substr(0, p.entity_id.find('-')),
                                             p.parent.tgid, p.parent.start_ns);
  }
  if (!p.comm.empty()) j["title"] = p.comm;
  return j;
}

}  // namespace egressd

#include "ecs.h"

#include <fmt/format.h>
#include <unistd.h>

#include <ctime>
#include <fstream>

#include "json_writer.h"
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

int64_t Clock::resync() {
  const uint64_t now = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_BOOTTIME);
  const int64_t moved = static_cast<int64_t>(now - offset_ns_);
  if (moved > -1'000'000 && moved < 1'000'000) return 0;
  offset_ns_ = now;
  return moved;
}

uint64_t Clock::boot_now_ns() const { return clock_ns(CLOCK_BOOTTIME); }

std::string iso8601(uint64_t wall_ns) {
  // Events come in bursts within one second: its date and time are formatted
  // once, not for every event.
  thread_local time_t cached_secs = -1;
  thread_local char cached[32];
  const time_t secs = static_cast<time_t>(wall_ns / 1'000'000'000ULL);
  if (secs != cached_secs) {
    tm utc{};
    gmtime_r(&secs, &utc);
    strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &utc);
    cached_secs = secs;
  }
  char text[40];
  const auto end = fmt::format_to_n(text, sizeof(text), "{}.{:06d}Z", cached, (wall_ns % 1'000'000'000ULL) / 1000);
  return std::string(text, end.out);
}

nlohmann::json ecs_event(const HostInfo& host, std::string_view action, std::string_view kind,
                         std::vector<std::string> category, std::vector<std::string> type,
                         uint64_t wall_ns) {
  nlohmann::json j;
  j["@timestamp"] = iso8601(wall_ns);
  j["ecs"]["version"] = kEcsVersion;
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

EcsConstants EcsConstants::of(const HostInfo& host) {
  EcsConstants c;
  JsonWriter(c.agent).open("agent").str("type", "egressd").str("version", host.agent_version).close();
  JsonWriter(c.ecs).open("ecs").str("version", kEcsVersion).close();
  JsonWriter(c.host).open("host").open("boot").str("id", host.boot_id).close().str("name", host.hostname).close();
  return c;
}

EcsProcessText ecs_process(const Process& p, const Clock& clock) {
  EcsProcessText t;
  JsonWriter w(t.head);
  if (!p.redacted_argv.empty()) {
    w.strings("args", p.redacted_argv);
    w.num("args_count", p.redacted_argv.size());
    w.str("command_line", p.command_line);
  }
  w.str("entity_id", p.entity_id);
  if (!p.exe.empty()) w.str("executable", p.exe);
  if (!p.exe.empty())
    w.str("name", basename_of(p.exe));
  else if (!p.comm.empty())
    w.str("name", p.comm);
  if (p.parent.tgid) {
    w.open("parent");
    if (p.parent.start_ns)
      w.str("entity_id", fmt::format("{}-{}-{}", p.entity_id.substr(0, p.entity_id.find('-')), p.parent.tgid,
                                     p.parent.start_ns));
    w.num("pid", p.parent.tgid).close();
  }
  w.num("pid", p.key.tgid);
  w.str("start", iso8601(clock.to_wall_ns(p.key.start_ns)));
  if (!p.comm.empty()) JsonWriter(t.tail).str("title", p.comm);
  return t;
}

}  // namespace egressd

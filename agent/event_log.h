// The JSON event log: one ECS event per line, to stdout or a file (0600).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace egressd {

class EventLog {
 public:
  // path "-" is stdout. Throws std::runtime_error with a one-line reason.
  static std::unique_ptr<EventLog> open(const std::string& path);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  void write(const nlohmann::json& event);
  void flush();

  uint64_t lines() const { return lines_; }
  uint64_t write_failures() const { return failures_; }

 private:
  EventLog(FILE* f, bool owned) : file_(f), owned_(owned) {}
  FILE* file_;
  bool owned_;
  uint64_t lines_ = 0;
  uint64_t failures_ = 0;
};

}  // namespace egressd

// An EventSink that keeps the events in memory, for unit tests that check
// what a component logs without a file to write and parse back. Tests of
// EventLog itself stay on files.
#pragma once

#include <mutex>
#include <vector>

#include <nlohmann/json.hpp>

#include "event_sink.h"

namespace egressd::test {

class MemorySink : public EventSink {
 public:
  void write(const nlohmann::json& event) override {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(event);
  }
  std::vector<nlohmann::json> events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<nlohmann::json> events_;
};

}  // namespace egressd::test

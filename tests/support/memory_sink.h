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
  // Keeps the document parsed from the line, and checks the line is the one
  // nlohmann::json would write for it: each member once, in key order, escaped
  // alike (so a writer that repeats a key or escapes wrongly fails the test).
  void write(LogEvent event) override {
    const nlohmann::json& doc = event.doc();
    const std::string canonical = doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::lock_guard<std::mutex> lock(mu_);
    if (event.line() != canonical) noncanonical_.push_back(event.line());
    events_.push_back(doc);
  }
  // Lines that were not written as nlohmann::json would write their document.
  std::vector<std::string> noncanonical() const {
    std::lock_guard<std::mutex> lock(mu_);
    return noncanonical_;
  }
  std::vector<nlohmann::json> events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<nlohmann::json> events_;
  std::vector<std::string> noncanonical_;
};

}  // namespace egressd::test

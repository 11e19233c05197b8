// Where the pipeline's ECS events go: the event log (output/event_log.h), a
// consumer such as egressd trace, or a test's memory.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

namespace egressd {

// One ECS event: its JSON line (no newline), and the document parsed from the
// line for a sink that reads fields. The flow table writes the line directly
// (base/json_writer.h); the few events built as documents convert on the way.
class LogEvent {
 public:
  explicit LogEvent(std::string line) : line_(std::move(line)) {}
  // Implicit, so an event built as a document is written like any other.
  LogEvent(nlohmann::json doc)  // NOLINT(google-explicit-constructor)
      : line_(doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)), doc_(std::move(doc)) {}

  const std::string& line() const { return line_; }
  std::string take_line() && { return std::move(line_); }
  // Parsed from the line on first use.
  const nlohmann::json& doc() const {
    if (!doc_) doc_ = nlohmann::json::parse(line_);
    return *doc_;
  }

 private:
  std::string line_;
  mutable std::optional<nlohmann::json> doc_;
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void write(LogEvent event) = 0;
};

}  // namespace egressd

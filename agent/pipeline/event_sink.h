// Where the pipeline's ECS events go: the event log (output/event_log.h), a
// consumer such as egressd trace, or a test's memory.
#pragma once

#include <nlohmann/json.hpp>

namespace egressd {

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void write(const nlohmann::json& event) = 0;
};

}  // namespace egressd

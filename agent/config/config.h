// egressd's configuration: defaults, then the YAML file, then flags.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "hook_plan.h"
#include "egress_counters.h"
#include "event_log.h"
#include "flow_table.h"
#include "metrics.h"
#include "pipeline.h"
#include "tool_catalog.h"
#include "yaml_reader.h"

namespace egressd {

struct Config {
  std::string metrics_address = "127.0.0.1:8789";
  LogOptions log;
  uint64_t update_interval_ms = 60'000;  // flow-updated for long-lived flows
  bool summarize_flows = false;          // flows.log: summary (default: each)
  uint64_t summary_interval_ms = 60'000; // flow-summary events, when summarized
  uint64_t poll_interval_ms = 2'000;     // read live counters from the kernel
  uint64_t drain_interval_ms = 100;      // longest wait before events are read
  LoadOptions load;
  SeriesBudget series;
  BasicAuth metrics_auth;
  DestinationLabel destination_label = DestinationLabel::kName;
  std::vector<std::string> redact_patterns;
  std::vector<ToolSpec> tools;  // from the file; merged over the built-ins
  std::string proc_root = "/proc";
  // egressd run's kernel state across restarts (kernel/pinned_state.h).
  struct State {
    bool pin = true;
    std::string instance = "default";
    bool fresh = false;
  } state;
};

// Throws ConfigError unless name can name an instance: 1 to 64 of
// [A-Za-z0-9_-].
void check_instance_name(const std::string& name, const std::string& what);


// What the pipeline takes from the configuration. The pinned state is egressd
// run's alone: pipeline_options leaves it out, run_options puts it in.
PipelineOptions pipeline_options(const Config& cfg);
PipelineOptions run_options(const Config& cfg);

// Reads and validates a YAML file over cfg. Throws ConfigError.
void load_config_file(const std::string& path, Config& cfg);
// Same, from text (tests); name is used in messages.
void load_config_text(const std::string& text, const std::string& name, Config& cfg);

}  // namespace egressd

// Every metric egressd exposes: the one list docs/METRICS.md mirrors and the
// tests check. Names are a contract: change them only with a major version.
#pragma once

#include <array>
#include <string_view>

namespace egressd {

enum class MetricKind { kCounter, kGauge };

struct MetricSpec {
  std::string_view name;
  MetricKind kind;
  std::string_view help;
  std::string_view labels;  // comma-separated, for docs and tests
};

inline constexpr std::string_view kFlowLabels = "tool,binary,destination,port,transport";

inline constexpr std::array kMetricCatalog = {
    MetricSpec{"egressd_sent_bytes_total", MetricKind::kCounter,
               "Bytes sent by applications (socket send calls), per sender and destination.",
               kFlowLabels},
    MetricSpec{"egressd_send_calls_total", MetricKind::kCounter,
               "Successful socket send calls, per sender and destination.", kFlowLabels},
    MetricSpec{"egressd_wire_sent_bytes_total", MetricKind::kCounter,
               "Bytes of IP packets that left through the sockets, headers and retransmissions included.",
               kFlowLabels},
    MetricSpec{"egressd_wire_sent_packets_total", MetricKind::kCounter,
               "IP packets that left through the sockets.", kFlowLabels},
    MetricSpec{"egressd_connections_total", MetricKind::kCounter,
               "Connection attempts by result (ok, refused, timeout, denied, error).",
               "tool,binary,destination,port,transport,result"},
    MetricSpec{"egressd_udp_connects_unsent_total", MetricKind::kCounter,
               "UDP sockets connected and closed or connected again without a send, per tool: getaddrinfo's "
               "source-address probes. Not in egressd_connections_total.",
               "tool"},
    MetricSpec{"egressd_unexpected_flows_total", MetricKind::kCounter,
               "Flows of a tool to a destination outside the tool's expected list.", kFlowLabels},
    MetricSpec{"egressd_dns_queries_total", MetricKind::kCounter,
               "DNS questions sent, per asking process's tool and binary and per resolver.", kFlowLabels},
    MetricSpec{"egressd_inbound_sent_bytes_total", MetricKind::kCounter,
               "Bytes local servers sent on connections they accepted (not egress: in no other flow metric), per "
               "server and the port it accepted on.",
               "tool,binary,port,transport"},
    MetricSpec{"egressd_parse_failures_total", MetricKind::kCounter,
               "Copied payloads that looked like DNS, TLS or HTTP but did not parse, by parser.", "parser"},
    MetricSpec{"egressd_build_info", MetricKind::kGauge, "Always 1; the agent's version.", "version"},
    MetricSpec{"egressd_kernel_hook_info", MetricKind::kGauge,
               "Always 1; the kernel hooks egressd uses on this kernel, per job (bytes, connects, ...).", "job,hook"},
    MetricSpec{"egressd_kernel_hook_refused_info", MetricKind::kGauge,
               "Always 1; each better way of doing a job that this kernel refused (verifier or attach), with its "
               "reason.",
               "job,hook,reason"},
    MetricSpec{"egressd_events_lost_total", MetricKind::kCounter,
               "Kernel events lost (ring buffer full) or rejected by the decoder, by reason.", "reason"},
    MetricSpec{"egressd_kernel_map_full_total", MetricKind::kCounter,
               "Kernel map inserts that failed because the map was full, by map.", "map"},
    MetricSpec{"egressd_truncated_total", MetricKind::kCounter,
               "Executable paths or command lines cut to the kernel's copy limit, by field.", "field"},
    MetricSpec{"egressd_kernel_read_failures_total", MetricKind::kCounter,
               "Kernel-side reads of process memory that failed.", ""},
    MetricSpec{"egressd_ringbuf_events_total", MetricKind::kCounter,
               "Events read from the kernel ring buffer, by type.", "type"},
    MetricSpec{"egressd_open_flows", MetricKind::kGauge, "Flows the agent is tracking now.", ""},
    MetricSpec{"egressd_processes", MetricKind::kGauge, "Processes the agent is tracking now.", ""},
    MetricSpec{"egressd_process_map_entries", MetricKind::kGauge,
               "Entries in the kernel process map (capacity in egressd_process_map_capacity).", ""},
    MetricSpec{"egressd_process_map_capacity", MetricKind::kGauge, "Size of the kernel process map.", ""},
    MetricSpec{"egressd_flow_map_entries", MetricKind::kGauge,
               "Entries in the kernel flow_extra map at the last poll (capacity in egressd_flow_map_capacity).", ""},
    MetricSpec{"egressd_flow_map_capacity", MetricKind::kGauge, "Size of the kernel flow_extra map.", ""},
    MetricSpec{"egressd_bpf_program_runs_total", MetricKind::kCounter,
               "Runs of each BPF program, counted by the kernel while kernel.bpf_stats_enabled=1.", "program"},
    MetricSpec{"egressd_bpf_program_run_seconds_total", MetricKind::kCounter,
               "Time spent in each BPF program, counted by the kernel while kernel.bpf_stats_enabled=1.", "program"},
    MetricSpec{"egressd_log_lines_total", MetricKind::kCounter, "Event log lines written.", ""},
    MetricSpec{"egressd_log_write_failures_total", MetricKind::kCounter,
               "Event log lines that could not be written (disk full, I/O error).", ""},
    MetricSpec{"egressd_log_dropped_total", MetricKind::kCounter,
               "Event log lines dropped because the writer queue was full (disk too slow).", ""},
    MetricSpec{"egressd_log_reopened_total", MetricKind::kCounter,
               "Times the event log file (or its directory) was found removed while egressd wrote it, and made again.",
               ""},
    MetricSpec{"egressd_clock_steps_total", MetricKind::kCounter,
               "Times the wall clock was stepped by a second or more while egressd ran; later events carry the new time.",
               ""},
    MetricSpec{"egressd_checkpoint_failures_total", MetricKind::kCounter,
               "Metric state that could not be written to the pinned state: part=totals, checkpoints (a restarted "
               "agent would start from 0); part=ledger, flow counts (they would not survive a kill); part=processes, exec records (a restarted agent may not name those processes).",
               "part"},
    MetricSpec{"egressd_pinned_discarded_flows", MetricKind::kGauge,
               "Open flows the pinned state this agent discarded held: their counts since the earlier agent's last "
               "read are lost (0 unless egressd_pinned_state_info{state=\"discarded\"}).",
               ""},
    MetricSpec{"egressd_pinned_state_info", MetricKind::kGauge,
               "1 for how this agent's kernel state began: new, adopted (from the agent before it), handed-over (from an agent of another build), discarded "
               "(the pinned state could not be adopted), unavailable (bpffs cannot hold pins), off.",
               "state"},
    MetricSpec{"egressd_scrape_duration_seconds", MetricKind::kGauge,
               "How long the previous scrape took to collect.", ""},
    MetricSpec{"egressd_series", MetricKind::kGauge, "Label sets in the per-flow metrics.", ""},
    MetricSpec{"egressd_series_folded_total", MetricKind::kCounter,
               "Flows counted under destination=\"other\" (or tool=\"other\") because a series budget was full.", ""},
    MetricSpec{"egressd_series_expired_total", MetricKind::kCounter,
               "Per-flow series dropped after metrics.series_idle_seconds without traffic.", ""},
    MetricSpec{"egressd_metrics_connections_rejected_total", MetricKind::kCounter,
               "Connections to the metrics endpoint closed or refused by a limit (per_client_cap, total_cap, "
               "header_timeout, too_large, bad_request).",
               "reason"},
};

}  // namespace egressd

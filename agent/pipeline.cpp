#include "pipeline.h"

#include <type_traits>
#include <variant>

namespace egressd {

void dispatch_event(const Event& ev, ProcessTable& procs, FlowTable& flows) {
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, ExecRecord>) {
          procs.on_exec(e);
        } else if constexpr (std::is_same_v<T, fork_event>) {
          procs.on_fork(e);
        } else if constexpr (std::is_same_v<T, exit_event>) {
          procs.on_exit({e.proc.tgid, e.proc.start_ns}, e.hdr.ts_boot_ns);
        } else if constexpr (std::is_same_v<T, connect_event>) {
          flows.on_connect(e);
        } else if constexpr (std::is_same_v<T, connect_result_event>) {
          flows.on_connect_result(e);
        } else if constexpr (std::is_same_v<T, sock_close_event>) {
          flows.on_close(e);
        } else if constexpr (std::is_same_v<T, PayloadRecord>) {
          flows.on_payload(e);
        }
      },
      ev);
}

size_t poll_kernel_counters(BpfPrograms& bpf, FlowTable& flows, bool live_sockets) {
  if (live_sockets) flows.on_live_sockets(bpf.live_sockets());
  auto extra = bpf.extra_flows();
  auto ended = flows.on_extra_flows(extra);
  bpf.delete_extra_flows(ended);
  return extra.size();
}

}  // namespace egressd

// What the agent and egressd trace share between the ring buffer and their
// outputs: handing each decoded event to the process and flow tables, and
// reading the counters the kernel keeps in maps.
#pragma once

#include <cstddef>

#include "bpf_loader.h"
#include "event_decoder.h"
#include "flow_table.h"
#include "process_table.h"

namespace egressd {

// Applies one kernel event to the tables.
void dispatch_event(const Event& ev, ProcessTable& procs, FlowTable& flows);

// Reads flow_extra (and, with live_sockets, every open socket's counters),
// ends the flows whose socket closed and deletes their entries from the
// kernel map. Returns the number of flow_extra entries read.
size_t poll_kernel_counters(BpfPrograms& bpf, FlowTable& flows, bool live_sockets);

}  // namespace egressd

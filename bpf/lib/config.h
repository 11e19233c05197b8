/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Load-time switches: const volatile rodata the agent sets in the skeleton
 * before it loads the object (agent/bpf_loader.cpp). The verifier sees them
 * as constants and drops the branches they turn off.
 */
#ifndef EGRESSD_LIB_CONFIG_H
#define EGRESSD_LIB_CONFIG_H

#include "vmlinux.h"

/* Wake the agent only when the bytes waiting in the ring reach this many (and
 * each further multiple of it; lib/emit.h wake_flags): it drains on a timer
 * otherwise, so a busy machine costs one wakeup per batch. 0: every record
 * wakes it (egressd trace). */
const volatile __u64 ringbuf_wakeup_bytes = 256 * 1024;

/* egressd trace loads this object with trace_mode set: connection, close and
 * payload events are then emitted only for processes flagged PROC_F_TRACED
 * (or PROC_F_UNDECIDED: exec'd, not yet judged by the tracer), so what it
 * does not follow never reaches the ring buffer. With trace_decide unset
 * (trace -- CMD, trace --pid) following is pure inheritance: execs stay
 * undecided-free and process events too are emitted only for followed ones. */
const volatile __u8 trace_mode = 0;
const volatile __u8 trace_decide = 0;

/*
 * Where per-socket state lives. 0: sk_storage, freed with the socket. 1: the
 * sk_flows_hash map, keyed by socket cookie, for kernels whose tracing
 * programs may not use sk_storage (before 5.11); sock_release deletes the
 * entry, and the agent reads live counters from the map. The verifier drops
 * the branch not taken, so each kernel sees only helpers it has.
 * workaround: hash_store
 */
const volatile __u8 sock_state_hash = 0;
/* With the hash store: tracing programs make a socket's cookie themselves
 * (bpf_get_socket_cookie on a struct sock, 5.12+; not from kprobes), so a
 * socket that predates the agent is found at its first send.
 * workaround: tracing_cookie */
const volatile __u8 tracing_cookie = 0;

/* The generation these programs count for (lib/generation.h). */
const volatile __u32 my_generation = 0;

#endif /* EGRESSD_LIB_CONFIG_H */

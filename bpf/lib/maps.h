/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The maps the programs share, in the object's order. Two maps live with
 * their only user: path_scratch in lib/path_walk.h, kprobe_send_sk in
 * progs/bytes.bpf.h. The agent reads and sizes them by these names through
 * the skeleton.
 */
#ifndef EGRESSD_LIB_MAPS_H
#define EGRESSD_LIB_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "events.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20); /* resized by the agent */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct proc_state);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_flow);
} sk_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536); /* resized by the agent */
	__type(key, __u64);
	__type(value, struct sock_flow);
} sk_flows_hash SEC(".maps");

/* A zeroed entry for sk_flows_hash inserts (too large to build on the stack
 * in every program that creates state). */
const struct sock_flow zero_flow = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_counters);
} flow_extra SEC(".maps");

/* Destination named by the last sendto/sendmsg on a thread (key: tid). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct pending_dst);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KSTAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} kstats SEC(".maps");

/* Which generation of programs counts (lib/generation.h): pinned with the
 * state, switched by the agent that takes over from another build. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} generation SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_event);
} exec_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct payload_event);
} payload_scratch SEC(".maps");

#endif /* EGRESSD_LIB_MAPS_H */

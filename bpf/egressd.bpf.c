// SPDX-License-Identifier: GPL-2.0-only
/*
 * egressd kernel side: process identity, socket ownership, connection
 * outcomes and per-socket byte counters. Counting happens here, in maps;
 * the ring buffer carries only rare events (exec, fork, exit, connect,
 * connect result, close). See docs/ARCHITECTURE.md for why each hook.
 *
 * The one compilation unit of the one object (skeleton egressd_bpf). The
 * helper layers are in lib/, the programs in progs/, one header per hook
 * family; kernel workarounds are listed in lib/workarounds.h. The programs
 * appear in the object in the order they are included here, and libbpf
 * loads them in that order: the live-counter iterators must come first.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "events.h"
#include "lib/consts.h"
#include "lib/workarounds.h"

char LICENSE[] SEC("license") = "GPL";

/* Helper layers, each on the ones above it. */
#include "lib/config.h"      /* load-time switches (rodata) */
#include "lib/maps.h"        /* shared maps */
#include "lib/kstats.h"      /* health counters */
#include "lib/path_walk.h"   /* executable path walk */
#include "lib/state_store.h" /* where socket state lives */
#include "lib/procs.h"       /* process identity, procs map, trace filter */
#include "lib/emit.h"        /* ring-buffer records */
#include "lib/sock_flow.h"   /* a new socket's state */
#include "lib/exec_record.h" /* exec records */

/* Programs, by hook family, in object order. */
#include "progs/live_counters.bpf.h"     /* iter/task_file, iter/bpf_sk_storage_map: first */
#include "progs/process.bpf.h"           /* tp_btf/sched_process_exec,fork,exit */
#include "progs/sockets.bpf.h"           /* cgroup/connect4,6, sendmsg4,6, sock_create */
#include "progs/bytes.bpf.h"             /* tp_btf/sock_send_length; fexit, kprobe fallbacks */
#include "progs/outcomes.bpf.h"          /* tp_btf/inet_sock_set_state, cgroup/sock_release */
#include "progs/packets.bpf.h"           /* cgroup_skb/egress,ingress */
#include "progs/running_processes.bpf.h" /* iter/task */

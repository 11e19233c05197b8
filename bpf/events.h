/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Everything that crosses the kernel/user boundary: ring-buffer events, map
 * keys and values, counters. Fixed-width types only, explicit padding, and a
 * size assertion per struct so a layout change cannot go unnoticed on either
 * side. Included by the BPF programs (after vmlinux.h) and by the agent.
 */
#ifndef EGRESSD_EVENTS_H
#define EGRESSD_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define EGRESSD_PATH_MAX 4096
#define EGRESSD_ARGS_MAX 4096
#define EGRESSD_FILENAME_MAX 512
#define EGRESSD_COMM_LEN 16

/* Every ring-buffer record starts with this header. */
struct event_header {
	__u16 type; /* enum event_type */
	__u16 size; /* whole record, header included */
	__u32 cpu;
	__u64 ts_boot_ns; /* bpf_ktime_get_boot_ns() */
};

enum event_type {
	EVENT_EXEC = 1,
	EVENT_FORK = 2,
	EVENT_EXIT = 3,
	EVENT_CONNECT = 4,        /* connect() attempt seen in process context */
	EVENT_CONNECT_RESULT = 5, /* outcome of an attempt */
	EVENT_SOCK_CLOSE = 6,     /* socket released, final counters */
	EVENT_PAYLOAD = 7,        /* first bytes of a TCP flow, or a DNS message */
	EVENT_TYPE_MAX,
};

/* Identity of a process lifetime: tgid alone is reused, start time is not.
 * exec_id tells the programs one process ran apart: the low bits of the
 * kernel's task->self_exec_id, which each execve increments and threads and
 * children inherit. */
struct proc_ident {
	__u32 tgid;
	__u32 exec_id;
	__u64 start_ns; /* task->group_leader->start_boottime */
};

/*
 * EXEC: the executable path resolved in the kernel (dentry + mount walk of
 * bprm->file), the path given to execve (bprm->filename: the script for
 * interpreted programs), and argv as NUL-separated bytes read from the new mm.
 * data[] holds exe, then filename, then args, lengths as given.
 */
struct exec_event {
	struct event_header hdr;
	struct proc_ident proc;
	struct proc_ident parent;
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;
	char comm[EGRESSD_COMM_LEN];
	__u16 exe_len;
	__u16 filename_len;
	__u16 args_len;
	__u16 flags; /* EXEC_F_* */
	__u32 tool_id; /* the kernel's tag (inherited at fork), 0 if none */
	__u32 exec_gen; /* trace_mode: the process's exec count (PROC_GEN_SHIFT) */
	char data[EGRESSD_PATH_MAX + EGRESSD_FILENAME_MAX + EGRESSD_ARGS_MAX];
};

#define EXEC_F_EXE_TRUNCATED (1 << 0)
#define EXEC_F_ARGS_TRUNCATED (1 << 1)
#define EXEC_F_FROM_ITER (1 << 2) /* already running when the agent started */
/* Executed from a file with no place in any directory tree (memfd_create, an
 * anonymous file): its path is "/NAME (deleted)", as /proc/PID/exe says. */
#define EXEC_F_FILELESS (1 << 3)

/* Bytes of an exec_event before its variable part. */
#define EXEC_EVENT_FIXED_SIZE 96

struct fork_event {
	struct event_header hdr;
	struct proc_ident child;
	struct proc_ident parent;
	__u32 uid;
	__u32 tool_id; /* what the kernel gave the child at fork */
	__u64 cgroup_id;
	char comm[EGRESSD_COMM_LEN];
};

struct exit_event {
	struct event_header hdr;
	struct proc_ident proc;
	__s32 exit_code;
	__u32 _pad;
};

/* Value of the procs map (key: tgid), kept by exec/fork/exit in the kernel.
 * The agent sets tool_id when it recognises a tool; fork copies it to the
 * child unless PROC_F_NO_FOLLOW is set, so a child that lives 1 ms is tagged. */
struct proc_state {
	__u64 start_ns;
	__u32 flags;   /* PROC_F_* */
	__u32 tool_id; /* 0: none */
};

#define PROC_F_NO_FOLLOW (1 << 0) /* the tool's children are not the tool */
/* egressd trace only (trace_mode): the process is followed, and so is every
 * process it starts; or it exec'd and the tracer has not decided yet. */
#define PROC_F_TRACED (1 << 1)
#define PROC_F_UNDECIDED (1 << 2)
/* Bits 16-31 of proc_state.flags count the process's execs (trace_mode), so a
 * tracer's decision about one exec never lands on a later one. */
#define PROC_GEN_SHIFT 16

/* Address in network byte order; IPv4 lives in the first 4 bytes. */
struct flow_addr {
	__u8 addr_be[16];
	__u16 port; /* host byte order: converted once, in the BPF program */
	__u16 family; /* AF_INET, AF_INET6, AF_PACKET, or 0 when unknown */
	__u32 _pad;
};

/*
 * Per-socket state, stored in sk_storage. Created at the first connect,
 * sendmsg or send seen on the socket (or, for a socket a local server
 * accepted, when its connection is established). The owner is the process
 * image that did that first operation; bytes another process sends on the
 * same socket (an inherited descriptor), or the owner after an execve, are
 * counted per sender in the flow_extra map.
 */
struct sock_flow {
	__u64 cookie;
	struct proc_ident owner;
	struct flow_addr dst;
	__u64 created_ns;
	__u64 connect_ns;
	__u64 bytes;       /* bytes sent by the owner to dst (sock_send_length) */
	__u64 sends;       /* successful send calls counted in bytes */
	__u64 wire_bytes;  /* bytes of packets leaving through this socket */
	__u64 wire_packets;
	__u16 sk_family;
	__u16 sk_type;
	__u16 sk_protocol;
	__u8 connect_state; /* enum connect_state */
	__u8 flags;         /* SOCK_F_* */
	__u32 owner_uid;
	__u16 local_port; /* SOCK_F_INBOUND: the port the server accepted on */
	__u16 _pad;
};

/* Components of an executable path walked on kernels without bpf_loop (a
 * loop the verifier follows step by step); deeper paths are cut. */
#define EGRESSD_PATH_DEPTH_BOUNDED 32

/* sock_state_hash: an AF_PACKET socket's key (and cookie) is this bit with
 * its inode number: no cgroup hook sees it, and tracing programs on the
 * kernels that need the hash store cannot make it a cookie. */
#define SOCK_KEY_PACKET (1ULL << 63)

#define SOCK_F_UNCONNECTED (1 << 0) /* sends name their destination (sendto) */
#define SOCK_F_ADOPTED (1 << 1)     /* first seen at a send: predates agent or accepted */
#define SOCK_F_CONNECTED (1 << 2)   /* connect() gave it a destination */
#define SOCK_F_EXTRA (1 << 3)       /* some bytes are counted in flow_extra */
#define SOCK_F_NO_RELEASE (1 << 4)  /* family without a release hook: all bytes in flow_extra */
#define SOCK_F_PEEK (1 << 5)        /* TCP: copy the first payload that leaves (SNI, HTTP) */
#define SOCK_F_DNS (1 << 6)         /* talks to port 53: copy DNS queries and answers */
#define SOCK_F_INBOUND (1 << 7)     /* accepted by a local server: not egress */

enum connect_state {
	CONNECT_NONE = 0,
	CONNECT_PENDING = 1,
	CONNECT_DONE = 2,
};

enum connect_result {
	CONNECT_RESULT_OK = 1,
	CONNECT_RESULT_REFUSED = 2,
	CONNECT_RESULT_TIMEOUT = 3,
	CONNECT_RESULT_DENIED = 4,
	CONNECT_RESULT_ERROR = 5,
	/* A UDP socket connected and released (or connected again) without a
	 * send: getaddrinfo's source-address probe. Not a connection. */
	CONNECT_RESULT_UNSENT = 6,
};

/* Key of bytes that do not belong to a socket's primary flow: unconnected
 * UDP/raw destinations, and senders other than the socket's owner. */
struct flow_key {
	__u64 cookie;
	struct proc_ident sender;
	struct flow_addr dst;
};

struct flow_counters {
	__u64 bytes;
	__u64 sends;
	__u64 first_ns;
	__u64 last_ns;
	__u32 uid;
	__u16 sk_family;
	__u16 sk_type;
	__u16 sk_protocol;
	__u16 _pad[3];
};

struct connect_event {
	struct event_header hdr;
	__u64 cookie;
	struct proc_ident proc;
	__u32 tid;
	__u32 uid;
	struct flow_addr dst;
	__u16 sk_family;
	__u16 sk_type;
	__u16 sk_protocol;
	__u16 _pad;
	__u64 cgroup_id;
};

struct connect_result_event {
	struct event_header hdr;
	__u64 cookie;
	__u32 result; /* enum connect_result */
	__s32 error;  /* sk_err, positive errno, 0 on success */
};

enum close_reason {
	CLOSE_RELEASE = 1,   /* the socket was released */
	CLOSE_RECONNECT = 2, /* connect() to a new destination ends the previous flow */
};

struct sock_close_event {
	struct event_header hdr;
	__u32 reason; /* enum close_reason */
	__u32 _pad;
	struct sock_flow flow;
};

#define EGRESSD_PAYLOAD_MAX 2048

enum payload_kind {
	PAYLOAD_TCP_FIRST = 1, /* first bytes a TCP client sent: TLS ClientHello, HTTP request */
	PAYLOAD_DNS_QUERY = 2, /* a DNS message leaving (UDP payload, or TCP segment) */
	PAYLOAD_DNS_ANSWER = 3,
};

/* Copied from packets (cgroup_skb), attributed through the socket's state. */
struct payload_event {
	struct event_header hdr;
	__u64 cookie;
	struct proc_ident owner;
	struct flow_addr peer; /* destination of egress, source of ingress */
	__u16 kind;            /* enum payload_kind */
	__u16 len;             /* bytes in data */
	__u16 protocol;        /* IPPROTO_TCP or IPPROTO_UDP */
	__u16 _pad;
	__u32 orig_len;        /* payload bytes in the packet */
	__u32 _pad2;
	__u8 data[EGRESSD_PAYLOAD_MAX];
};

#define PAYLOAD_EVENT_FIXED_SIZE 80

/* Pending destination of the next send on this thread (unconnected UDP). */
struct pending_dst {
	__u64 cookie;
	struct flow_addr dst;
};

/* Counters of the kernel side's own health (per-CPU array index). */
enum egressd_kstat {
	KSTAT_RINGBUF_FULL = 0,     /* an event could not be reserved: lost */
	KSTAT_PROC_MAP_FULL,        /* process table full: identity unknown */
	KSTAT_FLOW_MAP_FULL,        /* flow_extra full: bytes folded into primary */
	KSTAT_SK_STORAGE_FAIL,      /* no per-socket state could be created */
	KSTAT_PATH_TRUNCATED,       /* executable path deeper than the walk */
	KSTAT_ARGS_TRUNCATED,       /* command line longer than the copy */
	KSTAT_READ_FAIL,            /* bpf_probe_read_* failed */
	KSTAT_MAX,
};

/*
 * Layout checks, written once for both languages: the BPF programs (C) and
 * the agent (C++) fail to build if a struct changes size or shape.
 */
#ifdef __cplusplus
#include <cstddef>
#include <type_traits>
#define EGRESSD_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define EGRESSD_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

EGRESSD_STATIC_ASSERT(sizeof(struct event_header) == 16, "event_header layout");
EGRESSD_STATIC_ASSERT(sizeof(struct proc_ident) == 16, "proc_ident layout");
EGRESSD_STATIC_ASSERT(sizeof(struct flow_addr) == 24, "flow_addr layout");
EGRESSD_STATIC_ASSERT(sizeof(struct sock_flow) == 112, "sock_flow layout");
EGRESSD_STATIC_ASSERT(sizeof(struct flow_key) == 48, "flow_key layout");
EGRESSD_STATIC_ASSERT(sizeof(struct flow_counters) == 48, "flow_counters layout");
EGRESSD_STATIC_ASSERT(sizeof(struct connect_event) == 88, "connect_event layout");
EGRESSD_STATIC_ASSERT(sizeof(struct fork_event) == 80, "fork_event layout");
EGRESSD_STATIC_ASSERT(sizeof(struct exit_event) == 40, "exit_event layout");
EGRESSD_STATIC_ASSERT(sizeof(struct connect_result_event) == 32, "connect_result_event layout");
EGRESSD_STATIC_ASSERT(sizeof(struct sock_close_event) == 136, "sock_close_event layout");
EGRESSD_STATIC_ASSERT(sizeof(struct proc_state) == 16, "proc_state layout");
EGRESSD_STATIC_ASSERT(sizeof(struct pending_dst) == 32, "pending_dst layout");
EGRESSD_STATIC_ASSERT(__builtin_offsetof(struct payload_event, data) == PAYLOAD_EVENT_FIXED_SIZE,
		      "payload_event layout");
EGRESSD_STATIC_ASSERT(__builtin_offsetof(struct exec_event, data) == EXEC_EVENT_FIXED_SIZE,
		      "exec_event layout");

#ifdef __cplusplus
/*
 * Map keys are hashed and compared as bytes, in the kernel and in the agent
 * (FlowTable keys extra flows by them), so a key may hold no implicit
 * padding: equal keys must be equal bytes. The only struct key is flow_key
 * (flow_extra), with the structs it is made of; the other hash and LRU maps
 * are keyed by __u32 (procs, pending, kprobe_send_sk) or __u64
 * (sk_flows_hash). Padding is spelled as _pad fields, zeroed where a key is
 * built (count_extra's = {}; the agent only reads keys back from the map).
 */
static_assert(std::has_unique_object_representations_v<struct proc_ident>, "proc_ident: implicit padding");
static_assert(std::has_unique_object_representations_v<struct flow_addr>, "flow_addr: implicit padding");
static_assert(std::has_unique_object_representations_v<struct flow_key>, "flow_key: implicit padding in a map key");
#endif

#endif /* EGRESSD_EVENTS_H */

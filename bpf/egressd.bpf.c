// SPDX-License-Identifier: GPL-2.0-only
/*
 * egressd kernel side: process identity, socket ownership, connection
 * outcomes and per-socket byte counters. Counting happens here, in maps;
 * the ring buffer carries only rare events (exec, fork, exit, connect,
 * connect result, close). See docs/ARCHITECTURE.md for why each hook.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "events.h"

#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOCK_RAW 3
#define IPPROTO_ICMP 1
#define IPPROTO_ICMPV6 58
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define DNS_PORT 53
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ECONNREFUSED 111
#define ETIMEDOUT 110
#define EPERM 1
#define EACCES 13

#define PATH_DEPTH_MAX 64
#define NAME_MASK 255

char LICENSE[] SEC("license") = "GPL";

/* Wake the agent only once this many bytes wait in the ring: it drains on a
 * timer otherwise, so a busy machine costs one wakeup per batch. */
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
 */
const volatile __u8 sock_state_hash = 0;
/* With the hash store: tracing programs make a socket's cookie themselves
 * (bpf_get_socket_cookie on a struct sock, 5.12+; not from kprobes), so a
 * socket that predates the agent is found at its first send. */
const volatile __u8 tracing_cookie = 0;

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

/* Where the executable path walk is. It lives in the scratch map, not on the
 * stack: values read back from a map are not tracked exactly, so the
 * verifier sees one state per step of the bounded walk instead of one per
 * combination of component lengths (which no budget covers). */
struct path_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	__u32 off; /* the path so far is data[off, EGRESSD_PATH_MAX) */
	__u32 complete;
};

struct path_buf {
	char data[EGRESSD_PATH_MAX + NAME_MASK + 1];
	struct path_walk w;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_buf);
} path_scratch SEC(".maps");

/*
 * The live-counter iterators come first in the object: libbpf loads programs
 * in this order, and these are the ones a kernel build may refuse (the loader
 * then loads again without them), so a refusal costs little verification.
 * EGRESSD_NO_LIVE_ITERATORS leaves them out, for tools that load every
 * program of the object at once (tests/deploy/systemd_sandbox_test.sh).
 */
#ifndef EGRESSD_NO_LIVE_ITERATORS
/*
 * Live sockets and their counters, read by the agent on its poll and at
 * shutdown. Walks every open file of every task, so it sees sockets in all
 * network namespaces and of every family (iter/tcp and iter/udp see one
 * namespace). A socket shared by several descriptors is written once per
 * descriptor: the agent dedupes by cookie.
 */
SEC("iter/task_file")
int dump_sock_files(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct socket *sock;
	struct sock_flow *f;

	if (!file)
		return 0;
	sock = bpf_sock_from_file(file);
	if (!sock || !sock->sk)
		return 0;
	f = bpf_sk_storage_get(&sk_flows, sock->sk, NULL, 0);
	if (f)
		bpf_seq_write(ctx->meta->seq, f, sizeof(*f));
	return 0;
}

/*
 * Live counters the second way: every entry of sk_flows, by the map's own
 * iterator (kernel 5.9+). Used where the verifier refuses dump_sock_files (on
 * some builds sock->sk from bpf_sock_from_file() is an untrusted pointer,
 * which bpf_sk_storage_get does not take). Each socket comes once, whatever
 * holds it. A socket whose file is released (sock_release has ended its flow)
 * keeps its storage until the kernel frees it, after FIN_WAIT or TIME_WAIT:
 * those are skipped, as dump_sock_files skips them by never meeting their file.
 */
SEC("iter/bpf_sk_storage_map")
int dump_sk_storage(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct sock_flow *f = ctx->value;
	struct sock *sk = ctx->sk;

	if (!sk || !f || !sk->sk_socket)
		return 0;
	bpf_seq_write(ctx->meta->seq, f, sizeof(*f));
	return 0;
}
#endif /* EGRESSD_NO_LIVE_ITERATORS */

static __always_inline void kstat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&kstats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

/* The hash store's entry for key (a socket cookie, or SOCK_KEY_PACKET | inode
 * for an AF_PACKET socket, which has no cookie on kernels that need this). */
static __always_inline struct sock_flow *hash_state(__u64 key, bool create)
{
	struct sock_flow *f;

	if (!key)
		return NULL;
	f = bpf_map_lookup_elem(&sk_flows_hash, &key);
	if (f || !create)
		return f;
	bpf_map_update_elem(&sk_flows_hash, &key, &zero_flow, BPF_NOEXIST);
	f = bpf_map_lookup_elem(&sk_flows_hash, &key);
	if (!f)
		kstat_inc(KSTAT_SK_STORAGE_FAIL);
	return f;
}

/* The socket storage entry of sk (a struct bpf_sock or a BTF struct sock). */
static __always_inline struct sock_flow *storage_state(void *sk, bool create)
{
	struct sock_flow *f;

	if (!create)
		return bpf_sk_storage_get(&sk_flows, sk, NULL, 0);
	f = bpf_sk_storage_get(&sk_flows, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (!f)
		kstat_inc(KSTAT_SK_STORAGE_FAIL);
	return f;
}

/* Socket state in a cgroup program: ctx is the program's context, which
 * bpf_get_socket_cookie takes, and sk its socket. */
static __always_inline struct sock_flow *state_of(void *ctx, struct bpf_sock *sk, bool create)
{
	if (sock_state_hash)
		return hash_state(bpf_get_socket_cookie(ctx), create);
	return storage_state(sk, create);
}

/* The hash store's key for a socket met in a tracing program: the cookie a
 * cgroup program made, else one made here where tracing programs may
 * (tracing_cookie, 5.12+), else 0 until a cgroup program makes one. AF_PACKET,
 * which no cgroup hook sees, is keyed by its inode number. */
static __always_inline __u64 hash_key_of(struct sock *sk)
{
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);

	if (cookie)
		return cookie;
	if (BPF_CORE_READ(sk, __sk_common.skc_family) != AF_PACKET)
		return tracing_cookie ? bpf_get_socket_cookie(sk) : 0;
	return SOCK_KEY_PACKET | (__u32)BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
}

/* Socket state in a tracing program (a BTF struct sock). */
static __always_inline struct sock_flow *state_of_sk(struct sock *sk, bool create)
{
	if (sock_state_hash)
		return hash_state(hash_key_of(sk), create);
	return storage_state(sk, create);
}

/* Whether events about process tgid go out (always, outside trace_mode). A
 * process missing from the map (it predates the tracer's task walk, or the
 * map is full) goes out too: the tracer judges it in user space. */
static __always_inline bool traced(__u32 tgid)
{
	struct proc_state *st;

	if (!trace_mode)
		return true;
	st = bpf_map_lookup_elem(&procs, &tgid);
	return !st || (st->flags & (PROC_F_TRACED | PROC_F_UNDECIDED));
}

static __always_inline __u64 ringbuf_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= ringbuf_wakeup_bytes ?
		       BPF_RB_FORCE_WAKEUP :
		       BPF_RB_NO_WAKEUP;
}

static __always_inline void emit(void *data, __u64 size)
{
	if (bpf_ringbuf_output(&events, data, size, ringbuf_flags()))
		kstat_inc(KSTAT_RINGBUF_FULL);
}

static __always_inline void header_init(struct event_header *h, __u16 type, __u16 size)
{
	h->type = type;
	h->size = size;
	h->cpu = bpf_get_smp_processor_id();
	h->ts_boot_ns = bpf_ktime_get_boot_ns();
}

static __always_inline __u64 task_start_ns(struct task_struct *task)
{
	return BPF_CORE_READ(task, group_leader, start_boottime);
}

static __always_inline void current_ident(struct proc_ident *id)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	id->tgid = bpf_get_current_pid_tgid() >> 32;
	id->start_ns = task_start_ns(task);
}

/* One step of the walk: prepend a component, or cross to the parent mount.
 * ctx points to a stack slot holding the scratch buffer (bpf_loop passes
 * only stack pointers to its callback). */
static long path_step(__u32 index, void *ctx)
{
	struct path_buf *b = *(struct path_buf **)ctx;
	struct path_walk *w = &b->w;
	struct dentry *dentry = w->dentry;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);

	if (dentry == mnt_root || dentry == parent) {
		struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);

		if (dentry == mnt_root && mnt != mnt_parent) {
			w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			w->mnt = mnt_parent;
			w->vfsmnt = &mnt_parent->mnt;
			return 0;
		}
		w->complete = 1;
		return 1;
	}

	__u32 len = BPF_CORE_READ(dentry, d_name.len) & NAME_MASK;
	const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
	__u32 off = w->off;

	if (len + 2 > off) /* keep one byte for the leading '/' */
		return 1;
	off -= len;
	/* Masked again in asm, on the very register passed on: some verifiers
	 * (6.12) lose the bound of a copy clang makes before the checks above. */
	asm volatile("%[len] &= %[mask]" : [len] "+r"(len) : [mask] "i"(NAME_MASK));
	if (bpf_probe_read_kernel(&b->data[off & (EGRESSD_PATH_MAX - 1)], len, name))
		kstat_inc(KSTAT_READ_FAIL);
	off -= 1;
	b->data[off & (EGRESSD_PATH_MAX - 1)] = '/';
	w->off = off;
	w->dentry = parent;
	return 0;
}

/*
 * Walk dentries and mounts from path to the root of its mount tree, writing
 * the components backwards into a scratch buffer, then copy the result to
 * out. Returns the length written (no terminating NUL).
 */
static __always_inline __u32 resolve_path(const struct path *path, char *out, __u16 *flags, bool bounded)
{
	__u32 zero = 0, off;
	struct path_buf *b = bpf_map_lookup_elem(&path_scratch, &zero);

	if (!b)
		return 0;
	b->w.dentry = BPF_CORE_READ(path, dentry);
	b->w.vfsmnt = BPF_CORE_READ(path, mnt);
	b->w.mnt = container_of(b->w.vfsmnt, struct mount, mnt);
	b->w.off = EGRESSD_PATH_MAX;
	b->w.complete = 0;
	if (!b->w.dentry || !b->w.vfsmnt)
		return 0;

	if (bounded) {
		/* No bpf_loop (before 5.17): a loop the verifier follows. */
#pragma clang loop unroll(disable)
		for (__u32 i = 0; i < EGRESSD_PATH_DEPTH_BOUNDED; i++)
			if (path_step(i, &b))
				break;
	} else {
		bpf_loop(PATH_DEPTH_MAX, path_step, &b, 0);
	}
	if (!b->w.complete) {
		*flags |= EXEC_F_EXE_TRUNCATED;
		kstat_inc(KSTAT_PATH_TRUNCATED);
	}
	off = b->w.off;
	if (off >= EGRESSD_PATH_MAX) {
		out[0] = '/';
		return 1;
	}
	__u32 len = (EGRESSD_PATH_MAX - off) & (EGRESSD_PATH_MAX - 1);

	bpf_probe_read_kernel(out, len, &b->data[off & (EGRESSD_PATH_MAX - 1)]);
	return len;
}

/* Fill the identity part of an exec record for task; exe path from its mm. */
static __always_inline struct exec_event *exec_record(struct task_struct *task)
{
	__u32 zero = 0;
	struct exec_event *e = bpf_map_lookup_elem(&exec_scratch, &zero);
	struct task_struct *parent;

	if (!e)
		return NULL;
	e->proc.tgid = BPF_CORE_READ(task, tgid);
	e->proc.start_ns = task_start_ns(task);
	parent = BPF_CORE_READ(task, real_parent);
	e->parent.tgid = BPF_CORE_READ(parent, tgid);
	e->parent.start_ns = task_start_ns(parent);
	e->uid = BPF_CORE_READ(task, cred, uid.val);
	e->gid = BPF_CORE_READ(task, cred, gid.val);
	e->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	e->exe_len = 0;
	e->filename_len = 0;
	e->args_len = 0;
	e->flags = 0;
	e->tool_id = 0;
	e->exec_gen = 0;
	return e;
}

static __always_inline __u32 exec_size(struct exec_event *e)
{
	return EXEC_EVENT_FIXED_SIZE + (e->exe_len & (EGRESSD_PATH_MAX - 1)) +
	       (e->filename_len & (EGRESSD_FILENAME_MAX - 1)) + (e->args_len & (EGRESSD_ARGS_MAX - 1));
}

static __always_inline void procs_set(__u32 tgid, __u64 start_ns, const struct proc_state *inherit)
{
	struct proc_state st = {};

	if (inherit)
		st = *inherit;
	st.start_ns = start_ns;
	if (bpf_map_update_elem(&procs, &tgid, &st, BPF_ANY))
		kstat_inc(KSTAT_PROC_MAP_FULL);
}

static __always_inline int on_exec(struct task_struct *p, struct linux_binprm *bprm, bool bounded)
{
	struct exec_event *e = exec_record(p);
	struct proc_state *old;
	__u64 arg_start, arg_end, len;
	__u32 off;

	if (!e)
		return 0;
	e->exe_len = resolve_path(&bprm->file->f_path, e->data, &e->flags, bounded) & (EGRESSD_PATH_MAX - 1);

	off = e->exe_len & (EGRESSD_PATH_MAX - 1);
	long n = bpf_probe_read_kernel_str(&e->data[off], EGRESSD_FILENAME_MAX,
					   BPF_CORE_READ(bprm, filename));
	e->filename_len = n > 0 ? (n - 1) & (EGRESSD_FILENAME_MAX - 1) : 0;

	off += e->filename_len & (EGRESSD_FILENAME_MAX - 1);
	arg_start = BPF_CORE_READ(p, mm, arg_start);
	arg_end = BPF_CORE_READ(p, mm, arg_end);
	len = arg_end > arg_start ? arg_end - arg_start : 0;
	if (len > EGRESSD_ARGS_MAX - 1) {
		len = EGRESSD_ARGS_MAX - 1;
		e->flags |= EXEC_F_ARGS_TRUNCATED;
		kstat_inc(KSTAT_ARGS_TRUNCATED);
	}
	len &= EGRESSD_ARGS_MAX - 1;
	if (bpf_probe_read_user(&e->data[off & (EGRESSD_PATH_MAX + EGRESSD_FILENAME_MAX - 1)], len,
				(void *)arg_start)) {
		kstat_inc(KSTAT_READ_FAIL);
		len = 0;
	}
	e->args_len = len;

	old = bpf_map_lookup_elem(&procs, &e->proc.tgid);
	struct proc_state st = {};

	if (old)
		st = *old;
	e->tool_id = st.tool_id;
	if (trace_mode) {
		__u32 gen = ((st.flags >> PROC_GEN_SHIFT) + 1) & 0xffff;

		st.flags = (st.flags & 0xffff) | (gen << PROC_GEN_SHIFT);
		if (trace_decide && !(st.flags & PROC_F_TRACED))
			st.flags |= PROC_F_UNDECIDED;
		e->exec_gen = gen;
	}
	procs_set(e->proc.tgid, e->proc.start_ns, &st);
	if (trace_mode && !(st.flags & (PROC_F_TRACED | PROC_F_UNDECIDED)))
		return 0;

	__u32 size = exec_size(e);

	header_init(&e->hdr, EVENT_EXEC, size);
	emit(e, size);
	return 0;
}

/* The agent loads one of the two: with bpf_loop where the kernel has it. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return on_exec(p, bprm, false);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec_bounded, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return on_exec(p, bprm, true);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	struct fork_event e = {};
	struct proc_state *pst;

	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0; /* a new thread, not a new process */

	e.child.tgid = BPF_CORE_READ(child, tgid);
	e.child.start_ns = BPF_CORE_READ(child, start_boottime);
	e.parent.tgid = BPF_CORE_READ(parent, tgid);
	e.parent.start_ns = task_start_ns(parent);
	e.uid = BPF_CORE_READ(child, cred, uid.val);
	e.cgroup_id = BPF_CORE_READ(child, cgroups, dfl_cgrp, kn, id);
	BPF_CORE_READ_STR_INTO(&e.comm, child, comm);

	pst = bpf_map_lookup_elem(&procs, &e.parent.tgid);
	struct proc_state st = {};

	if (pst) {
		st = *pst;
		if (st.flags & PROC_F_NO_FOLLOW) { /* the tool's children are not the tool */
			st.tool_id = 0;
			st.flags &= ~PROC_F_NO_FOLLOW;
		}
	}
	e.tool_id = st.tool_id;
	procs_set(e.child.tgid, e.child.start_ns, &st);
	if (trace_mode && !trace_decide && !(st.flags & PROC_F_TRACED))
		return 0;

	header_init(&e.hdr, EVENT_FORK, sizeof(e));
	emit(&e, sizeof(e));
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *p)
{
	struct exit_event e = {};

	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0; /* other threads of the group still run */

	e.proc.tgid = BPF_CORE_READ(p, tgid);
	e.proc.start_ns = task_start_ns(p);
	e.exit_code = BPF_CORE_READ(p, exit_code);
	bool emit_it = trace_decide || traced(e.proc.tgid); /* traced(): always outside trace_mode */

	bpf_map_delete_elem(&procs, &e.proc.tgid);
	if (!emit_it)
		return 0;

	header_init(&e.hdr, EVENT_EXIT, sizeof(e));
	emit(&e, sizeof(e));
	return 0;
}

/* Sockets whose destination varies per send rather than per connect. */
static __always_inline bool sends_name_destination(__u16 family, __u16 type, __u16 protocol)
{
	if (family == AF_PACKET)
		return true;
	return type == SOCK_RAW || (type == SOCK_DGRAM && (protocol == IPPROTO_ICMP ||
							   protocol == IPPROTO_ICMPV6));
}

static __always_inline void flow_init(struct sock_flow *f, __u64 cookie, __u16 family, __u16 type,
				      __u16 protocol, __u8 flags)
{
	f->cookie = cookie;
	current_ident(&f->owner);
	f->owner_uid = (__u32)bpf_get_current_uid_gid();
	f->created_ns = bpf_ktime_get_boot_ns();
	f->sk_family = family;
	f->sk_type = type;
	f->sk_protocol = protocol;
	if (sends_name_destination(family, type, protocol))
		flags |= SOCK_F_UNCONNECTED;
	if (family == AF_PACKET)
		flags |= SOCK_F_NO_RELEASE;
	f->flags = flags;
}

/* Per-socket state for a socket seen in a cgroup sock_addr hook. */
static __always_inline struct sock_flow *flow_of_sock_addr(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct sock_flow *f;

	if (!sk)
		return NULL;
	f = state_of(ctx, sk, true);
	if (f && !f->cookie)
		flow_init(f, bpf_get_socket_cookie(ctx), sk->family, sk->type, sk->protocol, 0);
	return f;
}

/* family is a constant at each call site, so each program reads only the
 * context fields of its own family (the verifier rejects the others). */
static __always_inline void addr_from_sock_addr(struct bpf_sock_addr *ctx, __u16 family,
						struct flow_addr *a)
{
	a->family = family;
	a->port = bpf_ntohs((__u16)ctx->user_port);
	if (family == AF_INET) {
		__builtin_memset(a->addr_be, 0, sizeof(a->addr_be));
		*(__u32 *)a->addr_be = ctx->user_ip4;
	} else {
		*(__u32 *)&a->addr_be[0] = ctx->user_ip6[0];
		*(__u32 *)&a->addr_be[4] = ctx->user_ip6[1];
		*(__u32 *)&a->addr_be[8] = ctx->user_ip6[2];
		*(__u32 *)&a->addr_be[12] = ctx->user_ip6[3];
	}
}

static __always_inline void emit_close(struct sock_flow *f, __u32 reason)
{
	struct sock_close_event e = {};

	if (!traced(f->owner.tgid))
		return;
	e.reason = reason;
	e.flow = *f;
	header_init(&e.hdr, EVENT_SOCK_CLOSE, sizeof(e));
	emit(&e, sizeof(e));
}

static __always_inline void emit_result(struct sock_flow *f, __u32 result, __s32 error)
{
	struct connect_result_event e = {};

	f->connect_state = CONNECT_DONE;
	if (!traced(f->owner.tgid))
		return;
	e.cookie = f->cookie;
	e.result = result;
	e.error = error;
	header_init(&e.hdr, EVENT_CONNECT_RESULT, sizeof(e));
	emit(&e, sizeof(e));
}

static __always_inline int on_connect(struct bpf_sock_addr *ctx, __u16 family)
{
	struct sock_flow *f = flow_of_sock_addr(ctx);
	struct connect_event e = {};

	if (!f)
		return 1;
	/* A socket connected again (UDP may) starts a new flow: end the old. */
	if (f->flags & SOCK_F_CONNECTED) {
		/* Pending here: TCP never got an answer; UDP never sent. */
		if (f->connect_state == CONNECT_PENDING)
			emit_result(f, f->sk_type == SOCK_STREAM ? CONNECT_RESULT_ERROR : CONNECT_RESULT_UNSENT, 0);
		emit_close(f, CLOSE_RECONNECT);
		f->bytes = 0;
		f->sends = 0;
		f->wire_bytes = 0;
		f->wire_packets = 0;
	}
	addr_from_sock_addr(ctx, family, &f->dst);
	f->flags |= SOCK_F_CONNECTED;
	f->flags &= ~SOCK_F_UNCONNECTED;
	/* TCP: the first bytes out name the destination (TLS SNI, HTTP). */
	if (f->sk_type == SOCK_STREAM)
		f->flags |= SOCK_F_PEEK;
	if (f->dst.port == DNS_PORT)
		f->flags |= SOCK_F_DNS;
	f->connect_state = CONNECT_PENDING;
	f->connect_ns = bpf_ktime_get_boot_ns();
	if (!traced(bpf_get_current_pid_tgid() >> 32))
		return 1;

	e.cookie = f->cookie;
	current_ident(&e.proc);
	e.tid = (__u32)bpf_get_current_pid_tgid();
	e.uid = (__u32)bpf_get_current_uid_gid();
	e.dst = f->dst;
	e.sk_family = f->sk_family;
	e.sk_type = f->sk_type;
	e.sk_protocol = f->sk_protocol;
	e.cgroup_id = bpf_get_current_cgroup_id();
	header_init(&e.hdr, EVENT_CONNECT, sizeof(e));
	emit(&e, sizeof(e));
	return 1;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	return on_connect(ctx, AF_INET);
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	return on_connect(ctx, AF_INET6);
}

/* sendto/sendmsg with an address on a UDP socket: remember the destination
 * for the send that follows on this thread. */
static __always_inline int on_sendmsg(struct bpf_sock_addr *ctx, __u16 family)
{
	struct sock_flow *f = flow_of_sock_addr(ctx);
	struct pending_dst p = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (!f)
		return 1;
	f->flags |= SOCK_F_UNCONNECTED;
	p.cookie = f->cookie;
	addr_from_sock_addr(ctx, family, &p.dst);
	if (p.dst.port == DNS_PORT)
		f->flags |= SOCK_F_DNS;
	bpf_map_update_elem(&pending, &tid, &p, BPF_ANY);
	return 1;
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
	return on_sendmsg(ctx, AF_INET);
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
	return on_sendmsg(ctx, AF_INET6);
}

/*
 * Raw and ICMP sockets name their destination in each packet, and the first
 * packet leaves (cgroup_skb/egress) before the first sock_send_length: tag
 * them at creation so that packet already finds its socket's state. Other
 * sockets are tagged at their first connect, sendmsg or send, which costs
 * socket creation nothing.
 */
SEC("cgroup/sock_create")
int sock_create(struct bpf_sock *sk)
{
	struct sock_flow *f;

	if (!sends_name_destination(sk->family, sk->type, sk->protocol))
		return 1;
	f = state_of(sk, sk, true);
	if (f && !f->cookie)
		flow_init(f, bpf_get_socket_cookie(sk), sk->family, sk->type, sk->protocol, 0);
	return 1;
}

/* A socket first seen at a send: it predates the agent, or was accepted. */
static __always_inline struct sock_flow *adopt_sock(struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	struct sock_flow *f;

	if (family != AF_INET && family != AF_INET6 && family != AF_PACKET)
		return NULL;
	f = state_of_sk(sk, true);
	if (!f)
		return NULL;
	if (f->cookie)
		return f;
	/* bpf_get_socket_cookie takes a struct sock here only from 5.12 on. */
	flow_init(f, sock_state_hash ? hash_key_of(sk) : bpf_get_socket_cookie(sk), family,
		  BPF_CORE_READ_BITFIELD_PROBED(sk, sk_type),
		  BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol), SOCK_F_ADOPTED);
	if (f->flags & SOCK_F_UNCONNECTED)
		return f;
	f->dst.family = family;
	f->dst.port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET)
		*(__u32 *)f->dst.addr_be = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	else
		BPF_CORE_READ_INTO(&f->dst.addr_be, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	return f;
}

/* Bytes that are not the owner's on the socket's own destination. */
static __always_inline void count_extra(struct sock_flow *f, __u64 pid_tgid, int bytes)
{
	struct flow_key key = {};
	struct flow_counters *c;
	__u32 tid = (__u32)pid_tgid;
	__u64 now = bpf_ktime_get_boot_ns();

	key.cookie = f->cookie;
	current_ident(&key.sender);
	key.dst = f->dst;
	if (f->flags & SOCK_F_UNCONNECTED) {
		struct pending_dst *p = bpf_map_lookup_elem(&pending, &tid);

		if (p && p->cookie == f->cookie) {
			key.dst = p->dst;
			p->cookie = 0; /* consumed: a later send() uses the socket's own */
		}
	}
	c = bpf_map_lookup_elem(&flow_extra, &key);
	if (!c) {
		struct flow_counters init = {.first_ns = now,
					     .uid = (__u32)bpf_get_current_uid_gid(),
					     .sk_family = f->sk_family,
					     .sk_type = f->sk_type,
					     .sk_protocol = f->sk_protocol};

		bpf_map_update_elem(&flow_extra, &key, &init, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&flow_extra, &key);
		if (!c) {
			/* Keep the bytes, lose only the split: fold into the socket. */
			kstat_inc(KSTAT_FLOW_MAP_FULL);
			__sync_fetch_and_add(&f->bytes, bytes);
			__sync_fetch_and_add(&f->sends, 1);
			return;
		}
	}
	if (!(f->flags & SOCK_F_EXTRA))
		f->flags |= SOCK_F_EXTRA;
	__sync_fetch_and_add(&c->bytes, bytes);
	__sync_fetch_and_add(&c->sends, 1);
	c->last_ns = now;
}

/* ret bytes were sent through sk by the current task. */
static __always_inline void count_send(struct sock *sk, long ret)
{
	struct sock_flow *f;
	__u64 pid_tgid;

	if (ret <= 0 || !sk)
		return;
	f = state_of_sk(sk, false);
	if (!f) {
		f = adopt_sock(sk);
		if (!f)
			return;
	}
	pid_tgid = bpf_get_current_pid_tgid();
	if ((pid_tgid >> 32) == f->owner.tgid &&
	    !(f->flags & (SOCK_F_UNCONNECTED | SOCK_F_NO_RELEASE))) {
		__sync_fetch_and_add(&f->bytes, ret);
		__sync_fetch_and_add(&f->sends, 1);
		/* UDP has no state change to report the connect outcome. */
		if (f->connect_state == CONNECT_PENDING && f->sk_type != SOCK_STREAM)
			emit_result(f, CONNECT_RESULT_OK, 0);
		return;
	}
	count_extra(f, pid_tgid, ret);
}

/* Bytes: every send path and family passes sock_sendmsg_nosec, which fires
 * this tracepoint with what the family's sendmsg returned (Linux 6.3+). */
SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send_length, struct sock *sk, int ret, int flags)
{
	count_send(sk, ret);
	return 0;
}

/*
 * Kernels without sock_send_length (before 6.3): the same count at the return
 * of the sendmsg that sock->ops points to for the families egressd counts.
 * inet_sendmsg serves TCP, UDP, ICMP, raw and SCTP over IPv4; inet6_sendmsg
 * the same over IPv6; packet_sendmsg AF_PACKET. The agent loads these only
 * when the tracepoint is missing (bpf_program__set_autoload).
 */
/* tests/deploy loads every program of the object with bpftool, as a kernel
 * that takes the tracepoint does: it builds the object without these. */
#ifndef EGRESSD_NO_BYTES_FALLBACKS
SEC("fexit/inet_sendmsg")
int BPF_PROG(inet_sendmsg_exit, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	count_send(sock->sk, ret);
	return 0;
}

SEC("fexit/inet6_sendmsg")
int BPF_PROG(inet6_sendmsg_exit, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	count_send(sock->sk, ret);
	return 0;
}

SEC("fexit/packet_sendmsg")
int BPF_PROG(packet_sendmsg_exit, struct socket *sock, struct msghdr *msg, size_t len, int ret)
{
	count_send(sock->sk, ret);
	return 0;
}

/* sendfile and splice before 6.5 reach a socket through ->sendpage, not
 * sendmsg, so neither the tracepoint nor the hooks above see them. */
SEC("fexit/inet_sendpage")
int BPF_PROG(inet_sendpage_exit, struct socket *sock, struct page *page, int offset, size_t size, int flags,
	     long ret)
{
	count_send(sock->sk, ret);
	return 0;
}

/*
 * Kernels where neither the tracepoint nor fexit loads (no BPF trampoline:
 * CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS off, or an architecture without
 * it) but kprobes are configured: the entry probe notes the socket per
 * thread, the return probe counts what the function returned. kprobe
 * programs cannot use sk_storage, so the agent pairs them with the hash
 * store (sock_state_hash).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);   /* tid */
	__type(value, __u64); /* struct sock * */
} kprobe_send_sk SEC(".maps");

static __always_inline void kprobe_send_enter(struct socket *sock)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 sk = (__u64)BPF_CORE_READ(sock, sk);

	bpf_map_update_elem(&kprobe_send_sk, &tid, &sk, BPF_ANY);
}

static __always_inline void kprobe_send_return(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *sk = bpf_map_lookup_elem(&kprobe_send_sk, &tid);

	if (!sk)
		return;
	struct sock *s = (struct sock *)*sk;

	bpf_map_delete_elem(&kprobe_send_sk, &tid);
	count_send(s, ret);
}

/* The pair on one function; ret_type is what it returns. */
#define KPROBE_SEND_PAIR(func, ret_type)                       \
	SEC("kprobe/" #func)                                   \
	int BPF_KPROBE(func##_kprobe, struct socket *sock)     \
	{                                                      \
		kprobe_send_enter(sock);                       \
		return 0;                                      \
	}                                                      \
	SEC("kretprobe/" #func)                                \
	int BPF_KRETPROBE(func##_kretprobe, ret_type ret)      \
	{                                                      \
		kprobe_send_return(ret);                       \
		return 0;                                      \
	}

KPROBE_SEND_PAIR(inet_sendmsg, int)
KPROBE_SEND_PAIR(inet6_sendmsg, int)
KPROBE_SEND_PAIR(packet_sendmsg, int)
KPROBE_SEND_PAIR(inet_sendpage, long)
#endif /* EGRESSD_NO_BYTES_FALLBACKS */

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct sock_flow *f;
	__s32 err;

	if (oldstate != TCP_SYN_SENT)
		return 0;
	f = state_of_sk((struct sock *)sk, false);
	if (!f || f->connect_state != CONNECT_PENDING)
		return 0;
	if (newstate == TCP_ESTABLISHED) {
		emit_result(f, CONNECT_RESULT_OK, 0);
		return 0;
	}
	err = BPF_CORE_READ(sk, sk_err);
	if (err == ECONNREFUSED)
		emit_result(f, CONNECT_RESULT_REFUSED, err);
	else if (err == ETIMEDOUT)
		emit_result(f, CONNECT_RESULT_TIMEOUT, err);
	else if (err == EPERM || err == EACCES)
		emit_result(f, CONNECT_RESULT_DENIED, err);
	else
		emit_result(f, CONNECT_RESULT_ERROR, err);
	return 0;
}

SEC("cgroup/sock_release")
int sock_release(struct bpf_sock *sk)
{
	struct sock_flow *f = state_of(sk, sk, false);

	if (!f)
		return 1;
	if (f->connect_state == CONNECT_PENDING) {
		/* TCP reports its outcome at the state change; a pending attempt
		 * here failed before a SYN left (route, permission). UDP reports
		 * at its first send: pending here, it never sent (a getaddrinfo
		 * probe, or a socket that only receives). */
		if (f->sk_type != SOCK_STREAM && sk->state == TCP_ESTABLISHED)
			emit_result(f, CONNECT_RESULT_UNSENT, 0);
		else
			emit_result(f, CONNECT_RESULT_ERROR, 0);
	}
	if (f->bytes || f->connect_ns || (f->flags & SOCK_F_EXTRA))
		emit_close(f, CLOSE_RELEASE);
	if (sock_state_hash) {
		__u64 key = bpf_get_socket_cookie(sk);

		bpf_map_delete_elem(&sk_flows_hash, &key);
	}
	return 1;
}

/*
 * Copy the payload of a packet when it names a destination: the first bytes a
 * TCP client sends (TLS ClientHello, HTTP request line and Host), and DNS
 * messages to or from port 53. Runs only for sockets flagged for it, and at
 * most once per TCP connection, so bulk transfers pay one flag test.
 */
static __always_inline void inspect_payload(struct __sk_buff *skb, struct sock_flow *f, bool egress)
{
	__u32 zero = 0, l4off, payoff, len;
	__u16 ports[2];
	__u8 proto, b;
	struct payload_event *e = bpf_map_lookup_elem(&payload_scratch, &zero);

	if (!e)
		return;
	__builtin_memset(&e->peer, 0, sizeof(e->peer));
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 0, &b, 1) || bpf_skb_load_bytes(skb, 9, &proto, 1))
			return;
		l4off = (b & 0xf) * 4;
		if (bpf_skb_load_bytes(skb, egress ? 16 : 12, e->peer.addr_be, 4))
			return;
		e->peer.family = AF_INET;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 6, &proto, 1))
			return;
		l4off = 40; /* extension headers are not followed */
		if (bpf_skb_load_bytes(skb, egress ? 24 : 8, e->peer.addr_be, 16))
			return;
		e->peer.family = AF_INET6;
	} else {
		return;
	}
	if (bpf_skb_load_bytes(skb, l4off, ports, sizeof(ports)))
		return;
	if (proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, l4off + 12, &b, 1))
			return;
		payoff = l4off + (b >> 4) * 4;
	} else if (proto == IPPROTO_UDP) {
		payoff = l4off + 8;
	} else {
		return;
	}
	if (skb->len <= payoff)
		return; /* no payload: SYN, ACK */
	e->peer.port = bpf_ntohs(egress ? ports[1] : ports[0]);
	if ((f->flags & SOCK_F_DNS) && e->peer.port == DNS_PORT) {
		e->kind = egress ? PAYLOAD_DNS_QUERY : PAYLOAD_DNS_ANSWER;
		if (proto == IPPROTO_TCP)
			f->flags &= ~SOCK_F_PEEK;
	} else if (egress && (f->flags & SOCK_F_PEEK) && proto == IPPROTO_TCP) {
		e->kind = PAYLOAD_TCP_FIRST;
		f->flags &= ~SOCK_F_PEEK;
	} else {
		return;
	}
	if (!traced(f->owner.tgid))
		return;
	e->orig_len = skb->len - payoff;
	len = e->orig_len;
	if (len > EGRESSD_PAYLOAD_MAX)
		len = EGRESSD_PAYLOAD_MAX;
	/* len - 1 masked in asm, so the verifier sees 1..EGRESSD_PAYLOAD_MAX on
	 * the very register passed on (clang would otherwise hand it a copy). */
	len -= 1;
	asm volatile("%[len] &= %[mask]" : [len] "+r"(len) : [mask] "i"(EGRESSD_PAYLOAD_MAX - 1));
	len += 1;
	if (bpf_skb_load_bytes(skb, payoff, e->data, len))
		return;
	e->len = len;
	e->protocol = proto;
	e->cookie = f->cookie;
	e->owner = f->owner;
	header_init(&e->hdr, EVENT_PAYLOAD, PAYLOAD_EVENT_FIXED_SIZE + len);
	emit(e, PAYLOAD_EVENT_FIXED_SIZE + len);
}

/* The state of the socket a packet belongs to; never `current`, which in
 * softirq context is whatever task was interrupted. */
static __always_inline struct sock_flow *flow_of_skb(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;

	if (!sk)
		return NULL;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return NULL;
	return state_of(skb, sk, false);
}

/* Wire bytes per socket; and the destination of raw and ICMP sockets, which
 * name it per packet: egress runs inside the send, before sock_send_length. */
SEC("cgroup_skb/egress")
int skb_egress(struct __sk_buff *skb)
{
	struct sock_flow *f = flow_of_skb(skb);

	if (!f)
		return 1;
	if (f->sk_type == SOCK_STREAM) {
		/* A TCP socket transmits under its lock (the sending task's, or
		 * bh_lock_sock in softirq): plain adds cannot race here. */
		f->wire_bytes += skb->len;
		f->wire_packets += 1;
	} else {
		__sync_fetch_and_add(&f->wire_bytes, skb->len);
		__sync_fetch_and_add(&f->wire_packets, 1);
	}
	if (f->flags & (SOCK_F_PEEK | SOCK_F_DNS))
		inspect_payload(skb, f, true);
	if (!(f->flags & SOCK_F_UNCONNECTED) || f->sk_family == AF_PACKET)
		return 1;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u32 daddr;

		if (bpf_skb_load_bytes(skb, offsetof(struct iphdr, daddr), &daddr, sizeof(daddr)))
			return 1;
		__builtin_memset(f->dst.addr_be, 0, sizeof(f->dst.addr_be));
		*(__u32 *)f->dst.addr_be = daddr;
		f->dst.family = AF_INET;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, offsetof(struct ipv6hdr, daddr), f->dst.addr_be, 16))
			return 1;
		f->dst.family = AF_INET6;
	}
	f->dst.port = 0;
	return 1;
}

/* Whether an arriving TCP or UDP packet comes from port 53. Reads the headers
 * in place (a few loads), so that every other packet skips the socket-storage
 * lookup: on a loopback sender, ingress runs for each packet it sends too. */
static __always_inline bool from_dns_port(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 l4off;
	__u16 sport;
	__u8 proto;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data;

		if ((void *)(ip + 1) > end)
			return true; /* headers not linear: let the slow path decide */
		proto = ip->protocol;
		l4off = (ip->ihl & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data;

		if ((void *)(ip6 + 1) > end)
			return true;
		proto = ip6->nexthdr;
		l4off = sizeof(*ip6);
	} else {
		return false;
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return false;
	if (data + l4off + sizeof(sport) > end)
		return true;
	sport = *(__u16 *)(data + l4off);
	return sport == bpf_htons(DNS_PORT);
}

/* DNS answers, read from the asking socket: what the process itself
 * resolved, even through a local stub resolver. */
SEC("cgroup_skb/ingress")
int skb_ingress(struct __sk_buff *skb)
{
	struct sock_flow *f;

	if (!from_dns_port(skb))
		return 1;
	f = flow_of_skb(skb);

	if (f && (f->flags & SOCK_F_DNS))
		inspect_payload(skb, f, false);
	return 1;
}

/* Processes that already run when the agent starts. */
static __always_inline int on_task(struct bpf_iter__task *ctx, bool bounded)
{
	struct task_struct *task = ctx->task;
	struct exec_event *e;
	struct file *exe;

	if (!task || task->pid != task->tgid)
		return 0;
	e = exec_record(task);
	if (!e)
		return 0;
	e->flags = EXEC_F_FROM_ITER;
	exe = BPF_CORE_READ(task, mm, exe_file);
	if (exe)
		e->exe_len = resolve_path(&exe->f_path, e->data, &e->flags, bounded) &
			     (EGRESSD_PATH_MAX - 1);
	struct proc_state *st = bpf_map_lookup_elem(&procs, &e->proc.tgid);

	if (!st)
		procs_set(e->proc.tgid, e->proc.start_ns, NULL);
	else
		e->exec_gen = st->flags >> PROC_GEN_SHIFT;

	__u32 size = exec_size(e);

	header_init(&e->hdr, EVENT_EXEC, size);
	bpf_seq_write(ctx->meta->seq, e, size);
	return 0;
}

SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx)
{
	return on_task(ctx, false);
}

SEC("iter/task")
int dump_task_bounded(struct bpf_iter__task *ctx)
{
	return on_task(ctx, true);
}

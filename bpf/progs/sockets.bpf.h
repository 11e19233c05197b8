/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Where a flow starts: cgroup/connect4,6 (destination, connect attempt),
 * cgroup/sendmsg4,6 (the destination of the next unconnected send) and
 * cgroup/sock_create (raw and ICMP sockets, tagged before their first packet).
 * Included once, by egressd.bpf.c, in the order of the object.
 */
#ifndef EGRESSD_PROGS_SOCKETS_BPF_H
#define EGRESSD_PROGS_SOCKETS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "events.h"
#include "lib/consts.h"
#include "lib/maps.h"
#include "lib/generation.h"
#include "lib/state_store.h"
#include "lib/procs.h"
#include "lib/emit.h"
#include "lib/sock_flow.h"

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
 * context fields of its own family (the verifier rejects the others).
 * workaround: sock_addr_family_fields */
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

/* What connect() sets in a socket's state, new or held from before. */
static __always_inline void flow_connect(struct bpf_sock_addr *ctx, __u16 family, struct sock_flow *f,
					 __u64 now)
{
	/* A socket connected again (UDP may) starts a new flow: end the old. */
	if (f->flags & SOCK_F_CONNECTED) {
		/* Pending here: TCP never got an answer; UDP never sent. */
		if (f->connect_state == CONNECT_PENDING)
			emit_result_at(f, f->sk_type == SOCK_STREAM ? CONNECT_RESULT_ERROR : CONNECT_RESULT_UNSENT, 0,
				       now);
		emit_close_at(f, CLOSE_RECONNECT, now);
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
	f->connect_ns = now;
}

/* The CONNECT record, written in place in the ring. */
static __always_inline void emit_connect(const struct sock_flow *f, const struct proc_ident *me, __u64 pid_tgid,
					 __u64 uid_gid, __u64 now)
{
	struct connect_event *e;

	if (!traced(pid_tgid >> 32))
		return;
	e = reserve_record(sizeof(*e));
	if (!e)
		return;
	e->cookie = f->cookie;
	e->proc = *me;
	e->tid = (__u32)pid_tgid;
	e->uid = (__u32)uid_gid;
	e->dst = f->dst;
	e->sk_family = f->sk_family;
	e->sk_type = f->sk_type;
	e->sk_protocol = f->sk_protocol;
	e->_pad = 0;
	e->cgroup_id = bpf_get_current_cgroup_id();
	header_init_at(&e->hdr, EVENT_CONNECT, sizeof(*e), now);
	submit_record(e);
}

/*
 * The task's ids, the time and the cookie are read once. With the hash store
 * a socket without state (every TCP connect) gets its state built on the
 * stack and inserted whole: one map operation where lookup, insert of a
 * zeroed entry and lookup again were three.
 */
static __always_inline int on_connect(struct bpf_sock_addr *ctx, __u16 family)
{
	struct bpf_sock *sk = ctx->sk;
	struct sock_flow nf, *f;
	struct proc_ident me;
	__u64 pid_tgid, uid_gid, now, cookie;
	bool inserted = false;

	if (!sk)
		return 1;
	pid_tgid = bpf_get_current_pid_tgid();
	uid_gid = bpf_get_current_uid_gid();
	now = bpf_ktime_get_boot_ns();
	current_ident_of(pid_tgid, &me);
	cookie = bpf_get_socket_cookie(ctx);
	if (sock_state_hash) { /* workaround: hash_store */
		if (!cookie)
			return 1;
		__builtin_memset(&nf, 0, sizeof(nf));
		flow_init_at(&nf, cookie, sk->family, sk->type, sk->protocol, 0, &me, uid_gid, now);
		flow_connect(ctx, family, &nf, now);
		if (!bpf_map_update_elem(&sk_flows_hash, &cookie, &nf, BPF_NOEXIST)) {
			f = &nf;
			inserted = true;
		} else {
			/* The socket has state already (UDP connected again,
			 * or sent first), or the map is full. */
			f = bpf_map_lookup_elem(&sk_flows_hash, &cookie);
			if (!f) {
				kstat_inc(KSTAT_SK_STORAGE_FAIL);
				return 1;
			}
		}
	} else {
		f = storage_state(sk, true);
		if (!f)
			return 1;
	}
	if (!inserted) {
		if (!f->cookie)
			flow_init_at(f, cookie, sk->family, sk->type, sk->protocol, 0, &me, uid_gid, now);
		flow_connect(ctx, family, f, now);
	}
	emit_connect(f, &me, pid_tgid, uid_gid, now);
	return 1;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	if (inactive())
		return 1;
	return on_connect(ctx, AF_INET);
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	if (inactive())
		return 1;
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
	if (inactive())
		return 1;
	return on_sendmsg(ctx, AF_INET);
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
	if (inactive())
		return 1;
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

	if (inactive())
		return 1;
	if (!sends_name_destination(sk->family, sk->type, sk->protocol))
		return 1;
	f = state_of(sk, sk, true);
	if (f && !f->cookie)
		flow_init(f, bpf_get_socket_cookie(sk), sk->family, sk->type, sk->protocol, 0);
	return 1;
}

#endif /* EGRESSD_PROGS_SOCKETS_BPF_H */

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

#endif /* EGRESSD_PROGS_SOCKETS_BPF_H */

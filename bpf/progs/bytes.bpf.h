/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Bytes per socket and sender: tp_btf/sock_send_length (6.3+), else fexit on
 * each family's sendmsg (and sendpage), else kprobe + kretprobe pairs. All
 * count through count_send(); the agent loads one family.
 * Included once, by egressd.bpf.c, in the order of the object.
 */
#ifndef EGRESSD_PROGS_BYTES_BPF_H
#define EGRESSD_PROGS_BYTES_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "events.h"
#include "lib/consts.h"
#include "lib/config.h"
#include "lib/maps.h"
#include "lib/generation.h"
#include "lib/kstats.h"
#include "lib/state_store.h"
#include "lib/procs.h"
#include "lib/emit.h"
#include "lib/sock_flow.h"

/* A socket first seen at a send: it predates the agent, or was accepted (then
 * inet_sock_set_state made its state, marked SOCK_F_INBOUND, with no owner). */
static __always_inline struct sock_flow *adopt_sock(struct sock *sk, bool btf)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	struct sock_flow *f;

	if (family != AF_INET && family != AF_INET6 && family != AF_PACKET)
		return NULL;
	f = state_of_sk(sk, true, btf);
	if (!f)
		return NULL;
	if (f->cookie)
		return f;
	/* bpf_get_socket_cookie takes a struct sock here only from 5.12 on.
	 * workaround: tracing_cookie */
	flow_init(f, sock_state_hash ? hash_key_of(sk) : bpf_get_socket_cookie(sk), family,
		  BPF_CORE_READ_BITFIELD_PROBED(sk, sk_type),
		  BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol), SOCK_F_ADOPTED | (f->flags & SOCK_F_INBOUND));
	f->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
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

/* ret bytes were sent through sk by the current task. btf: as state_of_sk. */
static __always_inline void count_send(struct sock *sk, long ret, bool btf)
{
	struct sock_flow *f;
	__u64 pid_tgid;

	if (ret <= 0 || !sk)
		return;
	f = state_of_sk(sk, false, btf);
	if (!f || !f->cookie) { /* no state, or an accepted socket's without an owner */
		f = adopt_sock(sk, btf);
		if (!f)
			return;
	}
	pid_tgid = bpf_get_current_pid_tgid();
	/* The owner is one program: after an execve the process sends as
	 * another, whose bytes go to flow_extra under its own exec_id. */
	if ((pid_tgid >> 32) == f->owner.tgid && current_exec_id(btf) == f->owner.exec_id &&
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
	if (inactive())
		return 0;
	count_send(sk, ret, true);
	return 0;
}

/*
 * Kernels without sock_send_length (before 6.3): the same count at the return
 * of the sendmsg that sock->ops points to for the families egressd counts.
 * inet_sendmsg serves TCP, UDP, ICMP, raw and SCTP over IPv4; inet6_sendmsg
 * the same over IPv6; packet_sendmsg AF_PACKET. The agent loads these only
 * when the tracepoint is missing (bpf_program__set_autoload).
 * workaround: bytes_fexit
 */
/* tests/deploy loads every program of the object with bpftool, as a kernel
 * that takes the tracepoint does: it builds the object without these. */
#ifndef EGRESSD_NO_BYTES_FALLBACKS
SEC("fexit/inet_sendmsg")
int BPF_PROG(inet_sendmsg_exit, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	if (inactive())
		return 0;
	count_send(sock->sk, ret, true);
	return 0;
}

SEC("fexit/inet6_sendmsg")
int BPF_PROG(inet6_sendmsg_exit, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	if (inactive())
		return 0;
	count_send(sock->sk, ret, true);
	return 0;
}

SEC("fexit/packet_sendmsg")
int BPF_PROG(packet_sendmsg_exit, struct socket *sock, struct msghdr *msg, size_t len, int ret)
{
	if (inactive())
		return 0;
	count_send(sock->sk, ret, true);
	return 0;
}

/* sendfile and splice before 6.5 reach a socket through ->sendpage, not
 * sendmsg, so neither the tracepoint nor the hooks above see them.
 * workaround: bytes_sendpage */
SEC("fexit/inet_sendpage")
int BPF_PROG(inet_sendpage_exit, struct socket *sock, struct page *page, int offset, size_t size, int flags,
	     long ret)
{
	if (inactive())
		return 0;
	count_send(sock->sk, ret, true);
	return 0;
}

/*
 * Kernels where neither the tracepoint nor fexit loads (no BPF trampoline:
 * CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS off, or an architecture without
 * it) but kprobes are configured: the entry probe notes the socket per
 * thread, the return probe counts what the function returned. kprobe
 * programs cannot use sk_storage, so the agent pairs them with the hash
 * store (sock_state_hash).
 * workaround: bytes_kprobe_pairs
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
	if (!inactive())
		count_send(s, ret, false);
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

#endif /* EGRESSD_PROGS_BYTES_BPF_H */

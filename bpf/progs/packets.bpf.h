/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Packets: cgroup_skb/egress counts wire bytes per socket and finds raw and
 * ICMP destinations; egress and ingress copy the payloads that name a
 * destination (first TCP bytes: TLS SNI, HTTP; DNS queries and answers).
 * Included once, by egressd.bpf.c, in the order of the object.
 */
#ifndef EGRESSD_PROGS_PACKETS_BPF_H
#define EGRESSD_PROGS_PACKETS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/consts.h"
#include "lib/maps.h"
#include "lib/generation.h"
#include "lib/state_store.h"
#include "lib/procs.h"
#include "lib/emit.h"
#include "lib/workarounds.h"

/* The headers payload inspection reads: where the payload starts, the ports
 * (network order) and the layer 4 protocol. */
struct l4_info {
	__u32 payoff;
	__u16 ports[2];
	__u8 proto;
};

/*
 * The peer's address and the l4_info of a packet, read in place (plain loads,
 * no helper call): a TCP socket's SYN and ACKs before its first payload cost
 * a few loads. Returns 1 when the packet has a TCP or UDP payload, 0 when it
 * has none or is neither (nothing to inspect), -1 when its headers are not
 * in the linear part (headers_loaded() reads them then).
 */
static __always_inline int headers_in_place(struct __sk_buff *skb, bool egress, struct flow_addr *peer,
					    struct l4_info *l4)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 l4off;

	__builtin_memset(peer, 0, sizeof(*peer));
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data;

		if ((void *)(ip + 1) > end)
			return -1;
		l4->proto = ip->protocol;
		l4off = (ip->ihl & 0xf) * 4;
		*(__u32 *)peer->addr_be = egress ? ip->daddr : ip->saddr;
		peer->family = AF_INET;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data;

		if ((void *)(ip6 + 1) > end)
			return -1;
		l4->proto = ip6->nexthdr;
		l4off = sizeof(*ip6); /* extension headers are not followed */
		if (egress)
			__builtin_memcpy(peer->addr_be, &ip6->daddr, 16);
		else
			__builtin_memcpy(peer->addr_be, &ip6->saddr, 16);
		peer->family = AF_INET6;
	} else {
		return 0;
	}
	if (l4->proto != IPPROTO_TCP && l4->proto != IPPROTO_UDP)
		return 0;
	if (data + l4off + 13 > end)
		return -1;
	l4->ports[0] = *(__u16 *)(data + l4off);
	l4->ports[1] = *(__u16 *)(data + l4off + 2);
	if (l4->proto == IPPROTO_TCP)
		l4->payoff = l4off + (*(__u8 *)(data + l4off + 12) >> 4) * 4;
	else
		l4->payoff = l4off + 8;
	return skb->len > l4->payoff; /* none: SYN, ACK */
}

/* The same with bpf_skb_load_bytes, for headers outside the linear part.
 * Returns whether the packet has a TCP or UDP payload. */
static __always_inline bool headers_loaded(struct __sk_buff *skb, bool egress, struct flow_addr *peer,
					   struct l4_info *l4)
{
	__u32 l4off;
	__u8 b;

	__builtin_memset(peer, 0, sizeof(*peer));
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 0, &b, 1) || bpf_skb_load_bytes(skb, 9, &l4->proto, 1))
			return false;
		l4off = (b & 0xf) * 4;
		if (bpf_skb_load_bytes(skb, egress ? 16 : 12, peer->addr_be, 4))
			return false;
		peer->family = AF_INET;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 6, &l4->proto, 1))
			return false;
		l4off = 40; /* extension headers are not followed */
		if (bpf_skb_load_bytes(skb, egress ? 24 : 8, peer->addr_be, 16))
			return false;
		peer->family = AF_INET6;
	} else {
		return false;
	}
	if (bpf_skb_load_bytes(skb, l4off, l4->ports, sizeof(l4->ports)))
		return false;
	if (l4->proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, l4off + 12, &b, 1))
			return false;
		l4->payoff = l4off + (b >> 4) * 4;
	} else if (l4->proto == IPPROTO_UDP) {
		l4->payoff = l4off + 8;
	} else {
		return false;
	}
	return skb->len > l4->payoff; /* none: SYN, ACK */
}

/*
 * Copy the payload of a packet when it names a destination: the first bytes a
 * TCP client sends (TLS ClientHello, HTTP request line and Host), and DNS
 * messages to or from port 53. Runs only for sockets flagged for it, and at
 * most once per TCP connection, so bulk transfers pay one flag test.
 */
static __always_inline void inspect_payload(struct __sk_buff *skb, struct sock_flow *f, bool egress)
{
	__u32 zero = 0, payoff, len;
	struct payload_event *e;
	struct flow_addr peer;
	struct l4_info l4;
	__u8 proto;
	int in_place = headers_in_place(skb, egress, &peer, &l4);

	if (!in_place)
		return;
	if (in_place < 0 && !headers_loaded(skb, egress, &peer, &l4))
		return;
	e = bpf_map_lookup_elem(&payload_scratch, &zero);
	if (!e)
		return;
	proto = l4.proto;
	payoff = l4.payoff;
	e->peer = peer;
	e->peer.port = bpf_ntohs(egress ? l4.ports[1] : l4.ports[0]);
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
	 * the very register passed on (clang would otherwise hand it a copy).
	 * workaround: payload_len_mask_asm */
	len -= 1;
	mask_for_verifier(len, EGRESSD_PAYLOAD_MAX - 1);
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
	if (sock_state_hash) { /* workaround: hash_store */
		/* The hash store needs no full-socket pointer, only to know that
		 * sk is one (not a request or time-wait socket, which have no
		 * state): the socket's state field says so in one load, where
		 * bpf_sk_fullsock() is a helper call on each packet. */
		__u32 state = sk->state;

		if (state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV)
			return NULL;
		return hash_state(bpf_get_socket_cookie(skb), false);
	}
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return NULL;
	return storage_state(sk, false);
}

/* Wire bytes per socket; and the destination of raw and ICMP sockets, which
 * name it per packet: egress runs inside the send, before sock_send_length. */
SEC("cgroup_skb/egress")
int skb_egress(struct __sk_buff *skb)
{
	struct sock_flow *f;

	if (inactive())
		return 1;
	f = flow_of_skb(skb);
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

	if (inactive())
		return 1;
	if (!from_dns_port(skb))
		return 1;
	f = flow_of_skb(skb);

	if (f && (f->flags & SOCK_F_DNS))
		inspect_payload(skb, f, false);
	return 1;
}

#endif /* EGRESSD_PROGS_PACKETS_BPF_H */

/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * How connects and flows end: tp_btf/inet_sock_set_state reports a TCP
 * connect's outcome (and marks the sockets a local server accepts as
 * inbound), cgroup/sock_release a socket's last counters (and the outcome of
 * an attempt still pending).
 * Included once, by egressd.bpf.c, in the order of the object.
 */
#ifndef EGRESSD_PROGS_OUTCOMES_BPF_H
#define EGRESSD_PROGS_OUTCOMES_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "events.h"
#include "lib/consts.h"
#include "lib/config.h"
#include "lib/maps.h"
#include "lib/generation.h"
#include "lib/state_store.h"
#include "lib/emit.h"

/* Runs at every TCP state change; only the change out of SYN_SENT (one in
 * six of a short connection's) reads the socket's state, and the change of a
 * connection a local server accepted (SYN_RECV to ESTABLISHED, in softirq:
 * the current task is nobody's) makes a state that says so, for the first
 * send to find and give an owner. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct sock_flow *f;
	__u32 result;
	__s32 err;

	if (inactive())
		return 0;
	if (oldstate == TCP_SYN_RECV) {
		if (newstate != TCP_ESTABLISHED)
			return 0;
		f = state_of_sk((struct sock *)sk, true, true);
		if (f && !f->cookie)
			f->flags |= SOCK_F_INBOUND;
		return 0;
	}
	if (oldstate != TCP_SYN_SENT)
		return 0;
	f = state_of_sk((struct sock *)sk, false, true);
	if (!f || f->connect_state != CONNECT_PENDING)
		return 0;
	if (newstate == TCP_ESTABLISHED) {
		emit_result(f, CONNECT_RESULT_OK, 0);
		return 0;
	}
	err = sk->sk_err;
	if (err == ECONNREFUSED)
		result = CONNECT_RESULT_REFUSED;
	else if (err == ETIMEDOUT)
		result = CONNECT_RESULT_TIMEOUT;
	else if (err == EPERM || err == EACCES)
		result = CONNECT_RESULT_DENIED;
	else
		result = CONNECT_RESULT_ERROR;
	emit_result(f, result, err);
	return 0;
}

SEC("cgroup/sock_release")
int sock_release(struct bpf_sock *sk)
{
	struct sock_flow *f;
	__u64 key = 0, now;

	if (inactive())
		return 1;
	if (sock_state_hash) { /* workaround: hash_store */
		key = bpf_get_socket_cookie(sk);
		f = hash_state(key, false);
	} else {
		f = storage_state(sk, false);
	}
	if (!f)
		return 1;
	now = bpf_ktime_get_boot_ns();
	if (f->connect_state == CONNECT_PENDING) {
		/* TCP reports its outcome at the state change; a pending attempt
		 * here failed before a SYN left (route, permission). UDP reports
		 * at its first send: pending here, it never sent (a getaddrinfo
		 * probe, or a socket that only receives). */
		emit_result_at(f,
			       f->sk_type != SOCK_STREAM && sk->state == TCP_ESTABLISHED ? CONNECT_RESULT_UNSENT :
											     CONNECT_RESULT_ERROR,
			       0, now);
	}
	if (f->bytes || f->connect_ns || (f->flags & SOCK_F_EXTRA))
		emit_close_at(f, CLOSE_RELEASE, now);
	if (sock_state_hash)
		bpf_map_delete_elem(&sk_flows_hash, &key);
	return 1;
}

#endif /* EGRESSD_PROGS_OUTCOMES_BPF_H */

/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Where a socket's state (struct sock_flow) lives: sk_storage, freed with the
 * socket, or the hash store sk_flows_hash keyed by socket cookie
 * (sock_state_hash; workaround: hash_store). state_of() serves cgroup
 * programs, state_of_sk() tracing programs.
 */
#ifndef EGRESSD_LIB_STATE_STORE_H
#define EGRESSD_LIB_STATE_STORE_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/consts.h"
#include "lib/config.h"
#include "lib/maps.h"
#include "lib/kstats.h"

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
 * which no cgroup hook sees, is keyed by its inode number.
 * workaround: tracing_cookie, packet_socket_key */
static __always_inline __u64 hash_key_of(struct sock *sk)
{
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);

	if (cookie)
		return cookie;
	if (BPF_CORE_READ(sk, __sk_common.skc_family) != AF_PACKET)
		return tracing_cookie ? bpf_get_socket_cookie(sk) : 0;
	return SOCK_KEY_PACKET | (__u32)BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
}

/* hash_key_of() for a BTF pointer (tp_btf, fexit): the cookie is read with a
 * plain load, which the verifier guards, not with bpf_probe_read_kernel. */
static __always_inline __u64 hash_key_of_btf(struct sock *sk)
{
	__u64 cookie = sk->__sk_common.skc_cookie.counter;

	if (cookie)
		return cookie;
	return hash_key_of(sk);
}

/* Socket state in a tracing program (a struct sock). btf: sk is a BTF
 * pointer the program may load from (tp_btf, fexit), not a kprobe's. */
static __always_inline struct sock_flow *state_of_sk(struct sock *sk, bool create, bool btf)
{
	if (sock_state_hash)
		return hash_state(btf ? hash_key_of_btf(sk) : hash_key_of(sk), create);
	return storage_state(sk, create);
}

#endif /* EGRESSD_LIB_STATE_STORE_H */

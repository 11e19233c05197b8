/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Live counters: the iterators the agent reads open sockets' state through
 * (iter/task_file, else iter/bpf_sk_storage_map). They must be the first
 * programs of the object.
 * Included once, by egressd.bpf.c, in the order of the object.
 */
#ifndef EGRESSD_PROGS_LIVE_COUNTERS_BPF_H
#define EGRESSD_PROGS_LIVE_COUNTERS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/maps.h"

/*
 * The live-counter iterators come first in the object: libbpf loads programs
 * in this order, and these are the ones a kernel build may refuse (the loader
 * then loads again without them), so a refusal costs little verification.
 * EGRESSD_NO_LIVE_ITERATORS leaves them out, for tools that load every
 * program of the object at once (tests/deploy/systemd_sandbox_test.sh).
 * workaround: live_iterators_first
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
 * workaround: live_counters_by_map_iterator
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

#endif /* EGRESSD_PROGS_LIVE_COUNTERS_BPF_H */

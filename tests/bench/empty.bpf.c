// SPDX-License-Identifier: GPL-2.0-only
/*
 * Reference point for tests/bench/run.sh: the cheapest BPF program that can
 * sit where egressd counts bytes. It is attached to the same hook as
 * egressd's sock_send_length program and does nothing.
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sock_send_length")
int empty_send_length(__u64 *ctx)
{
	return 0;
}

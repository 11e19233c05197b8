// SPDX-License-Identifier: GPL-2.0
// One empty program per kind of hook egressd could count bytes with. The
// kernel matrix loads and attaches each (egressd-hook-probe) to record which
// kinds a kernel offers; none of them changes what the kernel does.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("fentry/tcp_sendmsg")
int BPF_PROG(fentry_tcp_sendmsg)
{
	return 0;
}

SEC("fexit/tcp_sendmsg")
int BPF_PROG(fexit_tcp_sendmsg)
{
	return 0;
}

SEC("kprobe/tcp_sendmsg")
int kprobe_tcp_sendmsg(void *ctx)
{
	return 0;
}

// Returns 0: every connect is allowed.
SEC("lsm/socket_connect")
int BPF_PROG(lsm_socket_connect)
{
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send_length)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int tracepoint_sys_exit_sendto(void *ctx)
{
	return 0;
}

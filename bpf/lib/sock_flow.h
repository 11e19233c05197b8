/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What a socket's state holds when it is created: owner, type, and the flags
 * that say how its bytes are counted.
 */
#ifndef EGRESSD_LIB_SOCK_FLOW_H
#define EGRESSD_LIB_SOCK_FLOW_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/consts.h"
#include "lib/procs.h"

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

#endif /* EGRESSD_LIB_SOCK_FLOW_H */

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

/* me, uid_gid, now: the program's own reads of the current process, its ids
 * and bpf_ktime_get_boot_ns(), made once per run. */
static __always_inline void flow_init_at(struct sock_flow *f, __u64 cookie, __u16 family, __u16 type,
					 __u16 protocol, __u8 flags, const struct proc_ident *me, __u64 uid_gid,
					 __u64 now)
{
	f->cookie = cookie;
	f->owner = *me;
	f->owner_uid = (__u32)uid_gid;
	f->created_ns = now;
	f->sk_family = family;
	f->sk_type = type;
	f->sk_protocol = protocol;
	if (sends_name_destination(family, type, protocol))
		flags |= SOCK_F_UNCONNECTED;
	if (family == AF_PACKET)
		flags |= SOCK_F_NO_RELEASE;
	f->flags = flags;
}

static __always_inline void flow_init(struct sock_flow *f, __u64 cookie, __u16 family, __u16 type,
				      __u16 protocol, __u8 flags)
{
	struct proc_ident me;

	current_ident(&me);
	flow_init_at(f, cookie, family, type, protocol, flags, &me, bpf_get_current_uid_gid(),
		     bpf_ktime_get_boot_ns());
}

#endif /* EGRESSD_LIB_SOCK_FLOW_H */

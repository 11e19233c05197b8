/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernel constants the programs use that vmlinux.h does not carry (they are
 * macros in the kernel's headers, not types): address families, socket
 * types, protocols, ports, ethertypes, errno values.
 */
#ifndef EGRESSD_LIB_CONSTS_H
#define EGRESSD_LIB_CONSTS_H

#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOCK_RAW 3
#define IPPROTO_ICMP 1
#define IPPROTO_ICMPV6 58
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define DNS_PORT 53
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ECONNREFUSED 111
#define ETIMEDOUT 110
#define EPERM 1
#define EACCES 13

#endif /* EGRESSD_LIB_CONSTS_H */

// Destination addresses and transports as users read them.
#pragma once

#include <cstdint>
#include <string>

#include "events.h"

namespace egressd {

// "192.0.2.1", "2001:db8::1"; IPv4-mapped IPv6 is shown as the IPv4 address
// it carries, since that is what went on the wire. Empty when unknown.
std::string format_addr(const flow_addr& a);

// ECS network.type: "ipv4", "ipv6", or "" when the family carries no IP.
std::string network_type(const flow_addr& a);

// ECS network.transport of a socket: tcp, udp, icmp, ipv6-icmp, sctp, raw, packet.
std::string transport_name(uint16_t family, uint16_t type, uint16_t protocol);

// Stable, human-readable errno name ("ECONNREFUSED"); "E<n>" if unknown.
std::string errno_name(int err);

// Whether text is an IPv4 or IPv6 address (brackets allowed), which names no
// domain: an HTTP Host or CONNECT target of 127.0.0.1 or [::1].
bool is_address_literal(const std::string& text);

}  // namespace egressd

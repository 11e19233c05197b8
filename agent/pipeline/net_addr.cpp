#include "net_addr.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace egressd {
namespace {

bool is_v4_mapped(const uint8_t* b) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(b, prefix, sizeof(prefix)) == 0;
}

}  // namespace

std::string format_addr(const flow_addr& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.family == AF_INET) {
    inet_ntop(AF_INET, a.addr_be, buf, sizeof(buf));
  } else if (a.family == AF_INET6) {
    if (is_v4_mapped(a.addr_be))
      inet_ntop(AF_INET, a.addr_be + 12, buf, sizeof(buf));
    else
      inet_ntop(AF_INET6, a.addr_be, buf, sizeof(buf));
  }
  return buf;
}

std::string network_type(const flow_addr& a) {
  if (a.family == AF_INET) return "ipv4";
  if (a.family == AF_INET6) return is_v4_mapped(a.addr_be) ? "ipv4" : "ipv6";
  return "";
}

std::string transport_name(uint16_t family, uint16_t type, uint16_t protocol) {
  if (family == AF_PACKET) return "packet";
  switch (protocol) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    case IPPROTO_ICMP: return "icmp";
    case IPPROTO_ICMPV6: return "ipv6-icmp";
    case IPPROTO_SCTP: return "sctp";
    case IPPROTO_UDPLITE: return "udplite";
    default: break;
  }
  if (type == SOCK_RAW) return protocol == IPPROTO_RAW ? "raw" : fmt::format("ip-proto-{}", protocol);
  return fmt::format("ip-proto-{}", protocol);
}

std::string errno_name(int err) {
  const char* name = strerrorname_np(err);
  return name ? name : fmt::format("E{}", err);
}

bool is_address_literal(const std::string& text) {
  std::string t = text;
  if (t.size() > 2 && t.front() == '[' && t.back() == ']') t = t.substr(1, t.size() - 2);
  unsigned char buf[16];
  return inet_pton(AF_INET, t.c_str(), buf) == 1 || inet_pton(AF_INET6, t.c_str(), buf) == 1;
}

}  // namespace egressd

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include "addr_helpers.h"
#include <netinet/in.h>
#include <sys/socket.h>

#include "net_addr.h"

namespace egressd {
namespace {

using test_addr::v4;
using test_addr::v6;

TEST(NetAddr, FormatsEachFamily) {
  EXPECT_EQ(format_addr(v4("192.0.2.7", 443)), "192.0.2.7");
  EXPECT_EQ(format_addr(v6("2001:db8::1", 443)), "2001:db8::1");
  EXPECT_EQ(network_type(v6("2001:db8::1", 443)), "ipv6");
  flow_addr none{};
  EXPECT_EQ(format_addr(none), "");
  EXPECT_EQ(network_type(none), "");
}

TEST(NetAddr, MappedIpv4IsShownAsIpv4) {
  flow_addr a = v6("::ffff:198.51.100.9", 80);
  EXPECT_EQ(format_addr(a), "198.51.100.9");
  EXPECT_EQ(network_type(a), "ipv4");
}

TEST(NetAddr, TransportNames) {
  EXPECT_EQ(transport_name(AF_INET, SOCK_STREAM, IPPROTO_TCP), "tcp");
  EXPECT_EQ(transport_name(AF_INET6, SOCK_DGRAM, IPPROTO_UDP), "udp");
  EXPECT_EQ(transport_name(AF_INET, SOCK_RAW, IPPROTO_ICMP), "icmp");
  EXPECT_EQ(transport_name(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6), "ipv6-icmp");
  EXPECT_EQ(transport_name(AF_INET, SOCK_STREAM, IPPROTO_SCTP), "sctp");
  EXPECT_EQ(transport_name(AF_PACKET, SOCK_RAW, 0x0300), "packet");
  EXPECT_EQ(transport_name(AF_INET, SOCK_RAW, 47), "ip-proto-47");
}

TEST(NetAddr, ErrnoNames) {
  EXPECT_EQ(errno_name(ECONNREFUSED), "ECONNREFUSED");
  EXPECT_EQ(errno_name(ETIMEDOUT), "ETIMEDOUT");
  EXPECT_EQ(errno_name(99999), "E99999");
}

}  // namespace
}  // namespace egressd

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include "addr_helpers.h"
#include <netinet/in.h>
#include <sys/socket.h>

#include <fstream>
#include <iterator>

#include "dns_names.h"
#include "dns_parser.h"
#include "flow_table.h"
#include "memory_sink.h"

namespace egressd {
namespace {

using test_addr::v4;
using test_addr::v6;

constexpr uint64_t kSec = 1'000'000'000ULL;

TEST(DnsNames, PerProcessWithTtlAndMappedAddresses) {
  DnsNames names({.per_process = 10, .total = 100, .min_ttl_ns = 60 * kSec});
  uint8_t addr[4] = {192, 0, 2, 1};
  names.add({10, 1}, AF_INET, addr, "api.example.com", 600, 0);
  EXPECT_EQ(names.lookup({10, 1}, v4("192.0.2.1", 443), 5 * kSec), "api.example.com");
  EXPECT_EQ(names.lookup({11, 1}, v4("192.0.2.1", 443), 5 * kSec), "");  // another process
  EXPECT_EQ(names.lookup({10, 2}, v4("192.0.2.1", 443), 5 * kSec), "");  // pid reused
  flow_addr mapped{};
  mapped.family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:192.0.2.1", mapped.addr_be);
  EXPECT_EQ(names.lookup({10, 1}, mapped, 5 * kSec), "api.example.com");
  EXPECT_EQ(names.lookup({10, 1}, v4("192.0.2.1", 443), 601 * kSec), "");  // TTL passed
  names.add({10, 1}, AF_INET, addr, "short.example.com", 1, 0);  // TTL below the floor
  EXPECT_EQ(names.lookup({10, 1}, v4("192.0.2.1", 443), 30 * kSec), "short.example.com");
  names.expire(1000 * kSec);
  EXPECT_EQ(names.size(), 0u);
}

TEST(DnsNames, BoundedPerProcessAndInTotal) {
  DnsNames names({.per_process = 5, .total = 8, .min_ttl_ns = 3600 * kSec});
  for (uint8_t i = 0; i < 20; ++i) {
    uint8_t addr[4] = {10, 0, 0, i};
    names.add({uint32_t(1 + i % 2), 1}, AF_INET, addr, "n", 60, i);
  }
  EXPECT_LE(names.size(), 8u);
  EXPECT_EQ(names.lookup({1, 1}, v4("10.0.0.18", 1), 100), "n");  // the newest stay
}

TEST(DnsNames, RegistrableDomain) {
  EXPECT_EQ(registrable_domain("api.anthropic.com"), "anthropic.com");
  EXPECT_EQ(registrable_domain("a.b.example.co.uk"), "example.co.uk");
  EXPECT_EQ(registrable_domain("localhost"), "localhost");
}

class PayloadNaming : public ::testing::Test {
 protected:
  // Every line the flow table wrote is the one nlohmann::json would write
  // for its document: each member once, in key order, escaped the same way.
  void TearDown() override { EXPECT_TRUE(log_.noncanonical().empty()) << log_.noncanonical().front(); }
  PayloadNaming() : procs_("/nonexistent", "h") {
    host_ = HostInfo{"h", "b", "0"};
    flows_ = std::make_unique<FlowTable>(FlowTableDeps{procs_, counters_, log_, host_, clock_});
  }

  // A connect and its outcome; UDP with udp (its outcome comes at the first
  // send, or CONNECT_RESULT_UNSENT when it never sends).
  void connect(uint64_t cookie, const char* ip, uint16_t port, bool udp = false,
               uint32_t result = CONNECT_RESULT_OK) {
    connect_event c{};
    c.hdr = {EVENT_CONNECT, sizeof(c), 0, 1000};
    c.cookie = cookie;
    c.proc = {7, 0, 1};
    c.dst = v4(ip, port);
    c.sk_family = AF_INET;
    c.sk_type = udp ? SOCK_DGRAM : SOCK_STREAM;
    c.sk_protocol = udp ? IPPROTO_UDP : IPPROTO_TCP;
    flows_->on_connect(c);
    flows_->on_connect_result({{EVENT_CONNECT_RESULT, 32, 0, 2000}, cookie, result, 0});
  }
  void payload(uint64_t cookie, uint16_t kind, const std::vector<uint8_t>& data, uint16_t proto = IPPROTO_TCP) {
    PayloadRecord r{};
    r.fixed.hdr = {EVENT_PAYLOAD, 0, 0, 3000};
    r.fixed.cookie = cookie;
    r.fixed.owner = {7, 0, 1};
    r.fixed.peer = v4("127.0.0.53", 53);
    r.fixed.kind = kind;
    r.fixed.protocol = proto;
    r.data = data;
    flows_->on_payload(r);
  }
  void close_flow(uint64_t cookie, const char* ip, uint16_t port, uint64_t bytes, bool udp = false) {
    sock_close_event e{};
    e.hdr = {EVENT_SOCK_CLOSE, sizeof(e), 0, 9000};
    e.reason = CLOSE_RELEASE;
    e.flow.cookie = cookie;
    e.flow.owner = {7, 0, 1};
    e.flow.dst = v4(ip, port);
    e.flow.sk_family = AF_INET;
    e.flow.sk_type = udp ? SOCK_DGRAM : SOCK_STREAM;
    e.flow.sk_protocol = udp ? IPPROTO_UDP : IPPROTO_TCP;
    e.flow.flags = SOCK_F_CONNECTED;
    e.flow.connect_ns = 1000;
    e.flow.bytes = bytes;
    e.flow.sends = bytes ? 1 : 0;
    flows_->on_close(e);
  }
  std::vector<nlohmann::json> lines() { return log_.events(); }
  static std::vector<uint8_t> corpus(const std::string& name) {
    std::ifstream in(std::string(EGRESSD_SOURCE_DIR) + "/tests/fuzz/corpus/" + name, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  std::string dest_label(const std::string& port) {
    for (const auto& [k, t] : counters_.snapshot())
      if (k.port == port && t.sent_bytes) return k.destination;
    return "";
  }

  ProcessTable procs_;
  EgressCounters counters_;
  test::MemorySink log_;
  HostInfo host_;
  Clock clock_;
  std::unique_ptr<FlowTable> flows_;
};

TEST_F(PayloadNaming, SniBeatsDnsAndTheConnectionWaitsForIt) {
  connect(1, "127.0.0.1", 443);
  EXPECT_TRUE(lines().empty()) << "connection-attempted waits for the first payload";
  payload(1, PAYLOAD_TCP_FIRST, corpus("tls/openssl_sni.bin"));
  close_flow(1, "127.0.0.1", 443, 500);
  auto l = lines();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0]["event"]["action"], "connection-attempted");
  EXPECT_EQ(l[0]["destination"]["domain"], "openssl.example.test");
  EXPECT_EQ(l[1]["tls"]["client"]["server_name"], "openssl.example.test");
  EXPECT_EQ(l[1]["egressd"]["destination"]["name_source"], "sni");
  EXPECT_EQ(dest_label("443"), "openssl.example.test");
}

TEST_F(PayloadNaming, ConnectTargetBeatsEverything) {
  connect(2, "127.0.0.1", 3128);
  const std::string req = "CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n";
  payload(2, PAYLOAD_TCP_FIRST, std::vector<uint8_t>(req.begin(), req.end()));
  close_flow(2, "127.0.0.1", 3128, 900);
  auto l = lines();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[1]["destination"]["domain"], "api.anthropic.com");
  EXPECT_EQ(l[1]["destination"]["registered_domain"], "anthropic.com");
  EXPECT_EQ(l[1]["egressd"]["proxy"]["target"], "api.anthropic.com:443");
  EXPECT_EQ(dest_label("3128"), "api.anthropic.com");
}

TEST_F(PayloadNaming, DnsAnswerOfTheSameProcessNamesALaterFlow) {
  payload(50, PAYLOAD_DNS_ANSWER, corpus("dns/a_response.bin"), IPPROTO_UDP);
  auto resp = parse_dns_message(corpus("dns/a_response.bin"));
  ASSERT_EQ(resp.status, DnsStatus::kOk);
  auto resolved = resolve_answer_names(resp.message);
  ASSERT_FALSE(resolved.empty());
  const auto& a = std::get<Ipv4Address>(resolved[0].address);
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, a.data(), ip, sizeof(ip));
  connect(3, ip, 8080);
  close_flow(3, ip, 8080, 10);  // closes before sending anything: named by DNS
  auto l = lines();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[1]["destination"]["domain"], resolved[0].asked_name);
  EXPECT_EQ(l[1]["egressd"]["destination"]["name_source"], "dns");
}

TEST_F(PayloadNaming, DnsQueryIsLoggedAndGarbageCounted) {
  payload(60, PAYLOAD_DNS_QUERY, corpus("dns/a_query.bin"), IPPROTO_UDP);
  auto l = lines();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0]["event"]["action"], "dns-query");
  EXPECT_FALSE(l[0]["dns"]["question"]["name"].get<std::string>().empty());
  payload(61, PAYLOAD_DNS_QUERY, {0xc0, 0x0c, 0xff}, IPPROTO_UDP);
  EXPECT_EQ(lines().size(), 1u);
  EXPECT_EQ(flows_->parse_failures().at("dns"), 1u);
}

TEST_F(PayloadNaming, AnAddressInTheHostHeaderIsNeverADomain) {
  EXPECT_EQ(registrable_domain("127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(registrable_domain("::1"), "::1");
  EXPECT_EQ(registrable_domain("[2001:db8::1]"), "[2001:db8::1]");
  connect(5, "127.0.0.1", 19650);
  const std::string req = "POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1:19650\r\nContent-Length: 2\r\n\r\n{}";
  payload(5, PAYLOAD_TCP_FIRST, std::vector<uint8_t>(req.begin(), req.end()));
  close_flow(5, "127.0.0.1", 19650, 90);
  auto l = lines();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_FALSE(l[1]["destination"].contains("domain")) << l[1].dump();
  EXPECT_FALSE(l[1]["destination"].contains("registered_domain")) << l[1].dump();
  EXPECT_EQ(l[1]["destination"]["address"], "127.0.0.1");
  EXPECT_EQ(dest_label("19650"), "127.0.0.1");
}

// glibc's and musl's getaddrinfo connect a UDP socket to each candidate
// address to pick a source address, and never send on it.
TEST_F(PayloadNaming, AUdpConnectThatNeverSendsIsNoConnection) {
  for (uint64_t cookie : {70, 71}) {
    connect(cookie, "127.0.0.1", 0, true, CONNECT_RESULT_UNSENT);
    close_flow(cookie, "127.0.0.1", 0, 0, true);
  }
  EXPECT_TRUE(lines().empty());
  EXPECT_EQ(flows_->unsent_udp_connects().at("none"), 2u);
  EXPECT_EQ(flows_->open_flows(), 0u);
  EXPECT_TRUE(counters_.snapshot().empty());
}

// Resolver traffic is counted as bytes and marked DNS, but it is no
// connection: every lookup would otherwise count as one.
TEST_F(PayloadNaming, ResolverTrafficIsNoConnection) {
  connect(80, "127.0.0.53", 53, true);
  close_flow(80, "127.0.0.53", 53, 41, true);
  auto l = lines();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0]["event"]["action"], "connection-attempted");
  EXPECT_EQ(l[0]["network"]["protocol"], "dns");
  EXPECT_EQ(l[1]["network"]["protocol"], "dns");
  auto snap = counters_.snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].second.sent_bytes, 41u);
  for (uint64_t n : snap[0].second.connections) EXPECT_EQ(n, 0u);
}

TEST_F(PayloadNaming, UnnamedConnectionSettlesAfterTheWait) {
  connect(4, "127.0.0.1", 9000);
  flows_->emit_updates(2000 + FlowTable::kNameWaitNs - 1, 60 * kSec);
  EXPECT_TRUE(lines().empty());
  flows_->emit_updates(2000 + FlowTable::kNameWaitNs, 60 * kSec);
  auto l = lines();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0]["destination"]["ip"], "127.0.0.1");
  EXPECT_FALSE(l[0]["destination"].contains("domain"));
}

}  // namespace
}  // namespace egressd

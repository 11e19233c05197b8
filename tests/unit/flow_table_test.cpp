#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <map>

#include "addr_helpers.h"
#include "flow_table.h"
#include "memory_sink.h"
#include "redact.h"

namespace egressd {
namespace {

class FlowTableTest : public ::testing::Test {
 protected:
  // Every line the flow table wrote is the one nlohmann::json would write
  // for its document: each member once, in key order, escaped the same way.
  void TearDown() override { EXPECT_TRUE(log_.noncanonical().empty()) << log_.noncanonical().front(); }
  FlowTableTest() : procs_("/nonexistent", "h", nullptr, &redactor_) {
    host_ = HostInfo{"testhost", "boot", "0.0.0"};
    flows_ = std::make_unique<FlowTable>(FlowTableDeps{procs_, counters_, log_, host_, clock_});
    ExecRecord r{};
    r.fixed.proc = {500, 0, 42};
    r.exe = "/usr/bin/curl";
    r.argv = {"curl", "-H", "Authorization: Bearer abc", "https://example.com"};
    procs_.on_exec(r);
  }
  std::vector<nlohmann::json> lines() { return log_.events(); }

  static flow_addr dst(const char* ip, uint16_t port) { return test_addr::v4(ip, port); }
  // connect() by pid 500's thread tid to 192.0.2.10:port over TCP.
  static connect_event connect_ev(uint64_t cookie, uint16_t port, uint64_t ts, uint32_t tid) {
    connect_event c{};
    c.hdr = {EVENT_CONNECT, sizeof(c), 0, ts};
    c.cookie = cookie;
    c.proc = {500, 0, 42};
    c.tid = tid;
    c.dst = dst("192.0.2.10", port);
    c.sk_family = AF_INET;
    c.sk_type = SOCK_STREAM;
    c.sk_protocol = IPPROTO_TCP;
    return c;
  }

  sock_flow sock(uint64_t cookie, uint64_t bytes) {
    sock_flow s{};
    s.cookie = cookie;
    s.owner = {500, 0, 42};
    s.dst = dst("192.0.2.10", 443);
    s.sk_family = AF_INET;
    s.sk_type = SOCK_STREAM;
    s.sk_protocol = IPPROTO_TCP;
    s.flags = SOCK_F_CONNECTED;
    s.bytes = bytes;
    s.sends = bytes ? 1 : 0;
    return s;
  }

  // The release of socket s at ts.
  static sock_close_event close_ev(const sock_flow& s, uint64_t ts) {
    sock_close_event e{};
    e.hdr = {EVENT_SOCK_CLOSE, sizeof(e), 0, ts};
    e.reason = CLOSE_RELEASE;
    e.flow = s;
    return e;
  }

  uint64_t sent(const std::string& port) {
    uint64_t sum = 0;
    for (const auto& [k, t] : counters_.snapshot())
      if (k.port == port) sum += t.sent_bytes;
    return sum;
  }

  Redactor redactor_;
  ProcessTable procs_;
  EgressCounters counters_;
  test::MemorySink log_;
  HostInfo host_;
  Clock clock_;
  std::unique_ptr<FlowTable> flows_;
};

TEST_F(FlowTableTest, ConnectResultAndCloseMakeTwoEvents) {
  flows_->on_connect(connect_ev(9, 443, 1000, 500));
  flows_->on_connect_result({{EVENT_CONNECT_RESULT, 32, 0, 3000}, 9, CONNECT_RESULT_OK, 0});
  flows_->on_close(close_ev(sock(9, 4096), 9000));

  auto l = lines();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0]["event"]["action"], "connection-attempted");
  EXPECT_EQ(l[0]["event"]["duration"], 2000);
  EXPECT_EQ(l[0]["egressd"]["connection"]["result"], "ok");
  EXPECT_EQ(l[0]["destination"]["ip"], "192.0.2.10");
  EXPECT_EQ(l[0]["process"]["command_line"], "curl -H 'Authorization: Bearer [REDACTED]' https://example.com");
  EXPECT_EQ(l[1]["event"]["action"], "flow-ended");
  EXPECT_EQ(l[1]["source"]["bytes"], 4096);
  EXPECT_EQ(l[1]["process"]["executable"], "/usr/bin/curl");
  EXPECT_EQ(sent("443"), 4096u);
  auto snap = counters_.snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].second.connections[0], 1u);
  EXPECT_EQ(snap[0].first.binary, "/usr/bin/curl");
  EXPECT_EQ(snap[0].first.transport, "tcp");
}

// A connection a local server accepted: ingress, its local port in source,
// its bytes under egressd_inbound_sent_bytes_total's series only.
TEST_F(FlowTableTest, AcceptedConnectionIsIngressAndNotAnEgressSeries) {
  sock_flow s = sock(21, 6400);
  s.flags = SOCK_F_ADOPTED | SOCK_F_INBOUND;
  s.dst = dst("192.0.2.77", 51234);
  s.local_port = 8080;
  flows_->on_close(close_ev(s, 9000));
  auto l = lines();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0]["event"]["action"], "flow-ended");
  EXPECT_EQ(l[0]["network"]["direction"], "ingress");
  EXPECT_EQ(l[0]["source"]["port"], 8080);
  EXPECT_EQ(l[0]["source"]["bytes"], 6400);
  EXPECT_EQ(l[0]["destination"]["port"], 51234);
  auto snap = counters_.snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_TRUE(snap[0].first.inbound);
  EXPECT_EQ(snap[0].first.port, "8080");
  EXPECT_EQ(snap[0].first.destination, "");
  EXPECT_EQ(snap[0].second.sent_bytes, 6400u);
  EXPECT_EQ(snap[0].second.connections[0], 0u);
}

// The owner's bytes after an execve come as an extra flow under its new
// exec_id: charged to the new image, under an id of their own.
TEST_F(FlowTableTest, OwnerBytesAfterExecveAreAFlowOfTheNewImage) {
  flows_->on_connect(connect_ev(31, 443, 1000, 500));
  flows_->on_connect_result({{EVENT_CONNECT_RESULT, 32, 0, 2000}, 31, CONNECT_RESULT_OK, 0});
  ExecRecord r{};
  r.fixed.proc = {500, 1, 42};
  r.exe = "/usr/bin/python3";
  r.argv = {"python3", "upload.py"};
  procs_.on_exec(r);
  sock_flow owner = sock(31, 2500);
  owner.flags |= SOCK_F_EXTRA;
  flows_->on_close(close_ev(owner, 9000));
  flow_key k{};
  k.cookie = 31;
  k.sender = {500, 1, 42};
  k.dst = dst("192.0.2.10", 443);
  flow_counters c{};
  c.bytes = 7100;
  c.sends = 8;
  c.first_ns = 5000;
  c.last_ns = 8000;
  c.sk_family = AF_INET;
  c.sk_type = SOCK_STREAM;
  c.sk_protocol = IPPROTO_TCP;
  EXPECT_EQ(flows_->on_extra_flows({{k, c}}).size(), 1u);
  std::map<std::string, std::pair<std::string, uint64_t>> by_id;
  for (const auto& e : lines())
    if (e["event"]["action"] == "flow-ended")
      by_id[e["egressd"]["flow"]["id"]] = {e["process"]["executable"], e["source"]["bytes"]};
  ASSERT_EQ(by_id.size(), 2u);
  EXPECT_EQ(by_id["31-500-192.0.2.10-443"], (std::pair<std::string, uint64_t>{"/usr/bin/curl", 2500}));
  EXPECT_EQ(by_id["31-500-192.0.2.10-443-x1"], (std::pair<std::string, uint64_t>{"/usr/bin/python3", 7100}));
}

TEST_F(FlowTableTest, RefusedConnectionNamesItsErrorAndThread) {
  flows_->on_connect(connect_ev(11, 443, 1000, 501));
  flows_->on_connect_result({{EVENT_CONNECT_RESULT, 32, 0, 1500}, 11, CONNECT_RESULT_REFUSED, ECONNREFUSED});

  auto l = lines();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0]["event"]["outcome"], "failure");
  EXPECT_EQ(l[0]["event"]["duration"], 500);
  EXPECT_EQ(l[0]["egressd"]["connection"]["result"], "refused");
  EXPECT_EQ(l[0]["error"]["code"], "ECONNREFUSED");
  EXPECT_EQ(l[0]["process"]["thread"]["id"], 501);
  EXPECT_EQ(l[0]["process"]["pid"], 500);
  EXPECT_EQ(l[0]["egressd"]["tool"], nullptr);
}

// flows.log: summary: short flows and all attempts become one flow-summary per
// (process, destination, port, transport) and interval, with exact sums;
// a flow that outlives the interval keeps its own lines; metrics are exact.
TEST_F(FlowTableTest, SummaryModeFoldsShortFlowsIntoOneEventPerDestination) {
  const uint64_t kS = 1'000'000'000ULL;
  FlowTable flows(FlowTableDeps{procs_, counters_, log_, host_, clock_, nullptr, DestinationLabel::kName, 10 * kS});
  flows.emit_updates(1 * kS, 60 * kS);  // the interval starts
  auto connect = [&](uint64_t cookie, uint16_t port, uint64_t ts, uint32_t result, int32_t err) {
    flows.on_connect(connect_ev(cookie, port, ts, 500));
    flows.on_connect_result({{EVENT_CONNECT_RESULT, 32, 0, ts + 1000}, cookie, result, err});
  };
  auto close = [&](uint64_t cookie, uint16_t port, uint64_t ts, uint64_t bytes) {
    sock_close_event e{};
    e.hdr = {EVENT_SOCK_CLOSE, sizeof(e), 0, ts};
    e.reason = CLOSE_RELEASE;
    e.flow = sock(cookie, bytes);
    e.flow.dst = dst("192.0.2.10", port);
    e.flow.wire_bytes = bytes + 200;
    e.flow.wire_packets = 4;
    flows.on_close(e);
  };
  for (uint64_t i = 0; i < 3; ++i) {
    connect(100 + i, 443, 2 * kS + i, CONNECT_RESULT_OK, 0);
    close(100 + i, 443, 3 * kS + i, 1000 + i);
  }
  connect(200, 443, 4 * kS, CONNECT_RESULT_REFUSED, ECONNREFUSED);
  close(200, 443, 4 * kS + 5, 0);  // its SYN left (200 wire bytes in this fake)
  connect(300, 8443, 4 * kS, CONNECT_RESULT_OK, 0);  // lives past the interval
  flows.on_live_sockets({[&] {
    sock_flow s = sock(300, 50);
    s.dst = dst("192.0.2.10", 8443);
    return s;
  }()});
  EXPECT_TRUE(lines().empty()) << lines().front().dump();

  flows.emit_updates(11 * kS, 60 * kS);  // the interval ends
  auto l = lines();
  ASSERT_EQ(l.size(), 2u);
  std::map<int, nlohmann::json> by_port;
  for (const auto& j : l) {
    EXPECT_EQ(j["event"]["action"], "flow-summary");
    by_port[j["destination"]["port"].get<int>()] = j;
  }
  const nlohmann::json& s = by_port.at(443);
  EXPECT_EQ(s["egressd"]["summary"]["connections"], 4);
  EXPECT_EQ(s["egressd"]["summary"]["results"], nlohmann::json({{"ok", 3}, {"refused", 1}}));
  EXPECT_EQ(s["egressd"]["summary"]["flows"], 4);
  EXPECT_EQ(s["egressd"]["summary"]["addresses"], 1);
  EXPECT_EQ(s["source"]["bytes"], 3003);
  EXPECT_EQ(s["egressd"]["summary"]["sends"], 3);
  EXPECT_EQ(s["egressd"]["summary"]["wire_bytes"], 3803);
  EXPECT_EQ(s["egressd"]["summary"]["wire_packets"], 16);
  EXPECT_EQ(s["destination"]["ip"], "192.0.2.10");
  EXPECT_EQ(s["event"]["duration"], 2 * kS + 5);  // first attempt to the last event
  EXPECT_EQ(s["process"]["executable"], "/usr/bin/curl");
  EXPECT_EQ(by_port.at(8443)["egressd"]["summary"]["connections"], 1);
  EXPECT_EQ(by_port.at(8443)["egressd"]["summary"]["flows"], 0) << "still open";
  EXPECT_EQ(sent("443"), 3003u) << "metrics are exact";

  // The open flow outlives the interval: it ends with its own line.
  close(300, 8443, 20 * kS, 50);
  l = lines();
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[2]["event"]["action"], "flow-ended");
  EXPECT_EQ(l[2]["source"]["bytes"], 50);

  // Nothing happened since: no empty summaries; at stop the rest is logged.
  flows.emit_updates(25 * kS, 60 * kS);
  EXPECT_EQ(lines().size(), 3u);
  connect(400, 443, 26 * kS, CONNECT_RESULT_OK, 0);
  close(400, 443, 26 * kS + 5, 7);
  flows.flush_all(27 * kS, "agent-stopped");
  l = lines();
  ASSERT_EQ(l.size(), 4u);
  EXPECT_EQ(l[3]["event"]["action"], "flow-summary");
  EXPECT_EQ(l[3]["source"]["bytes"], 7);
}

TEST_F(FlowTableTest, PollsAddOnlyTheDifferenceAndCloseAddsTheRest) {
  flows_->on_live_sockets({sock(7, 100), sock(7, 100)});  // same socket, two descriptors
  EXPECT_EQ(sent("443"), 100u);
  flows_->on_live_sockets({sock(7, 250)});
  EXPECT_EQ(sent("443"), 250u);
  flows_->on_close(close_ev(sock(7, 300), 9000));
  EXPECT_EQ(sent("443"), 300u);
  EXPECT_EQ(flows_->open_flows(), 0u);
}

TEST_F(FlowTableTest, UpdatesAreLoggedOncePerIntervalAndOnlyWhenCountsMoved) {
  flows_->on_live_sockets({sock(8, 10)});
  const uint64_t start = 0;
  flows_->emit_updates(start + 5, 100);
  EXPECT_EQ(lines().size(), 0u);
  flows_->emit_updates(start + 200, 100);
  EXPECT_EQ(lines().size(), 1u);
  flows_->emit_updates(start + 400, 100);  // nothing new was sent
  EXPECT_EQ(lines().size(), 1u);
  flows_->on_live_sockets({sock(8, 20)});
  flows_->emit_updates(start + 450, 100);
  ASSERT_EQ(lines().size(), 2u);
  EXPECT_EQ(lines()[1]["source"]["bytes"], 20);
  EXPECT_EQ(lines()[1]["event"]["action"], "flow-updated");
}

TEST_F(FlowTableTest, ExtraFlowsEndAfterTheirSocketCloses) {
  flow_key k{};
  k.cookie = 11;
  k.sender = {500, 0, 42};
  k.dst = dst("198.51.100.1", 53);
  flow_counters c{};
  c.bytes = 60;
  c.sends = 2;
  c.sk_family = AF_INET;
  c.sk_type = SOCK_DGRAM;
  c.sk_protocol = IPPROTO_UDP;
  EXPECT_TRUE(flows_->on_extra_flows({{k, c}}).empty());
  EXPECT_EQ(sent("53"), 60u);

  sock_close_event close{};
  close.hdr = {EVENT_SOCK_CLOSE, sizeof(close), 0, 9000};
  close.flow = sock(11, 0);
  close.flow.flags = SOCK_F_UNCONNECTED | SOCK_F_EXTRA;
  flows_->on_close(close);
  EXPECT_TRUE(flows_->extra_ends_pending());
  c.bytes = 90;
  c.sends = 3;
  auto ended = flows_->on_extra_flows({{k, c}});
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].cookie, 11u);
  EXPECT_EQ(sent("53"), 90u);
  auto l = lines();
  ASSERT_EQ(l.size(), 1u);  // the unconnected primary flow had no bytes: no event
  EXPECT_EQ(l[0]["event"]["action"], "flow-ended");
  EXPECT_EQ(l[0]["destination"]["ip"], "198.51.100.1");
  EXPECT_EQ(l[0]["network"]["transport"], "udp");
  EXPECT_EQ(l[0]["source"]["bytes"], 90);
}

// A forked child exec'd and sent between the ring buffer read and the map
// read: its flows wait for the exec record (once), so they are charged to
// the program that sent them, not to the image it had before the exec.
TEST_F(FlowTableTest, FlowsOfAnImageNotYetReadWaitForItsExecRecord) {
  fork_event fork{};
  fork.hdr = {EVENT_FORK, sizeof(fork), 0, 100};
  fork.parent = {500, 0, 42};
  fork.child = {600, 0, 77};
  procs_.on_fork(fork);  // a copy of curl, exec id 0
  flows_->wait_for_images(true);
  flow_key k{};
  k.cookie = 12;
  k.sender = {600, 1, 77};  // after its exec: exec id 1
  k.dst = dst("198.51.100.2", 9);
  flow_counters c{};
  c.bytes = 64;
  c.sends = 1;
  c.sk_family = AF_INET;
  c.sk_type = SOCK_DGRAM;
  c.sk_protocol = IPPROTO_UDP;
  sock_close_event close{};
  close.hdr = {EVENT_SOCK_CLOSE, sizeof(close), 0, 200};
  close.flow = sock(12, 0);
  close.flow.owner = k.sender;
  close.flow.flags = SOCK_F_UNCONNECTED | SOCK_F_EXTRA;
  flows_->on_close(close);
  EXPECT_TRUE(flows_->on_extra_flows({{k, c}}).empty());
  EXPECT_EQ(sent("9"), 0u);
  EXPECT_EQ(flows_->waited_for_image(), 1u);
  EXPECT_TRUE(flows_->extra_ends_pending()) << "its socket's close is kept for the next read";

  ExecRecord r{};
  r.fixed.proc = {600, 1, 77};
  r.exe = "/usr/bin/spray";
  r.argv = {"spray"};
  procs_.on_exec(r);
  ASSERT_EQ(flows_->on_extra_flows({{k, c}}).size(), 1u);
  EXPECT_EQ(sent("9"), 64u);
  auto l = lines();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0]["process"]["executable"], "/usr/bin/spray");

  // An image that never comes (its record was lost) waits once, not forever.
  flow_key lost = k;
  lost.cookie = 13;
  lost.sender = {600, 5, 77};
  EXPECT_TRUE(flows_->on_extra_flows({{lost, c}}).empty());
  flows_->on_extra_flows({{lost, c}});
  EXPECT_EQ(sent("9"), 128u);
}

TEST_F(FlowTableTest, ResultWithoutAttemptIsCountedNotLogged) {
  flows_->on_connect_result({{EVENT_CONNECT_RESULT, 32, 0, 3000}, 12345, CONNECT_RESULT_OK, 0});
  EXPECT_EQ(flows_->results_without_attempt(), 1u);
  EXPECT_TRUE(lines().empty());
}

TEST_F(FlowTableTest, UnknownSenderStillCounts) {
  sock_flow s = sock(13, 77);
  s.owner = {999999, 0, 1};  // no such process anywhere
  flows_->on_live_sockets({s});
  EXPECT_EQ(sent("443"), 77u);
  auto snap = counters_.snapshot();
  bool found = false;
  for (const auto& [k, t] : snap) found |= k.binary == "unknown" && t.sent_bytes == 77;
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace egressd

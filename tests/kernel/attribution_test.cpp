// Who sent the bytes, in the cases an outside check found wrong: a program
// run from a memfd, bytes sent after an execve on a socket the new image
// kept, and a local server's bytes to a client that connected to it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "harness.h"

namespace egressd::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class Attribution : public SharedAgentTest {
 protected:
  // The flow-ended events of pid to port, once their bytes reach want.
  static std::vector<nlohmann::json> ended_flows(int pid, int port, uint64_t want) {
    wait_until([&] { return logged_bytes(agent_->events(), pid, port) >= want; }, 10s);
    std::vector<nlohmann::json> out;
    for (const auto& e : events_of(agent_->events(), "flow-ended", pid))
      if (field(e, "destination.port") == std::to_string(port)) out.push_back(e);
    return out;
  }
};

TEST_F(Attribution, ProgramRunFromMemfdIsNamedAsProcExeNamesItAndFlaggedFileless) {
  TcpSink sink;
  TrafficResult r = run_traffic(
      {"memfd-exec", "egressd-fileless", "tcp", "127.0.0.1", std::to_string(sink.port()), "3333", "1000", "send"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto ended = ended_flows(r.pid, sink.port(), 3333);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(logged_bytes(agent_->events(), r.pid, sink.port()), 3333u);
  EXPECT_EQ(field(ended[0], "process.executable"), "/memfd:egressd-fileless (deleted)") << ended[0].dump();
  EXPECT_EQ(ended[0]["egressd"]["process"]["fileless"], true) << ended[0].dump();
  double got = 0;
  wait_until([&] {
    return (got = metric_sum(agent_->scrape(), "egressd_sent_bytes_total",
                             {{"binary", "/memfd:egressd-fileless (deleted)"},
                              {"port", std::to_string(sink.port())}})) >= 3333;
  }, 10s);
  EXPECT_EQ(got, 3333);

  // A program from a file is not flagged.
  TrafficResult plain = run_traffic({"tcp", "127.0.0.1", std::to_string(sink.port()), "100", "100", "send"});
  auto plain_ended = ended_flows(plain.pid, sink.port(), 100);
  ASSERT_EQ(plain_ended.size(), 1u);
  EXPECT_FALSE(plain_ended[0]["egressd"]["process"].contains("fileless")) << plain_ended[0].dump();
}

TEST_F(Attribution, BytesSentAfterExecveAreChargedToTheImageThatSentThem) {
  TempDir dir("egressd-exec-charge");
  const std::string second = dir.path() + "/second-image";
  fs::copy_file(traffic_bin(), second);
  chmod(second.c_str(), 0755);
  const std::string second_exe = fs::canonical(second).string();
  TcpSink sink;
  const std::string port = std::to_string(sink.port());
  TrafficResult r = run_traffic({"tcp-exec", "127.0.0.1", port, "2500", second_exe, "7100"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(r.bytes, 7100u);
  wait_until([&] { return logged_bytes(agent_->events(), r.pid, sink.port()) >= 9600; }, 10s);
  std::map<std::string, uint64_t> by_exe;
  std::set<std::string> ids;
  // Final count per flow: the last flow-updated or flow-ended of each id.
  std::map<std::string, std::pair<std::string, uint64_t>> last;
  const auto events = agent_->events();
  for (const char* action : {"flow-updated", "flow-ended"})
    for (const auto& e : events_of(events, action, r.pid))
      if (e["destination"]["port"] == sink.port())
        last[field(e, "egressd.flow.id")] = {field(e, "process.executable"), e["source"]["bytes"].get<uint64_t>()};
  for (const auto& [id, v] : last) by_exe[v.first] += v.second;
  EXPECT_EQ(by_exe[traffic_bin()], 2500u);
  EXPECT_EQ(by_exe[second_exe], 7100u);
  EXPECT_EQ(by_exe.size(), 2u);
  // Scrapes show the totals of the last checkpoint (docs/METRICS.md,
  // staleness): within a quarter second of the log.
  std::string scrape;
  wait_until([&] {
    scrape = agent_->scrape();
    return metric_sum(scrape, "egressd_sent_bytes_total", {{"port", port}}) >= 9600;
  }, 2s);
  EXPECT_EQ(metric_sum(scrape, "egressd_sent_bytes_total", {{"binary", traffic_bin()}, {"port", port}}), 2500);
  EXPECT_EQ(metric_sum(scrape, "egressd_sent_bytes_total", {{"binary", second_exe}, {"port", port}}), 7100);
}

TEST_F(Attribution, AcceptedConnectionIsIngressAndStaysOutOfEgressMetrics) {
  const int port = free_tcp_port();
  InteractiveTraffic server(traffic_bin(), {"serve-send", "127.0.0.1", std::to_string(port), "6400"});
  ASSERT_FALSE(server.first_line().empty());
  // The test itself is the client: it connects and reads what the server sends.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(port));
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  sockaddr_in local{};
  socklen_t len = sizeof(local);
  getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
  const int client_port = ntohs(local.sin_port);
  uint64_t got = 0;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) got += static_cast<uint64_t>(n);
  close(fd);
  EXPECT_EQ(got, 6400u);
  EXPECT_EQ(server.finish(), 0);

  auto ended = ended_flows(server.pid(), client_port, 6400);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(field(ended[0], "network.direction"), "ingress") << ended[0].dump();
  EXPECT_EQ(ended[0]["source"]["bytes"], 6400) << ended[0].dump();
  EXPECT_EQ(ended[0]["destination"]["port"], client_port);
  EXPECT_EQ(ended[0]["source"]["port"], port) << ended[0].dump();
  // No connection of the server's: it connected to nobody.
  EXPECT_TRUE(events_of(agent_->events(), "connection-attempted", server.pid()).empty());
  double inbound = 0;
  wait_until([&] {
    return (inbound = metric_sum(agent_->scrape(), "egressd_inbound_sent_bytes_total",
                                 {{"binary", traffic_bin()}, {"port", std::to_string(port)}})) >= 6400;
  }, 10s);
  EXPECT_EQ(inbound, 6400);
  const std::string scrape = agent_->scrape();
  EXPECT_EQ(metric_sum(scrape, "egressd_sent_bytes_total", {{"port", std::to_string(client_port)}}), 0);
  EXPECT_EQ(metric_sum(scrape, "egressd_connections_total", {{"port", std::to_string(client_port)}}), 0);
}

}  // namespace
}  // namespace egressd::test

// A real Prometheus (Debian's package) scrapes the real agent on loopback;
// PromQL returns the exact bytes of a known workload per tool and
// destination, and promtool finds nothing to say about the exposition.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "harness.h"

namespace egressd::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

TEST(Prometheus, PromQLReturnsExactBytesPerToolAndDestination) {
  EGRESSD_REQUIRE_KERNEL();
  ASSERT_TRUE(fs::exists("/usr/bin/prometheus")) << "Debian's prometheus package is needed (scripts/install-deps.sh --with-tests)";
  TempDir tmp("egressd-prom");
  const std::string& dir = tmp.path();
  const std::string tool_bin = dir + "/opt/promtool-fake/bin/fake-agent";
  fs::create_directories(fs::path(tool_bin).parent_path());
  fs::copy_file(traffic_bin(), tool_bin);
  std::ofstream(dir + "/egressd.yaml") << "tools:\n  - name: prom-fake\n    match: {executables: ['*/promtool-fake/bin/*']}\n";
  AgentProcess agent({"--config", dir + "/egressd.yaml"});
  ASSERT_TRUE(agent.started()) << agent.stderr_text();

  TcpSink v4("127.0.0.1"), v6("::1");
  ASSERT_EQ(run_traffic({"tcp", "127.0.0.1", std::to_string(v4.port()), "10000", "1000", "send"}, {}, tool_bin).exit_code, 0);
  ASSERT_EQ(run_traffic({"tcp", "127.0.0.1", std::to_string(v4.port()), "2345", "1000", "writev"}, {}, tool_bin).exit_code, 0);
  ASSERT_EQ(run_traffic({"tcp", "::1", std::to_string(v6.port()), "777", "777", "sendmsg"}, {}, tool_bin).exit_code, 0);

  PrometheusServer prom(dir, agent.metrics_address());
  ASSERT_TRUE(prom.ready());
  std::map<std::string, double> got;
  wait_until([&] {
    got.clear();
    for (const auto& r : prom.query("sum by (tool, destination) (egressd_sent_bytes_total{tool=\"prom-fake\"})"))
      got[r["metric"]["destination"].get<std::string>()] = std::stod(r["value"][1].get<std::string>());
    return got["127.0.0.1"] == 12345 && got["::1"] == 777;
  }, 30s);
  EXPECT_EQ(got["127.0.0.1"], 12345);
  EXPECT_EQ(got["::1"], 777);
  EXPECT_EQ(got.size(), 2u);
  auto conns = prom.query("sum(egressd_connections_total{tool=\"prom-fake\",result=\"ok\"})");
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_EQ(conns[0]["value"][1], "3");

  // promtool lints the exposition itself.
  const std::string expo = dir + "/exposition.txt";
  std::ofstream(expo) << agent.scrape();
  int code = -1;
  std::string lint = run_capture("/usr/bin/promtool check metrics < " + expo + " 2>&1", &code);
  EXPECT_EQ(code, 0) << lint;
  EXPECT_EQ(lint, "") << lint;
}

}  // namespace
}  // namespace egressd::test

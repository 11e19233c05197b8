// The agent stays bounded whatever the machine does: many thousands of
// destinations keep the series at the budget with bytes still exact, and a
// full disk under the event log costs log lines, not the agent.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "harness.h"

namespace egressd::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

uint64_t rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  uint64_t v = 0;
  while (in >> key) {
    if (key == "VmHWM:") {
      in >> v;
      return v;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

TEST(Bounds, ThousandsOfDestinationsStayWithinTheSeriesBudget) {
  EGRESSD_REQUIRE_KERNEL();
  TempDir tmp("egressd-bounds");
  const std::string& dir = tmp.path();
  std::ofstream(dir + "/egressd.yaml") << "metrics:\n  max_series: 200\n  max_destinations_per_binary: 50\n";
  AgentProcess agent({"--config", dir + "/egressd.yaml"});
  ASSERT_TRUE(agent.started()) << agent.stderr_text();

  // 6000 destinations (ports 20000-25999), 10 datagrams of 16 bytes each.
  const int kDestinations = 6000;
  std::string ports;
  for (int p = 20000; p < 20000 + kDestinations; ++p) ports += (ports.empty() ? "" : ",") + std::to_string(p);
  TrafficResult r = run_traffic({"udp-to", "127.0.0.1", ports, "10", "16"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const double want = double(kDestinations) * 10 * 16;

  std::string text;
  double sent = 0;
  wait_until([&] {
    text = agent.scrape();
    sent = metric_sum(text, "egressd_sent_bytes_total", {{"binary", traffic_bin()}});
    return sent >= want;
  }, 20s);
  EXPECT_EQ(sent, want) << "bytes sum to the truth across 'other'";
  EXPECT_EQ(metric_sum(text, "egressd_sent_bytes_total", {{"binary", traffic_bin()}, {"destination", "other"}}),
            double(kDestinations - 50) * 160);
  EXPECT_LE(metric_sum(text, "egressd_series", {}), 200);
  EXPECT_EQ(metric_sum(text, "egressd_series_folded_total", {}), kDestinations - 50);
  int series_of_binary = 0;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line))
    if (line.rfind("egressd_sent_bytes_total{", 0) == 0 && line.find(traffic_bin()) != std::string::npos) ++series_of_binary;
  EXPECT_EQ(series_of_binary, 51);  // 50 destinations and "other"
  const uint64_t rss = rss_kb(agent.pid());
  EXPECT_GT(rss, 0u);
#ifndef EGRESSD_SANITIZED  // ASan's shadow memory and quarantine are not the agent's
  EXPECT_LT(rss, 50u * 1024) << "agent peak RSS in kB";
#endif
}

TEST(Bounds, FullDiskCostsLogLinesNotTheAgent) {
  EGRESSD_REQUIRE_KERNEL();
  TmpfsDir disk("egressd-fulldisk", "16k");  // unmounted however the test ends
  ASSERT_TRUE(disk.mounted()) << disk.error();
  {
    AgentProcess agent({}, disk / "events.json");
    ASSERT_TRUE(agent.started()) << agent.stderr_text();
    // The agent-started line fits; fill the disk with flows until writes fail.
    TcpSink sink;
    for (int i = 0; i < 60; ++i)
      run_traffic({"tcp", "127.0.0.1", std::to_string(sink.port()), "100", "100", "send"});
    double failures = 0;
    wait_until([&] {
      const std::string text = agent.scrape();
      failures = metric_sum(text, "egressd_log_write_failures_total", {});
      return failures > 0;
    }, 20s);
    EXPECT_GT(failures, 0);
    // Still counting: the last sender's bytes reach the metrics.
    TrafficResult r = run_traffic({"tcp", "127.0.0.1", std::to_string(sink.port()), "4242", "1000", "send"});
    double got = 0;
    wait_until([&] {
      got = metric_sum(agent.scrape(), "egressd_sent_bytes_total", {{"binary", traffic_bin()}, {"port", std::to_string(sink.port())}});
      return got >= 60 * 100 + 4242;
    }, 10s);
    EXPECT_EQ(got, 60 * 100 + 4242);
    EXPECT_EQ(agent.stop(), 0);
    const std::string err = agent.stderr_text();
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_NE(err.find("No space left on device"), std::string::npos) << err;
  }
}

}  // namespace
}  // namespace egressd::test

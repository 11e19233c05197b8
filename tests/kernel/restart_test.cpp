// Restarts (issue 16): the kernel state is pinned per instance and outlives
// the agent, so a restart by SIGTERM or SIGKILL in the middle of a long flow
// and of 1,000 short ones loses no byte from the event log and counts none
// twice in the metrics; a pinned layout this build cannot read is discarded
// with its reason.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "harness.h"
#include "temp_dir.h"

namespace egressd::test {
namespace {

using namespace std::chrono_literals;

std::vector<nlohmann::json> all_events(std::initializer_list<const AgentProcess*> agents) {
  std::vector<nlohmann::json> out;
  for (const AgentProcess* a : agents) {
    auto e = a->events();
    out.insert(out.end(), e.begin(), e.end());
  }
  return out;
}

std::string pinned_state(const AgentProcess& agent) {
  for (const auto& e : agent.events())
    if (field(e, "event.action") == "agent-started") return field(e, "egressd.kernel.pinned.state");
  return "";
}

std::string pinned_reason(const AgentProcess& agent) {
  for (const auto& e : agent.events())
    if (field(e, "event.action") == "agent-started") return field(e, "egressd.kernel.pinned.reason");
  return "";
}

bool pinned(const std::string& instance) {
  struct stat st {};
  return stat((std::string(kPinRoot) + "/" + instance + "/meta").c_str(), &st) == 0;
}

class Restart : public ::testing::Test {
 protected:
  void SetUp() override {
    EGRESSD_REQUIRE_KERNEL();
    instance_ = "restart-" + std::to_string(getpid());
    remove_pins(instance_);
  }
  void TearDown() override { remove_pins(instance_); }
  std::vector<std::string> args() const { return {"--instance", instance_}; }
  void sigterm_then_sigkill(const char* as_b, const char* state_b, const char* as_c, const char* state_c);
  std::string instance_;
};

// A SIGTERM then a SIGKILL in the middle of a long flow and 1,000 short ones.
// as_b, as_c: the builds the second and third agents pretend to be
// (EGRESSD_TEST_PIN_IDENTITY; "" for this one), and the state each should
// report.
void Restart::sigterm_then_sigkill(const char* as_b, const char* state_b, const char* as_c, const char* state_c) {
  TcpSink sink;
  const std::string port = std::to_string(sink.port());
  auto a = std::make_unique<AgentProcess>(args());
  ASSERT_TRUE(a->started()) << a->stderr_text();
  EXPECT_EQ(pinned_state(*a), "new");
  ASSERT_TRUE(pinned(instance_));

  // 100,000 bytes over about 6 s on one connection, and 1,000 connections
  // of 100 bytes paced across the same time.
  InteractiveTraffic long_flow(traffic_bin(), {"tcp-paced", "127.0.0.1", port, "100000", "1000", "60"});
  ASSERT_NE(long_flow.first_line().find("connected"), std::string::npos) << long_flow.first_line();
  TrafficResult shorts;
  shorts.exit_code = 0;
  std::thread short_ones([&] {
    for (int i = 0; i < 10; ++i) {
      TrafficResult r = run_traffic({"tcp-many", "127.0.0.1", port, "100", "100"});
      if (r.exit_code != 0) shorts.exit_code = r.exit_code;
      shorts.bytes += r.bytes;
      shorts.output += std::to_string(r.pid) + " ";
      std::this_thread::sleep_for(400ms);
    }
  });

  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(a->stop(), 0);  // SIGTERM
  setenv("EGRESSD_TEST_PIN_IDENTITY", as_b, 1);
  auto b = std::make_unique<AgentProcess>(args());
  unsetenv("EGRESSD_TEST_PIN_IDENTITY");
  ASSERT_TRUE(b->started()) << b->stderr_text();
  EXPECT_EQ(pinned_state(*b), state_b) << pinned_reason(*b);
  if (std::string(state_b) == "handed-over")
    EXPECT_NE(pinned_reason(*b).find("pinned by other programs"), std::string::npos) << pinned_reason(*b);
  std::this_thread::sleep_for(1500ms);
  b->kill_hard();  // SIGKILL: nothing flushed
  std::this_thread::sleep_for(700ms);  // no agent at all: the kernel keeps counting
  setenv("EGRESSD_TEST_PIN_IDENTITY", as_c, 1);
  auto c = std::make_unique<AgentProcess>(args());
  unsetenv("EGRESSD_TEST_PIN_IDENTITY");
  ASSERT_TRUE(c->started()) << c->stderr_text();
  EXPECT_EQ(pinned_state(*c), state_c) << pinned_reason(*c);

  ASSERT_EQ(long_flow.finish(), 0);
  short_ones.join();
  ASSERT_EQ(shorts.exit_code, 0) << shorts.output;
  ASSERT_EQ(shorts.bytes, 100000u) << shorts.output;

  // Every flow's last line, whichever agent wrote it, carries its whole count.
  uint64_t long_logged = 0, short_logged = 0;
  std::vector<int> short_pids;
  for (size_t at = 0; at < shorts.output.size();) {
    size_t end = shorts.output.find(' ', at);
    short_pids.push_back(std::stoi(shorts.output.substr(at, end - at)));
    at = end + 1;
  }
  wait_until([&] {
    auto events = all_events({a.get(), b.get(), c.get()});
    long_logged = logged_bytes(events, long_flow.pid(), sink.port());
    short_logged = 0;
    for (int pid : short_pids) short_logged += logged_bytes(events, pid, sink.port());
    return long_logged >= 100000 && short_logged >= 100000;
  }, 15s);
  EXPECT_EQ(long_logged, 100000u);
  EXPECT_EQ(short_logged, 100000u);
  // The long flow kept its id through both restarts.
  std::set<std::string> ids;
  for (const auto& e : all_events({a.get(), b.get(), c.get()}))
    if (field(e, "process.pid") == std::to_string(long_flow.pid()) && !field(e, "egressd.flow.id").empty())
      ids.insert(field(e, "egressd.flow.id"));
  EXPECT_EQ(ids.size(), 1u);
  // Metrics: the totals are checkpointed and each flow's counts are in the
  // ledger (agent/pipeline/counted_ledger.h), so the last agent's metric is
  // exactly what was sent, through the SIGTERM and the SIGKILL alike.
  std::string scrape;
  wait_until([&] {
    scrape = c->scrape();
    return metric_sum(scrape, "egressd_sent_bytes_total", {{"port", port}}) >= 200000;
  }, 5s);
  EXPECT_EQ(metric_sum(scrape, "egressd_sent_bytes_total", {{"binary", traffic_bin()}, {"port", port}}), 200000);
  EXPECT_EQ(metric_sum(scrape, "egressd_send_calls_total", {{"binary", traffic_bin()}, {"port", port}}), 100 + 1000);
  // Connections are not exact yet (open, wip/STATUS.md): in most runs all
  // 1,001 are counted; in about one run of three one connection made while
  // an adopting agent starts is neither logged nor counted (its close shows
  // connect_state still pending and SOCK_F_PEEK still set, as if neither
  // inet_sock_set_state nor cgroup_skb/egress had found its state); and now
  // and then a whole batch of short connections around the SIGKILL goes
  // uncounted while its bytes are exact (seen: 930 and 900 of 1,001). Never
  // more than were made; the bound below is what was seen, not a target.
  const double connections = metric_sum(scrape, "egressd_connections_total",
                                        {{"binary", traffic_bin()}, {"port", port}, {"result", "ok"}});
  std::cout << "connections counted across the restarts: " << connections << " of 1001\n";
  EXPECT_LE(connections, 1 + 1000);
  EXPECT_GE(connections, 1 + 1000 - 200);
  EXPECT_EQ(c->stop(), 0);
  EXPECT_TRUE(pinned(instance_)) << "a stopped agent leaves its state pinned for the next one";
}

TEST_F(Restart, SigtermThenSigkillInTheMiddleOfALongFlowAnd1000ShortOnesLoseNoByte) {
  sigterm_then_sigkill("", "adopted", "", "adopted");
}

// Upgrades: the second agent is another build (same pin layout), and so is
// the third, which takes over from the SIGKILLed second. Each one's programs
// replace the ones before through the generation word: the sums stay exact,
// so the old programs neither went on counting nor stopped too early.
TEST_F(Restart, UpgradesIntoOtherBuildsHandOverWithoutALostOrDoubledByte) {
  sigterm_then_sigkill("newer", "handed-over", "newer-still", "handed-over");
}

TEST_F(Restart, MetricsContinueExactlyAcrossASigterm) {
  TcpSink sink;
  const std::string port = std::to_string(sink.port());
  const std::map<std::string, std::string> ours = {{"binary", traffic_bin()}};
  AgentProcess a(args());
  ASSERT_TRUE(a.started()) << a.stderr_text();
  InteractiveTraffic long_flow(traffic_bin(), {"tcp-paced", "127.0.0.1", port, "50000", "1000", "60"});
  ASSERT_NE(long_flow.first_line().find("connected"), std::string::npos) << long_flow.first_line();
  TrafficResult before = run_traffic({"tcp-many", "127.0.0.1", port, "50", "100"});
  ASSERT_EQ(before.exit_code, 0) << before.output;
  std::this_thread::sleep_for(2500ms);  // a poll and its checkpoint
  const double seen = metric_sum(a.scrape(), "egressd_sent_bytes_total", ours);
  EXPECT_GT(seen, 0.0);
  EXPECT_EQ(a.stop(), 0);
  AgentProcess b(args());
  ASSERT_TRUE(b.started()) << b.stderr_text();
  EXPECT_EQ(pinned_state(b), "adopted") << pinned_reason(b);
  // Never below what a scraper saw before the restart: no counter reset.
  EXPECT_GE(metric_sum(b.scrape(), "egressd_sent_bytes_total", ours), seen);
  TrafficResult after = run_traffic({"tcp-many", "127.0.0.1", port, "50", "100"});
  ASSERT_EQ(after.exit_code, 0) << after.output;
  ASSERT_EQ(long_flow.finish(), 0);
  double total = 0;
  wait_until([&] { return (total = metric_sum(b.scrape(), "egressd_sent_bytes_total", ours)) >= 60000; }, 10s);
  std::this_thread::sleep_for(2500ms);  // nothing more comes
  EXPECT_EQ(metric_sum(b.scrape(), "egressd_sent_bytes_total", ours), 60000.0);
}

TEST_F(Restart, PinnedStateOfALayoutThisBuildCannotReadIsDiscardedWithItsReasonAndItsFlowsCounted) {
  TcpSink sink;
  // The hash store, whose socket states can be counted from user space
  // (PinnedState::flows_held), whatever this kernel would choose.
  TempDir dir("egressd-layout");
  const std::string config = dir.path() + "/egressd.yaml";
  std::ofstream(config) << "kernel:\n  socket_state: hash\n";
  std::vector<std::string> hash_store = args();
  hash_store.insert(hash_store.end(), {"--config", config});
  std::unique_ptr<InteractiveTraffic> held;
  {
    AgentProcess a(hash_store);
    ASSERT_TRUE(a.started()) << a.stderr_text();
    // An open flow in the pinned state when it is discarded.
    held = std::make_unique<InteractiveTraffic>(
        traffic_bin(), std::vector<std::string>{"--hold", "tcp", "127.0.0.1", std::to_string(sink.port()), "1000", "1000", "send"});
    ASSERT_NE(held->first_line().find("holding"), std::string::npos) << held->first_line();
    EXPECT_EQ(a.stop(), 0);  // its count so far is logged at the stop
    EXPECT_EQ(logged_bytes(a.events(), held->pid(), sink.port()), 1000u);
  }
  ASSERT_TRUE(pinned(instance_));
  setenv("EGRESSD_TEST_PIN_LAYOUT", "999", 1);  // as if another build had pinned it
  AgentProcess b(hash_store);
  unsetenv("EGRESSD_TEST_PIN_LAYOUT");
  ASSERT_TRUE(b.started()) << b.stderr_text();
  EXPECT_EQ(pinned_state(b), "discarded");
  EXPECT_NE(pinned_reason(b).find("layout 999, this build reads layout"), std::string::npos) << pinned_reason(b);
  const std::string scrape = b.scrape();
  EXPECT_EQ(metric_sum(scrape, "egressd_pinned_state_info", {{"state", "discarded"}}), 1);
  // The held socket at least (the host's other sockets are in it too).
  uint64_t discarded = 0;
  for (const auto& e : b.events())
    if (field(e, "event.action") == "agent-started")
      discarded = e["egressd"]["kernel"]["pinned"].value("discarded_flows", uint64_t{0});
  EXPECT_GE(discarded, 1u);
  EXPECT_EQ(metric_sum(scrape, "egressd_pinned_discarded_flows", {}), static_cast<double>(discarded));
  held->go();
  ASSERT_EQ(held->finish(), 0);
  TrafficResult r = run_traffic({"tcp", "127.0.0.1", std::to_string(sink.port()), "3000", "1000", "send"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  uint64_t logged = 0;
  wait_until([&] { return (logged = logged_bytes(b.events(), r.pid, sink.port())) >= 3000; }, 10s);
  EXPECT_EQ(logged, 3000u);

  // --fresh discards even what could be adopted.
  EXPECT_EQ(b.stop(), 0);
  std::vector<std::string> fresh = args();
  fresh.push_back("--fresh");
  AgentProcess c(fresh);
  ASSERT_TRUE(c.started()) << c.stderr_text();
  EXPECT_EQ(pinned_state(c), "discarded");
  EXPECT_EQ(pinned_reason(c), "--fresh");
}

TEST_F(Restart, TwoAgentsCannotShareAnInstance) {
  AgentProcess a(args());
  ASSERT_TRUE(a.started()) << a.stderr_text();
  AgentProcess b(args());
  EXPECT_FALSE(b.started());
  EXPECT_NE(b.stderr_text().find("is held by another egressd"), std::string::npos) << b.stderr_text();
}

}  // namespace
}  // namespace egressd::test

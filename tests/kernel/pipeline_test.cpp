// The Pipeline that `egressd run` and `egressd trace` both drive, driven in
// this process: real programs, real traffic, events into memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <variant>
#include <vector>

#include "harness.h"
#include "memory_sink.h"
#include "pipeline.h"

namespace egressd::test {
namespace {

using namespace std::chrono_literals;

TEST(Pipeline, StepsCarryExactBytesToTheSinkAndEveryEventToTheHook) {
  EGRESSD_REQUIRE_KERNEL();
  MemorySink sink;
  Pipeline pipeline(PipelineOptions{});
  pipeline.load(sink);
  std::vector<int> connecting_pids;
  pipeline.set_event_hook([&](const Event& ev) {
    if (const auto* c = std::get_if<connect_event>(&ev)) connecting_pids.push_back(static_cast<int>(c->proc.tgid));
  });
  pipeline.attach();
  ASSERT_GT(pipeline.procs().size(), 0u) << "the processes already running are in the table";

  TcpSink tcp;
  const int port = tcp.port();
  TrafficResult r = run_traffic({"tcp", "127.0.0.1", std::to_string(port), "12345", "1000", "send"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(r.bytes, 12345u);
  // The sender has exited and closed its socket: its flow ends within a few
  // rounds, with the kernel's count.
  const bool ended = wait_until(
      [&] {
        pipeline.step();
        return !events_of(sink.events(), "flow-ended", r.pid).empty();
      },
      10s);
  ASSERT_TRUE(ended);
  EXPECT_EQ(logged_bytes(sink.events(), r.pid, port), 12345u);
  EXPECT_EQ(std::count(connecting_pids.begin(), connecting_pids.end(), r.pid), 1);
  EXPECT_GE(pipeline.stats().ring_events.at("connect"), 1u);
  EXPECT_TRUE(pipeline.stats().decode_errors.empty());
  EXPECT_EQ(pipeline.stats().poll_errors, 0u);
}

TEST(Pipeline, FinishReportsOpenFlowsWithTheirCountSoFar) {
  EGRESSD_REQUIRE_KERNEL();
  MemorySink sink;
  Pipeline pipeline(PipelineOptions{});
  pipeline.load(sink);
  pipeline.attach();
  TcpSink tcp;
  const int port = tcp.port();
  // Sends 3000 bytes, then waits with the socket open until go().
  InteractiveTraffic held(traffic_bin(), {"--hold", "tcp", "127.0.0.1", std::to_string(port), "3000", "1000", "send"});
  ASSERT_TRUE(wait_until([&] { return tcp.received() >= 3000; }, 10s));
  pipeline.step();
  const uint64_t end = pipeline.finish("test-stopped");
  EXPECT_GT(end, 0u);
  std::vector<nlohmann::json> stopped;
  // Still open: a flow-updated with the reason, not an end.
  EXPECT_TRUE(events_of(sink.events(), "flow-ended", held.pid()).empty());
  for (const auto& e : events_of(sink.events(), "flow-updated", held.pid()))
    if (field(e, "event.reason") == "test-stopped") stopped.push_back(e);
  ASSERT_EQ(stopped.size(), 1u);
  EXPECT_EQ(stopped[0]["source"]["bytes"].get<uint64_t>(), 3000u);
  held.go();
  EXPECT_EQ(held.finish(), 0);
}

}  // namespace
}  // namespace egressd::test

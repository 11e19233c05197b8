#include <gtest/gtest.h>

#include "egress_counters.h"

namespace egressd {
namespace {

SeriesKey key(const std::string& binary, int i) {
  return {"claude-code", binary, "192.0.2." + std::to_string(i), "443", "tcp"};
}

uint64_t total_bytes(const EgressCounters& c) {
  uint64_t sum = 0;
  for (const auto& [k, t] : c.snapshot()) sum += t.sent_bytes;
  return sum;
}

TEST(SeriesBudget, DestinationsPerBinaryFoldIntoOther) {
  EgressCounters c({.max_series = 1000, .max_destinations = 3, .idle_ns = 1000});
  for (int i = 0; i < 10; ++i) c.add_sent(c.admit(key("/usr/bin/node", i), 1), 100, 1, 0, 0, 1);
  EXPECT_EQ(c.series(), 4u);  // three destinations and "other"
  EXPECT_EQ(c.folded(), 7u);
  EXPECT_EQ(total_bytes(c), 1000u);
  bool other = false;
  for (const auto& [k, t] : c.snapshot())
    if (k.destination == "other") {
      other = true;
      EXPECT_EQ(k.port, "other");
      EXPECT_EQ(k.binary, "/usr/bin/node");
      EXPECT_EQ(t.sent_bytes, 700u);
    }
  EXPECT_TRUE(other);
  // Another binary has a budget of its own.
  c.admit(key("/usr/bin/git", 1), 1);
  EXPECT_EQ(c.series(), 5u);
}

TEST(SeriesBudget, GlobalBudgetFoldsEverythingIntoOneSeries) {
  EgressCounters c({.max_series = 5, .max_destinations = 1000, .idle_ns = 1000});
  for (int i = 0; i < 100; ++i) c.add_sent(c.admit(key("/bin/b" + std::to_string(i), i), 1), 10, 1, 0, 0, 1);
  EXPECT_LE(c.series(), 6u);
  EXPECT_EQ(total_bytes(c), 1000u);
  bool all_other = false;
  for (const auto& [k, t] : c.snapshot()) all_other |= k.tool == "other" && k.binary == "other";
  EXPECT_TRUE(all_other);
}

TEST(SeriesBudget, IdleSeriesExpireUnlessAFlowStillUsesThem) {
  EgressCounters c({.max_series = 100, .max_destinations = 2, .idle_ns = 1000});
  SeriesKey a = c.admit(key("/usr/bin/node", 1), 10);
  SeriesKey b = c.admit(key("/usr/bin/node", 2), 10);
  c.expire(5000, {b});
  EXPECT_EQ(c.series(), 1u);
  EXPECT_EQ(c.expired(), 1u);
  // The freed place is available again without folding.
  SeriesKey d = c.admit(key("/usr/bin/node", 3), 5001);
  EXPECT_EQ(d.destination, "192.0.2.3");
  (void)a;
}

TEST(SeriesBudget, MillionDestinationsStayAtTheBudget) {
  EgressCounters c({.max_series = 500, .max_destinations = 100, .idle_ns = 1ULL << 60});
  for (int i = 0; i < 1'000'000; ++i) {
    SeriesKey k{"t", "/bin/x", std::to_string(i), "53", "udp"};
    c.add_sent(c.admit(k, 1), 1, 1, 0, 0, 1);
  }
  EXPECT_EQ(c.series(), 101u);
  EXPECT_EQ(total_bytes(c), 1'000'000u);
  EXPECT_EQ(c.folded(), 1'000'000u - 100u);
}

}  // namespace
}  // namespace egressd

#include <gtest/gtest.h>

#include "checkpoint.h"
#include "counted_ledger.h"
#include "egress_counters.h"

namespace egressd {
namespace {

SeriesKey key(const std::string& dest, bool inbound = false) {
  return SeriesKey{"claude-code", "/usr/bin/node", dest, "443", "tcp", inbound};
}

TEST(Checkpoint, RoundTripsEverySeriesAndCount) {
  EgressCounters c;
  c.add_sent(key("api.example.com"), 1234, 3, 1500, 7, 1);
  c.add_connection(key("api.example.com"), 2, 1);
  c.add_unexpected_flow(key("api.example.com"), 1);
  c.add_dns_query(key("resolver", true), 1);
  Checkpoint in{c.snapshot(), 42};
  std::string why;
  auto out = decode_checkpoint(encode_checkpoint(in), &why);
  ASSERT_TRUE(out) << why;
  EXPECT_EQ(out->written_boot_ns, 42u);
  ASSERT_EQ(out->series.size(), 2u);
  EXPECT_EQ(out->series[0].first, key("api.example.com"));
  EXPECT_EQ(out->series[0].second.sent_bytes, 1234u);
  EXPECT_EQ(out->series[0].second.sends, 3u);
  EXPECT_EQ(out->series[0].second.wire_bytes, 1500u);
  EXPECT_EQ(out->series[0].second.wire_packets, 7u);
  EXPECT_EQ(out->series[0].second.connections[2], 1u);
  EXPECT_EQ(out->series[0].second.unexpected_flows, 1u);
  EXPECT_EQ(out->series[1].first, key("resolver", true));
  EXPECT_EQ(out->series[1].second.dns_queries, 1u);
}

TEST(Checkpoint, AnotherVersionOrGarbageIsRefusedWithItsReason) {
  std::string why;
  EXPECT_FALSE(decode_checkpoint("{\"version\":2,\"written_boot_ns\":1,\"series\":[]}", &why));
  EXPECT_EQ(why, "checkpoint version 2, this build reads 1");
  EXPECT_FALSE(decode_checkpoint("\x01\x02garbage", &why));
  EXPECT_EQ(why, "not JSON");
  EXPECT_FALSE(decode_checkpoint("{\"version\":1,\"written_boot_ns\":1,\"series\":[{\"k\":[\"a\"],\"t\":[]}]}", &why));
  EXPECT_EQ(why.rfind("malformed checkpoint: ", 0), 0u) << why;
}

TEST(EgressCountersPublish, HeldTotalsShowOnlyWhatWasPublished) {
  EgressCounters c;
  c.hold_until_published(true);
  c.add_sent(key("a"), 100, 1, 0, 0, 1);
  EXPECT_TRUE(c.published().empty());
  c.publish();
  ASSERT_EQ(c.published().size(), 1u);
  c.add_sent(key("a"), 50, 1, 0, 0, 2);
  EXPECT_EQ(c.published()[0].second.sent_bytes, 100u);  // not yet
  EXPECT_EQ(c.snapshot()[0].second.sent_bytes, 150u);
  c.publish();
  EXPECT_EQ(c.published()[0].second.sent_bytes, 150u);
}

TEST(EgressCountersPublish, RestoredTotalsContinueAndArePublishedAtOnce) {
  EgressCounters old;
  old.add_sent(key("a"), 700, 2, 0, 0, 1);
  EgressCounters next;
  next.hold_until_published(true);
  next.restore(old.snapshot(), 5);
  ASSERT_EQ(next.published().size(), 1u);
  EXPECT_EQ(next.published()[0].second.sent_bytes, 700u);  // never below what was seen
  next.add_sent(key("a"), 300, 1, 0, 0, 6);
  next.publish();
  EXPECT_EQ(next.published()[0].second.sent_bytes, 1000u);
  EXPECT_EQ(next.published()[0].second.sends, 3u);
}

TEST(Checkpoint, SeriesKeysRoundTripAndGarbageIsRefused) {
  const SeriesKey k = key("api.example.com", true);
  EXPECT_EQ(decode_series_key(encode_series_key(k)), k);
  EXPECT_FALSE(decode_series_key("[1,2]"));
  EXPECT_FALSE(decode_series_key("not json"));
}

// After a SIGKILL: the last whole checkpoint (sequence 7), plus what the
// ledger entries written after it (generation 8) hold beyond their base.
TEST(CountedLedger, RestoresTheCheckpointPlusWhatEntriesCountedAfterIt) {
  SeriesTotals in_checkpoint;
  in_checkpoint.sent_bytes = 1000;
  in_checkpoint.sends = 10;
  in_checkpoint.connections[0] = 4;
  const std::vector<std::pair<SeriesKey, SeriesTotals>> checkpoint{{key("a.example"), in_checkpoint}};
  const std::map<uint32_t, SeriesKey> series{{1, key("a.example")}, {2, key("b.example")}};
  auto entry = [](uint64_t gen, uint32_t id, Counted base, Counted now) {
    return std::pair<CountedKey, CountedEntry>{CountedKey{uint64_t{gen * 100 + id}}, CountedEntry{gen, id, 0, base, now}};
  };
  const std::vector<std::pair<CountedKey, CountedEntry>> entries{
      // In checkpoint 7 already: adds nothing.
      entry(7, 1, Counted{0, 0, 0, 0, 0, 0}, Counted{500, 5, 0, 0, 1, 0}),
      // Counted 300 before 8 (in the checkpoint) and 200 more since.
      entry(8, 1, Counted{300, 3, 0, 0, 1, 0}, Counted{500, 5, 600, 6, 1, 0}),
      // New in 8, with its connection (result index 1: refused).
      entry(8, 2, Counted{}, Counted{70, 1, 0, 0, 2, 0}),
      // A series the store lost: skipped and counted.
      entry(8, 9, Counted{}, Counted{5, 1, 0, 0, 0, 0}),
  };
  uint64_t unknown = 0;
  auto totals = restored_totals(checkpoint, 7, series, entries, &unknown);
  std::map<SeriesKey, SeriesTotals> by(totals.begin(), totals.end());
  ASSERT_EQ(by.size(), 2u);
  EXPECT_EQ(by[key("a.example")].sent_bytes, 1200u);
  EXPECT_EQ(by[key("a.example")].sends, 12u);
  EXPECT_EQ(by[key("a.example")].wire_bytes, 600u);
  EXPECT_EQ(by[key("a.example")].connections[0], 4u);  // counted before 8
  EXPECT_EQ(by[key("b.example")].sent_bytes, 70u);
  EXPECT_EQ(by[key("b.example")].connections[1], 1u);
  EXPECT_EQ(unknown, 1u);
}

}  // namespace
}  // namespace egressd

#include <gtest/gtest.h>

#include "checkpoint.h"
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

}  // namespace
}  // namespace egressd

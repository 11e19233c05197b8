// DNS message decoding: real dnsmasq answers, every truncation of them, and
// hand-built hostile messages.
#include "dns_parser.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "hex_bytes.h"

namespace egressd {
namespace {

using test::hex_bytes;

// Captured on loopback from dnsmasq 2.90 (--local-ttl=300) with
//   --host-record=final.example.test,192.0.2.10,2001:db8::10
//   --host-record=final.example.test,192.0.2.11
//   --cname=www.example.test,mid.example.test
//   --cname=mid.example.test,final.example.test
// Query: "WWW.Example.Test" A.
const std::vector<uint8_t> kCnameChainResponse = hex_bytes(
    "1a2b8580000100040000000003575757074578616d706c65045465737400"
    "00010001c00c000500010000012c0012036d6964076578616d706c650474"
    "65737400c02e000500010000012c00140566696e616c076578616d706c65"
    "047465737400c04c000100010000012c0004c000020ac04c000100010000"
    "012c0004c000020b");
// "www.example.test" AAAA with an EDNS OPT record, and its answer.
const std::vector<uint8_t> kAaaaQuery = hex_bytes(
    "1a2c0100000100000000000103777777076578616d706c65047465737400"
    "001c000100002904d0000000000000");
const std::vector<uint8_t> kAaaaResponse = hex_bytes(
    "1a2c8580000100030000000103777777076578616d706c65047465737400"
    "001c0001c00c000500010000012c0012036d6964076578616d706c650474"
    "65737400c02e000500010000012c00140566696e616c076578616d706c65"
    "047465737400c04c001c00010000012c001020010db80000000000000000"
    "0000001000002904d0000000000000");
const std::vector<uint8_t> kNxdomainResponse = hex_bytes(
    "1a2e81830001000000000000076d697373696e67076578616d706c650474"
    "6573740000010001");
// Two answers over one TCP connection, each behind its 2-byte length.
const std::vector<uint8_t> kTcpResponses = hex_bytes(
    "008020018580000100040000000003777777076578616d706c6504746573"
    "740000010001c00c000500010000012c0012036d6964076578616d706c65"
    "047465737400c02e000500010000012c00140566696e616c076578616d70"
    "6c65047465737400c04c000100010000012c0004c000020bc04c00010001"
    "0000012c0004c000020a00402002858000010001000000000566696e616c"
    "076578616d706c65047465737400001c0001c00c001c00010000012c0010"
    "20010db8000000000000000000000010");

const Ipv4Address kFinalA{192, 0, 2, 10};
const Ipv4Address kFinalA2{192, 0, 2, 11};
const Ipv6Address kFinalAaaa{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};

// Builds messages byte by byte; offsets are what size() said before a write.
class Wire {
 public:
  Wire& u8(uint8_t v) {
    bytes_.push_back(v);
    return *this;
  }
  Wire& u16(uint16_t v) { return u8(v >> 8).u8(v & 0xFF); }
  Wire& u32(uint32_t v) { return u16(v >> 16).u16(v & 0xFFFF); }
  Wire& raw(const std::vector<uint8_t>& v) {
    bytes_.insert(bytes_.end(), v.begin(), v.end());
    return *this;
  }
  Wire& header(uint16_t id, uint16_t flags, uint16_t questions, uint16_t answers) {
    return u16(id).u16(flags).u16(questions).u16(answers).u16(0).u16(0);
  }
  // Labels only, for a pointer or the root to follow.
  Wire& labels(std::string_view dotted) {
    while (!dotted.empty()) {
      const size_t dot = dotted.find('.');
      const std::string_view label = dotted.substr(0, dot);
      u8(static_cast<uint8_t>(label.size()));
      for (char c : label) u8(static_cast<uint8_t>(c));
      dotted = dot == std::string_view::npos ? std::string_view() : dotted.substr(dot + 1);
    }
    return *this;
  }
  Wire& name(std::string_view dotted) { return labels(dotted).u8(0); }
  Wire& pointer(uint16_t offset) { return u16(0xC000 | offset); }
  Wire& question_fields(uint16_t type) { return u16(type).u16(kDnsClassIn); }
  Wire& record_fields(uint16_t type, uint32_t ttl, uint16_t rdlength, uint16_t rclass = kDnsClassIn) {
    return u16(type).u16(rclass).u32(ttl).u16(rdlength);
  }
  Wire& a_record(uint32_t ttl, Ipv4Address a) {
    record_fields(kDnsTypeA, ttl, 4);
    for (uint8_t b : a) u8(b);
    return *this;
  }

  uint16_t size() const { return static_cast<uint16_t>(bytes_.size()); }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

constexpr uint16_t kResponseFlags = 0x8180;  // QR, RD, RA, NOERROR
constexpr uint16_t kHeaderEnd = 12;

DnsAnswer cname(std::string owner, uint32_t ttl, std::string target) {
  return {std::move(owner), ttl, DnsCname{std::move(target)}};
}

TEST(DnsParser, RealCnameChainResponse) {
  const DnsParseResult r = parse_dns_message(kCnameChainResponse);
  ASSERT_EQ(r.status, DnsStatus::kOk);
  const DnsMessage& m = r.message;
  EXPECT_EQ(m.id, 0x1a2b);
  EXPECT_TRUE(m.is_response);
  EXPECT_EQ(m.opcode, 0);
  EXPECT_FALSE(m.truncated);
  EXPECT_EQ(m.rcode, 0);
  ASSERT_EQ(m.questions.size(), 1u);
  EXPECT_EQ(m.questions[0].name, "www.example.test");  // asked as WWW.Example.Test
  EXPECT_EQ(m.questions[0].qtype, kDnsTypeA);
  EXPECT_EQ(m.questions[0].qclass, kDnsClassIn);
  const std::vector<DnsAnswer> expected{
      cname("www.example.test", 300, "mid.example.test"),
      cname("mid.example.test", 300, "final.example.test"),
      {"final.example.test", 300, kFinalA},
      {"final.example.test", 300, kFinalA2},
  };
  EXPECT_EQ(m.answers, expected);
}

TEST(DnsParser, RealCnameChainResolvesToTheAskedName) {
  const std::vector<DnsResolvedAddress> resolved =
      resolve_answer_names(parse_dns_message(kCnameChainResponse).message);
  ASSERT_EQ(resolved.size(), 2u);
  EXPECT_EQ(resolved[0].address, IpAddress(kFinalA));
  EXPECT_EQ(resolved[1].address, IpAddress(kFinalA2));
  for (const DnsResolvedAddress& r : resolved) {
    EXPECT_EQ(r.asked_name, "www.example.test");
    EXPECT_EQ(r.canonical_name, "final.example.test");
    EXPECT_EQ(r.ttl, 300u);
  }
}

TEST(DnsParser, RealAaaaResponseWithEdns) {
  const DnsParseResult r = parse_dns_message(kAaaaResponse);
  ASSERT_EQ(r.status, DnsStatus::kOk);
  ASSERT_EQ(r.message.answers.size(), 3u);
  EXPECT_EQ(r.message.answers[2], (DnsAnswer{"final.example.test", 300, kFinalAaaa}));
  const std::vector<DnsResolvedAddress> resolved = resolve_answer_names(r.message);
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0].address, IpAddress(kFinalAaaa));
  EXPECT_EQ(resolved[0].asked_name, "www.example.test");
}

TEST(DnsParser, RealQueryHasNoAnswersToResolve) {
  const DnsParseResult r = parse_dns_message(kAaaaQuery);
  ASSERT_EQ(r.status, DnsStatus::kOk);
  EXPECT_FALSE(r.message.is_response);
  ASSERT_EQ(r.message.questions.size(), 1u);
  EXPECT_EQ(r.message.questions[0].qtype, kDnsTypeAaaa);
  EXPECT_TRUE(resolve_answer_names(r.message).empty());
}

TEST(DnsParser, RealNxdomain) {
  const DnsParseResult r = parse_dns_message(kNxdomainResponse);
  ASSERT_EQ(r.status, DnsStatus::kOk);
  EXPECT_EQ(r.message.rcode, 3);
  EXPECT_EQ(r.message.questions[0].name, "missing.example.test");
  EXPECT_TRUE(r.message.answers.empty());
}

// Whatever the cut, a prefix yields complete records only, all of them
// records of the whole message, in order.
TEST(DnsParser, EveryPrefixOfRealMessagesIsTruncatedOrComplete) {
  for (const auto* capture : {&kCnameChainResponse, &kAaaaQuery, &kAaaaResponse, &kNxdomainResponse}) {
    const DnsMessage whole = parse_dns_message(*capture).message;
    for (size_t n = 0; n < capture->size(); ++n) {
      const std::span<const uint8_t> prefix(capture->data(), n);
      const DnsParseResult r = parse_dns_message(prefix);
      SCOPED_TRACE(n);
      ASSERT_TRUE(r.status == DnsStatus::kTruncated || r.status == DnsStatus::kOk) << dns_status_name(r.status);
      ASSERT_LE(r.message.answers.size(), whole.answers.size());
      for (size_t i = 0; i < r.message.answers.size(); ++i) EXPECT_EQ(r.message.answers[i], whole.answers[i]);
      // Only the EDNS record, which is not read, may be missing from a complete one.
      if (r.status == DnsStatus::kOk) {
        EXPECT_EQ(r.message.answers.size(), whole.answers.size());
      }
    }
  }
}

TEST(DnsParser, TruncatedCaptureKeepsTheCompleteAnswers) {
  // Cut inside the last A record: the chain and the first address survive.
  const std::span<const uint8_t> cut(kCnameChainResponse.data(), kCnameChainResponse.size() - 3);
  const DnsParseResult r = parse_dns_message(cut);
  EXPECT_EQ(r.status, DnsStatus::kTruncated);
  ASSERT_EQ(r.message.answers.size(), 3u);
  const std::vector<DnsResolvedAddress> resolved = resolve_answer_names(r.message);
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0].address, IpAddress(kFinalA));
}

TEST(DnsParser, TcpStreamWithTwoMessages) {
  const DnsTcpParseResult r = parse_dns_tcp_stream(kTcpResponses);
  EXPECT_EQ(r.consumed, kTcpResponses.size());
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].status, DnsStatus::kOk);
  EXPECT_EQ(r.messages[0].message.id, 0x2001);
  EXPECT_EQ(r.messages[0].message.answers.size(), 4u);
  EXPECT_EQ(r.messages[1].status, DnsStatus::kOk);
  EXPECT_EQ(r.messages[1].message.id, 0x2002);
  ASSERT_EQ(r.messages[1].message.answers.size(), 1u);
  EXPECT_EQ(r.messages[1].message.answers[0].data, (DnsAnswer{"", 0, kFinalAaaa}.data));
}

TEST(DnsParser, EveryPrefixOfATcpStream) {
  constexpr size_t kSecondFrame = 2 + 0x80;
  for (size_t n = 0; n < kTcpResponses.size(); ++n) {
    SCOPED_TRACE(n);
    const DnsTcpParseResult r = parse_dns_tcp_stream(std::span(kTcpResponses.data(), n));
    const size_t complete_frames = n < kSecondFrame ? 0 : 1;
    EXPECT_EQ(r.consumed, complete_frames == 0 ? 0 : kSecondFrame);
    // A frame is reported once its length prefix is in.
    const size_t started_frames = complete_frames + ((n - r.consumed) >= 2 ? 1 : 0);
    ASSERT_EQ(r.messages.size(), started_frames);
    if (complete_frames == 1) {
      EXPECT_EQ(r.messages[0].status, DnsStatus::kOk);
    }
    if (started_frames > complete_frames) {
      EXPECT_EQ(r.messages.back().status, DnsStatus::kTruncated);
    }
  }
}

TEST(DnsParser, TcpFrameShorterThanAHeader) {
  const std::vector<uint8_t> stream{0x00, 0x03, 0x12, 0x34, 0x01};
  const DnsTcpParseResult r = parse_dns_tcp_stream(stream);
  EXPECT_EQ(r.consumed, stream.size());
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].status, DnsStatus::kTruncated);
}

TEST(DnsParser, CnameChainOfTwoHopsWithTtlsAndStrayRecords) {
  // www -> edge -> lb -> A, listed out of order, next to records for names
  // outside the chain, which must not be attributed to the question.
  Wire w;
  w.header(7, kResponseFlags, 1, 6);
  const uint16_t www = w.size();
  w.name("www.example.test").question_fields(kDnsTypeA);
  const uint16_t lb = w.size();
  w.labels("lb.cdn").u8(0).a_record(60, {198, 51, 100, 1});
  const uint16_t edge = w.size();
  w.labels("edge.cdn").u8(0).record_fields(kDnsTypeCname, 120, 2).pointer(lb);
  w.pointer(www).record_fields(kDnsTypeCname, 3600, 2).pointer(edge);
  w.labels("other").u8(0).a_record(600, {203, 0, 113, 9});
  w.pointer(lb).record_fields(kDnsTypeAaaa, 30, 16).raw(std::vector<uint8_t>(16, 0x42));
  w.labels("x").pointer(www).record_fields(kDnsTypeCname, 5, 2).pointer(edge);  // x.www: not asked
  const DnsParseResult r = parse_dns_message(w.bytes());
  ASSERT_EQ(r.status, DnsStatus::kOk);
  ASSERT_EQ(r.message.answers.size(), 6u);
  EXPECT_EQ(r.message.answers[5].name, "x.www.example.test");

  const std::vector<DnsResolvedAddress> resolved = resolve_answer_names(r.message);
  ASSERT_EQ(resolved.size(), 2u);
  EXPECT_EQ(resolved[0].address, IpAddress(Ipv4Address{198, 51, 100, 1}));
  EXPECT_EQ(resolved[0].asked_name, "www.example.test");
  EXPECT_EQ(resolved[0].canonical_name, "lb.cdn");
  EXPECT_EQ(resolved[0].ttl, 60u);
  EXPECT_EQ(resolved[1].address, IpAddress(Ipv6Address{0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                                       0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42}));
  EXPECT_EQ(resolved[1].ttl, 30u);
}

TEST(DnsParser, ChainTtlIsItsWeakestLink) {
  Wire w;
  w.header(7, kResponseFlags, 1, 3);
  const uint16_t a = w.size();
  w.name("a.test").question_fields(kDnsTypeA);
  const uint16_t b = w.size() + 12;  // the target inside the first CNAME's rdata
  w.pointer(a).record_fields(kDnsTypeCname, 900, 8).name("b.test");
  w.pointer(b).record_fields(kDnsTypeCname, 45, 8).name("c.test");
  w.pointer(b + 20).a_record(3000, {192, 0, 2, 1});
  const DnsParseResult r = parse_dns_message(w.bytes());
  ASSERT_EQ(r.status, DnsStatus::kOk);
  const std::vector<DnsResolvedAddress> resolved = resolve_answer_names(r.message);
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0].asked_name, "a.test");
  EXPECT_EQ(resolved[0].canonical_name, "c.test");
  EXPECT_EQ(resolved[0].ttl, 45u);
}

TEST(DnsParser, CnameLoopInAnswersEnds) {
  Wire w;
  w.header(7, kResponseFlags, 1, 3);
  const uint16_t a = w.size();
  w.name("a.test").question_fields(kDnsTypeA);
  const uint16_t b = w.size() + 12;
  w.pointer(a).record_fields(kDnsTypeCname, 60, 8).name("b.test");
  w.pointer(b).record_fields(kDnsTypeCname, 60, 2).pointer(a);
  w.pointer(b).a_record(60, {192, 0, 2, 2});
  const DnsParseResult r = parse_dns_message(w.bytes());
  ASSERT_EQ(r.status, DnsStatus::kOk);
  const std::vector<DnsResolvedAddress> resolved = resolve_answer_names(r.message);
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0].canonical_name, "b.test");
}

TEST(DnsParser, MultipleQuestions) {
  Wire w;
  w.header(9, kResponseFlags, 2, 2);
  const uint16_t first = w.size();
  w.name("one.test").question_fields(kDnsTypeA);
  const uint16_t second = w.size();
  w.name("two.test").question_fields(kDnsTypeAaaa);
  w.pointer(second).record_fields(kDnsTypeAaaa, 10, 16).raw(std::vector<uint8_t>(kFinalAaaa.begin(), kFinalAaaa.end()));
  w.pointer(first).a_record(20, kFinalA);
  const DnsParseResult r = parse_dns_message(w.bytes());
  ASSERT_EQ(r.status, DnsStatus::kOk);
  ASSERT_EQ(r.message.questions.size(), 2u);
  EXPECT_EQ(r.message.questions[1].name, "two.test");
  EXPECT_EQ(r.message.questions[1].qtype, kDnsTypeAaaa);
  const std::vector<DnsResolvedAddress> resolved = resolve_answer_names(r.message);
  ASSERT_EQ(resolved.size(), 2u);
  EXPECT_EQ(resolved[0].asked_name, "one.test");
  EXPECT_EQ(resolved[0].address, IpAddress(kFinalA));
  EXPECT_EQ(resolved[1].asked_name, "two.test");
  EXPECT_EQ(resolved[1].address, IpAddress(kFinalAaaa));
}

TEST(DnsParser, SelfPointer) {
  Wire w;
  w.header(1, 0, 1, 0).pointer(kHeaderEnd).question_fields(kDnsTypeA);
  EXPECT_EQ(parse_dns_message(w.bytes()).status, DnsStatus::kBadPointer);
}

TEST(DnsParser, TwoPointerCycle) {
  // The first points forward to the second, which points back to the first.
  Wire w;
  w.header(1, 0, 1, 0).pointer(kHeaderEnd + 2).pointer(kHeaderEnd).question_fields(kDnsTypeA);
  EXPECT_EQ(parse_dns_message(w.bytes()).status, DnsStatus::kBadPointer);
}

TEST(DnsParser, PointerBackIntoItsOwnName) {
  // "a" then a pointer to the name's own start: backwards, yet a loop.
  Wire w;
  w.header(1, 0, 1, 0).labels("a").pointer(kHeaderEnd).question_fields(kDnsTypeA);
  EXPECT_EQ(parse_dns_message(w.bytes()).status, DnsStatus::kBadPointer);
}

TEST(DnsParser, CycleThroughAnEarlierName) {
  // The answer's owner points into the question, whose name points forward
  // to the answer: each pointer alone looks plausible.
  Wire w;
  w.header(1, kResponseFlags, 1, 1);
  w.labels("q").pointer(kHeaderEnd + 2 + 2 + 4).question_fields(kDnsTypeA);
  w.labels("r").pointer(kHeaderEnd).a_record(1, kFinalA);
  EXPECT_EQ(parse_dns_message(w.bytes()).status, DnsStatus::kBadPointer);
}

TEST(DnsParser, PointerIntoTheHeader) {
  Wire w;
  w.header(1, 0, 1, 0).pointer(4).question_fields(kDnsTypeA);
  EXPECT_EQ(parse_dns_message(w.bytes()).status, DnsStatus::kBadPointer);
}

TEST(DnsParser, TooManyPointerJumps) {
  // Each owner is one label and a pointer to the owner before it: every jump
  // goes backwards, but 70 of them exceed the bound long before 255 octets.
  Wire w;
  w.header(1, kResponseFlags, 0, 70);
  uint16_t previous = w.size();
  w.name("z").record_fields(99, 1, 0);
  for (int i = 1; i < 70; ++i) {
    const uint16_t here = w.size();
    w.labels("y").pointer(previous).record_fields(99, 1, 0);
    previous = here;
  }
  EXPECT_EQ(parse_dns_message(w.bytes()).status, DnsStatus::kNameTooLong);
}

TEST(DnsParser, LongestNameIsAcceptedOneMoreOctetIsNot) {
  const std::string l63(63, 'a');
  const std::string longest = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');  // 255 octets
  Wire ok;
  ok.header(1, 0, 1, 0).name(longest).question_fields(kDnsTypeA);
  const DnsParseResult r = parse_dns_message(ok.bytes());
  ASSERT_EQ(r.status, DnsStatus::kOk);
  EXPECT_EQ(r.message.questions[0].name, longest);

  Wire too_long;
  too_long.header(1, 0, 1, 0).name(longest + "b").question_fields(kDnsTypeA);
  EXPECT_EQ(parse_dns_message(too_long.bytes()).status, DnsStatus::kNameTooLong);
}

TEST(DnsParser, NameTooLongOnlyOnceDecompressed) {
  const std::string l60(60, 'c');
  Wire w;
  w.header(1, kResponseFlags, 1, 1);
  const uint16_t q = w.size();
  w.name(l60 + "." + l60 + "." + l60 + "." + l60).question_fields(kDnsTypeA);  // 245 octets
  w.labels("abcdefghi.abcdefghi").pointer(q).a_record(1, kFinalA);            // +20
  EXPECT_EQ(parse_dns_message(w.bytes()).status, DnsStatus::kNameTooLong);
}

TEST(DnsParser, ReservedLabelTypes) {
  for (uint8_t bits : {0x40, 0x80}) {
    Wire w;
    w.header(1, 0, 1, 0).u8(bits | 3).raw({'a', 'b', 'c'}).u8(0).question_fields(kDnsTypeA);
    EXPECT_EQ(parse_dns_message(w.bytes()).status, DnsStatus::kBadLabel) << int(bits);
  }
}

TEST(DnsParser, LabelBytesAreEscaped) {
  Wire w;
  w.header(1, 0, 1, 0).u8(7).raw({'A', '.', 'b', 0, '\\', 0xff, ' '}).name("Test").question_fields(kDnsTypeA);
  const DnsParseResult r = parse_dns_message(w.bytes());
  ASSERT_EQ(r.status, DnsStatus::kOk);
  EXPECT_EQ(r.message.questions[0].name, "a\\.b\\000\\\\\\255\\032.test");
}

TEST(DnsParser, RootName) {
  Wire w;
  w.header(1, 0, 1, 0).u8(0).question_fields(2);
  const DnsParseResult r = parse_dns_message(w.bytes());
  ASSERT_EQ(r.status, DnsStatus::kOk);
  EXPECT_EQ(r.message.questions[0].name, "");
}

TEST(DnsParser, AddressLengthsMustFitTheirType) {
  Wire a;
  a.header(1, kResponseFlags, 0, 1).name("a.test").record_fields(kDnsTypeA, 1, 5).raw({1, 2, 3, 4, 5});
  EXPECT_EQ(parse_dns_message(a.bytes()).status, DnsStatus::kBadRecord);
  Wire aaaa;
  aaaa.header(1, kResponseFlags, 0, 1).name("a.test").record_fields(kDnsTypeAaaa, 1, 4).raw({1, 2, 3, 4});
  EXPECT_EQ(parse_dns_message(aaaa.bytes()).status, DnsStatus::kBadRecord);
}

TEST(DnsParser, CnameTargetMustEndWithItsRdata) {
  Wire longer;  // the target runs past rdlength into the next record
  longer.header(1, kResponseFlags, 0, 2).name("a.test").record_fields(kDnsTypeCname, 1, 3).name("b.test");
  longer.name("c.test").a_record(1, kFinalA);
  EXPECT_EQ(parse_dns_message(longer.bytes()).status, DnsStatus::kBadRecord);
  Wire shorter;  // rdata left over after the target
  shorter.header(1, kResponseFlags, 0, 1).name("a.test").record_fields(kDnsTypeCname, 1, 9).name("b.test").u8(0);
  EXPECT_EQ(parse_dns_message(shorter.bytes()).status, DnsStatus::kBadRecord);
}

TEST(DnsParser, MalformedMessageKeepsNoRecords) {
  Wire w;
  w.header(1, kResponseFlags, 1, 2).name("a.test").question_fields(kDnsTypeA);
  w.name("a.test").a_record(1, kFinalA).name("a.test").record_fields(kDnsTypeA, 1, 3).raw({1, 2, 3});
  const DnsParseResult r = parse_dns_message(w.bytes());
  EXPECT_EQ(r.status, DnsStatus::kBadRecord);
  EXPECT_EQ(r.message.id, 1);
  EXPECT_TRUE(r.message.questions.empty());
  EXPECT_TRUE(r.message.answers.empty());
}

TEST(DnsParser, RdataLengthPastTheEndIsTruncation) {
  Wire w;
  w.header(1, kResponseFlags, 0, 1).name("a.test").record_fields(kDnsTypeA, 1, 4).raw({1, 2});
  EXPECT_EQ(parse_dns_message(w.bytes()).status, DnsStatus::kTruncated);
}

TEST(DnsParser, CountsPastTheEndAreTruncation) {
  Wire w;
  w.header(1, kResponseFlags, 1, 5).name("a.test").question_fields(kDnsTypeA);
  EXPECT_EQ(parse_dns_message(w.bytes()).status, DnsStatus::kTruncated);
}

TEST(DnsParser, AbsurdCountsAreRejected) {
  Wire w;
  w.header(1, kResponseFlags, 0xffff, 0);
  EXPECT_EQ(parse_dns_message(w.bytes()).status, DnsStatus::kTooManyRecords);
  Wire answers;
  answers.header(1, kResponseFlags, 1, 0xffff);
  EXPECT_EQ(parse_dns_message(answers.bytes()).status, DnsStatus::kTooManyRecords);
}

TEST(DnsParser, OtherClassesAndTypesAreSkipped) {
  Wire w;
  w.header(1, kResponseFlags, 0, 3);
  w.name("a.test").record_fields(kDnsTypeA, 1, 4, 3).raw({1, 2, 3, 4});  // class CH
  w.name("a.test").record_fields(16, 1, 3).raw({2, 'h', 'i'});           // TXT
  w.name("a.test").a_record(1, kFinalA);
  const DnsParseResult r = parse_dns_message(w.bytes());
  ASSERT_EQ(r.status, DnsStatus::kOk);
  ASSERT_EQ(r.message.answers.size(), 1u);
  EXPECT_EQ(r.message.answers[0].data, (DnsAnswer{"", 0, kFinalA}.data));
}

TEST(DnsParser, TtlWithTheTopBitSetIsZero) {
  Wire w;
  w.header(1, kResponseFlags, 0, 1).name("a.test").a_record(0x80000001u, kFinalA);
  EXPECT_EQ(parse_dns_message(w.bytes()).message.answers.at(0).ttl, 0u);
}

TEST(DnsParser, HeaderFlags) {
  Wire w;
  w.header(0xbeef, 0x8000 | (2 << 11) | 0x0200 | 5, 0, 0);
  const DnsParseResult r = parse_dns_message(w.bytes());
  ASSERT_EQ(r.status, DnsStatus::kOk);
  EXPECT_EQ(r.message.id, 0xbeef);
  EXPECT_TRUE(r.message.is_response);
  EXPECT_EQ(r.message.opcode, 2);
  EXPECT_TRUE(r.message.truncated);
  EXPECT_EQ(r.message.rcode, 5);
}

TEST(DnsParser, RandomBytesNeverCrash) {
  std::mt19937 rng(1);
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> bytes(rng() % 300);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    if (bytes.size() > 7 && i % 2) {  // plausible counts, so the records get read
      bytes[4] = bytes[6] = 0;
      bytes[5] = rng() % 3;
      bytes[7] = rng() % 8;
    }
    const DnsParseResult r = parse_dns_message(bytes);
    resolve_answer_names(r.message);
    parse_dns_tcp_stream(bytes);
  }
}

}  // namespace
}  // namespace egressd

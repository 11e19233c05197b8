// Decodes DNS messages (RFC 1035) copied out of the kernel, to learn which
// names the addresses a process connects to were looked up under. Input is
// untrusted and may be cut short: every read is bounds-checked, name
// decompression is bounded, and no input makes a function throw.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace egressd {

using Ipv4Address = std::array<uint8_t, 4>;
using Ipv6Address = std::array<uint8_t, 16>;
using IpAddress = std::variant<Ipv4Address, Ipv6Address>;

inline constexpr uint16_t kDnsTypeA = 1;
inline constexpr uint16_t kDnsTypeCname = 5;
inline constexpr uint16_t kDnsTypeAaaa = 28;
inline constexpr uint16_t kDnsClassIn = 1;

enum class DnsStatus {
  kOk,
  // The bytes end before the message does. Everything complete before that
  // point is kept. On a datagram known to be whole, the message lied about
  // its counts or lengths.
  kTruncated,
  kBadLabel,        // a label length with the reserved 0x40 or 0x80 bit pattern
  // A compression pointer into the header, or not strictly before the labels
  // it is met in (which is what could make pointers loop).
  kBadPointer,
  kNameTooLong,     // over 255 octets, or more than 64 compression jumps
  kBadRecord,       // rdata whose length does not fit its type
  kTooManyRecords,  // over 16 questions or 512 answers: no resolver sends that
};
const char* dns_status_name(DnsStatus s);

// Names are in presentation form: lowercased, without the trailing dot, the
// root as "". Bytes that would be ambiguous or unprintable are escaped as in
// zone files ("\." for a dot inside a label, "\\", "\DDD"), so a name can
// neither smuggle a separator nor control characters into a log.
struct DnsQuestion {
  std::string name;
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  bool operator==(const DnsQuestion&) const = default;
};

struct DnsCname {
  std::string target;
  bool operator==(const DnsCname&) const = default;
};

// An answer of class IN and type A, AAAA or CNAME; others are skipped.
struct DnsAnswer {
  std::string name;
  uint32_t ttl = 0;  // seconds; RFC 2181's "top bit set means 0" applied
  std::variant<Ipv4Address, Ipv6Address, DnsCname> data;
  bool operator==(const DnsAnswer&) const = default;
};

struct DnsMessage {
  uint16_t id = 0;
  bool is_response = false;
  uint8_t opcode = 0;
  bool truncated = false;  // the TC bit: the server cut the answer short
  uint8_t rcode = 0;
  std::vector<DnsQuestion> questions;
  std::vector<DnsAnswer> answers;
};

// The header fields are set whenever the 12 header bytes arrived. Records
// are kept on kOk and kTruncated only: after any other status, records read
// before the fault cannot be trusted to be what they seem.
struct DnsParseResult {
  DnsStatus status = DnsStatus::kOk;
  DnsMessage message;
};

// Decodes the header, the question section and the answer section of one
// message (a UDP payload). Authority and additional sections are not read.
DnsParseResult parse_dns_message(std::span<const uint8_t> bytes);

struct DnsTcpParseResult {
  // One per frame, in stream order. When the stream ends inside a frame, the
  // last entry is that frame's bytes so far, parsed as a message cut short.
  std::vector<DnsParseResult> messages;
  // Bytes taken by complete frames; the rest is a frame still arriving.
  size_t consumed = 0;
};

// Decodes DNS over TCP (RFC 1035 4.2.2): each message is preceded by its
// length as two big-endian octets.
DnsTcpParseResult parse_dns_tcp_stream(std::span<const uint8_t> stream);

// One address from a response, named by what the process asked for.
struct DnsResolvedAddress {
  IpAddress address;
  std::string asked_name;      // the question name
  std::string canonical_name;  // the owner of the A/AAAA record, after CNAMEs
  uint32_t ttl = 0;            // the smallest TTL along the chain
};

// Follows each question's CNAME chain within the answer section and returns
// every A/AAAA answer reached, in answer order. Answers for names outside a
// chain are not attributed. Empty unless the message is a response.
std::vector<DnsResolvedAddress> resolve_answer_names(const DnsMessage& response);

}  // namespace egressd

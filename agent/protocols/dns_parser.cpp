#include "dns_parser.h"

#include <algorithm>
#include <limits>
#include <string_view>

namespace egressd {
namespace {

constexpr size_t kHeaderSize = 12;
constexpr size_t kFixedRecordFields = 10;  // type, class, TTL, rdlength
constexpr size_t kMaxNameOctets = 255;     // RFC 1035 2.3.4, in wire form
constexpr int kMaxPointerJumps = 64;
// Queries carry one question and answers rarely run past a few dozen records;
// the caps bound what a hostile message can make us allocate.
constexpr uint16_t kMaxQuestions = 16;
constexpr uint16_t kMaxAnswers = 512;

uint16_t read_u16(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint16_t>(b[at] << 8 | b[at + 1]);
}

uint32_t read_u32(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint32_t>(read_u16(b, at)) << 16 | read_u16(b, at + 2);
}

void append_label(std::string& name, std::span<const uint8_t> label) {
  if (!name.empty()) name += '.';
  for (uint8_t c : label) {
    if (c >= 'A' && c <= 'Z') {
      name += static_cast<char>(c - 'A' + 'a');
    } else if (c == '.' || c == '\\') {
      name += '\\';
      name += static_cast<char>(c);
    } else if (c <= ' ' || c > '~') {
      name += '\\';
      name += static_cast<char>('0' + c / 100);
      name += static_cast<char>('0' + c / 10 % 10);
      name += static_cast<char>('0' + c % 10);
    } else {
      name += static_cast<char>(c);
    }
  }
}

struct NameRead {
  DnsStatus status = DnsStatus::kOk;
  std::string name;
  size_t end = 0;  // just past the name where it starts: its root label or first pointer
};

NameRead read_name(std::span<const uint8_t> msg, size_t at) {
  NameRead read;
  auto fail = [&read](DnsStatus s) {
    read.status = s;
    read.name.clear();
    return read;
  };
  size_t pos = at;
  size_t segment_start = at;  // where the labels being read began: the name, or the last jump's target
  size_t octets = 0;
  int jumps = 0;
  for (;;) {
    if (pos >= msg.size()) return fail(DnsStatus::kTruncated);
    const uint8_t length = msg[pos];
    if ((length & 0xC0) == 0xC0) {
      if (pos + 1 >= msg.size()) return fail(DnsStatus::kTruncated);
      const size_t target = static_cast<size_t>(length & 0x3F) << 8 | msg[pos + 1];
      if (jumps == 0) read.end = pos + 2;
      // Only strictly backwards past the start of the labels being read: each
      // jump then lands lower than the one before, so no pointers can loop.
      if (target >= segment_start || target < kHeaderSize) return fail(DnsStatus::kBadPointer);
      if (++jumps > kMaxPointerJumps) return fail(DnsStatus::kNameTooLong);
      pos = segment_start = target;
      continue;
    }
    if (length & 0xC0) return fail(DnsStatus::kBadLabel);
    octets += 1 + length;
    if (octets > kMaxNameOctets) return fail(DnsStatus::kNameTooLong);
    if (length == 0) {
      if (jumps == 0) read.end = pos + 1;
      return read;
    }
    if (msg.size() - pos - 1 < length) return fail(DnsStatus::kTruncated);
    append_label(read.name, msg.subspan(pos + 1, length));
    pos += 1 + length;
  }
}

// RFC 2181 section 8: a TTL with the top bit set is to be read as zero.
uint32_t ttl_seconds(uint32_t wire) { return (wire & 0x80000000u) ? 0 : wire; }

// Reads the record at pos, appending it to answers if egressd uses its type,
// and moves pos past it.
DnsStatus read_answer(std::span<const uint8_t> msg, size_t& pos, std::vector<DnsAnswer>& answers) {
  NameRead owner = read_name(msg, pos);
  if (owner.status != DnsStatus::kOk) return owner.status;
  const size_t fields = owner.end;
  if (msg.size() - fields < kFixedRecordFields) return DnsStatus::kTruncated;
  const uint16_t type = read_u16(msg, fields);
  const uint16_t rclass = read_u16(msg, fields + 2);
  const uint32_t ttl = ttl_seconds(read_u32(msg, fields + 4));
  const uint16_t rdlength = read_u16(msg, fields + 8);
  const size_t rdata = fields + kFixedRecordFields;
  if (msg.size() - rdata < rdlength) return DnsStatus::kTruncated;
  pos = rdata + rdlength;
  if (rclass != kDnsClassIn) return DnsStatus::kOk;

  switch (type) {
    case kDnsTypeA: {
      if (rdlength != 4) return DnsStatus::kBadRecord;
      Ipv4Address a;
      std::ranges::copy(msg.subspan(rdata, a.size()), a.begin());
      answers.push_back({std::move(owner.name), ttl, a});
      return DnsStatus::kOk;
    }
    case kDnsTypeAaaa: {
      if (rdlength != 16) return DnsStatus::kBadRecord;
      Ipv6Address a;
      std::ranges::copy(msg.subspan(rdata, a.size()), a.begin());
      answers.push_back({std::move(owner.name), ttl, a});
      return DnsStatus::kOk;
    }
    case kDnsTypeCname: {
      // Cut at the rdata's end so the target cannot run into the next record.
      NameRead target = read_name(msg.first(pos), rdata);
      if (target.status == DnsStatus::kTruncated) return DnsStatus::kBadRecord;
      if (target.status != DnsStatus::kOk) return target.status;
      if (target.end != pos) return DnsStatus::kBadRecord;
      answers.push_back({std::move(owner.name), ttl, DnsCname{std::move(target.name)}});
      return DnsStatus::kOk;
    }
    default:
      return DnsStatus::kOk;
  }
}

}  // namespace

const char* dns_status_name(DnsStatus s) {
  switch (s) {
    case DnsStatus::kOk: return "ok";
    case DnsStatus::kTruncated: return "truncated";
    case DnsStatus::kBadLabel: return "bad_label";
    case DnsStatus::kBadPointer: return "bad_pointer";
    case DnsStatus::kNameTooLong: return "name_too_long";
    case DnsStatus::kBadRecord: return "bad_record";
    case DnsStatus::kTooManyRecords: return "too_many_records";
  }
  return "unknown";
}

DnsParseResult parse_dns_message(std::span<const uint8_t> bytes) {
  DnsParseResult result;
  DnsMessage& m = result.message;
  auto fail = [&result](DnsStatus s) {
    result.status = s;
    if (s != DnsStatus::kTruncated) {
      result.message.questions.clear();
      result.message.answers.clear();
    }
    return result;
  };
  if (bytes.size() < kHeaderSize) return fail(DnsStatus::kTruncated);
  m.id = read_u16(bytes, 0);
  const uint16_t flags = read_u16(bytes, 2);
  m.is_response = flags & 0x8000;
  m.opcode = (flags >> 11) & 0xF;
  m.truncated = flags & 0x0200;
  m.rcode = flags & 0xF;
  const uint16_t question_count = read_u16(bytes, 4);
  const uint16_t answer_count = read_u16(bytes, 6);
  if (question_count > kMaxQuestions || answer_count > kMaxAnswers) {
    return fail(DnsStatus::kTooManyRecords);
  }

  size_t pos = kHeaderSize;
  for (uint16_t i = 0; i < question_count; ++i) {
    NameRead name = read_name(bytes, pos);
    if (name.status != DnsStatus::kOk) return fail(name.status);
    if (bytes.size() - name.end < 4) return fail(DnsStatus::kTruncated);
    m.questions.push_back(
        {std::move(name.name), read_u16(bytes, name.end), read_u16(bytes, name.end + 2)});
    pos = name.end + 4;
  }
  for (uint16_t i = 0; i < answer_count; ++i) {
    const DnsStatus s = read_answer(bytes, pos, m.answers);
    if (s != DnsStatus::kOk) return fail(s);
  }
  return result;
}

DnsTcpParseResult parse_dns_tcp_stream(std::span<const uint8_t> stream) {
  DnsTcpParseResult result;
  size_t pos = 0;
  while (stream.size() - pos >= 2) {
    const size_t length = read_u16(stream, pos);
    const std::span<const uint8_t> rest = stream.subspan(pos + 2);
    if (rest.size() < length) {
      result.messages.push_back(parse_dns_message(rest));
      break;
    }
    result.messages.push_back(parse_dns_message(rest.first(length)));
    pos += 2 + length;
    result.consumed = pos;
  }
  return result;
}

std::vector<DnsResolvedAddress> resolve_answer_names(const DnsMessage& response) {
  std::vector<DnsResolvedAddress> resolved;
  if (!response.is_response) return resolved;
  auto cname_of = [&response](std::string_view owner) -> const DnsAnswer* {
    for (const DnsAnswer& a : response.answers) {
      if (a.name == owner && std::holds_alternative<DnsCname>(a.data)) return &a;
    }
    return nullptr;
  };

  struct ChainLink {
    std::string_view name;
    uint32_t ttl;  // the smallest TTL of the CNAMEs leading here
  };
  for (const DnsQuestion& question : response.questions) {
    std::vector<ChainLink> chain{{question.name, std::numeric_limits<uint32_t>::max()}};
    for (const DnsAnswer* cname = cname_of(question.name); cname; cname = cname_of(chain.back().name)) {
      const std::string& target = std::get<DnsCname>(cname->data).target;
      const bool loops = std::any_of(chain.begin(), chain.end(),
                                     [&target](const ChainLink& l) { return l.name == target; });
      if (loops) break;
      chain.push_back({target, std::min(chain.back().ttl, cname->ttl)});
    }

    for (const DnsAnswer& answer : response.answers) {
      if (std::holds_alternative<DnsCname>(answer.data)) continue;
      auto link = std::find_if(chain.begin(), chain.end(),
                               [&answer](const ChainLink& l) { return l.name == answer.name; });
      if (link == chain.end()) continue;
      IpAddress address = std::holds_alternative<Ipv4Address>(answer.data)
                              ? IpAddress(std::get<Ipv4Address>(answer.data))
                              : IpAddress(std::get<Ipv6Address>(answer.data));
      resolved.push_back({address, question.name, answer.name, std::min(link->ttl, answer.ttl)});
    }
  }
  return resolved;
}

}  // namespace egressd

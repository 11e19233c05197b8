// libFuzzer target for the DNS decoder. Besides memory errors (ASan) and
// undefined behaviour (UBSan), it traps when results contradict the promises
// in dns_parser.h.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "dns_parser.h"

namespace {

void check(bool promise) {
  if (!promise) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace egressd;
  const std::span<const uint8_t> bytes(data, size);

  const DnsParseResult whole = parse_dns_message(bytes);
  if (whole.status != DnsStatus::kOk && whole.status != DnsStatus::kTruncated) {
    check(whole.message.questions.empty() && whole.message.answers.empty());
  }
  // 255 octets at most, each written as up to four characters when escaped.
  for (const DnsQuestion& q : whole.message.questions) check(q.name.size() <= 4 * 255);
  for (const DnsAnswer& a : whole.message.answers) check(a.name.size() <= 4 * 255);

  for (const DnsResolvedAddress& r : resolve_answer_names(whole.message)) {
    check(whole.message.is_response);
    check(std::any_of(whole.message.questions.begin(), whole.message.questions.end(),
                      [&r](const DnsQuestion& q) { return q.name == r.asked_name; }));
  }

  // A cut can make a sound message incomplete, never wrong.
  if (whole.status == DnsStatus::kOk) {
    const DnsStatus cut = parse_dns_message(bytes.first(size / 2)).status;
    check(cut == DnsStatus::kOk || cut == DnsStatus::kTruncated);
  }

  const DnsTcpParseResult stream = parse_dns_tcp_stream(bytes);
  check(stream.consumed <= size);
  return 0;
}

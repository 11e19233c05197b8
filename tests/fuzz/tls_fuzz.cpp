// libFuzzer target for the ClientHello decoder. Besides memory errors (ASan)
// and undefined behaviour (UBSan), it traps when results contradict the
// promises in tls_parser.h.
#include <cstddef>
#include <cstdint>

#include "tls_parser.h"

namespace {

void check(bool promise) {
  if (!promise) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace egressd;
  const std::span<const uint8_t> bytes(data, size);

  const ClientHelloInfo whole = parse_client_hello(bytes);
  if (whole.status == TlsStatus::kNotTls || whole.status == TlsStatus::kMalformed) {
    check(whole.server_name.empty() && whole.alpn_protocols.empty() && whole.supported_versions.empty());
  }
  check(whole.server_name.size() <= 255);
  check(whole.server_name.empty() || whole.server_name.back() != '.');
  for (char c : whole.server_name) check(c < 'A' || c > 'Z');

  // A cut of a sound hello is one still arriving, and what it already names
  // is what the whole hello names.
  if (whole.status == TlsStatus::kOk) {
    const ClientHelloInfo cut = parse_client_hello(bytes.first(size / 2));
    check(cut.status == TlsStatus::kOk || cut.status == TlsStatus::kNeedMoreBytes);
    check(cut.server_name.empty() || cut.server_name == whole.server_name);
  }
  return 0;
}

// libFuzzer target for the HTTP request decoder. Besides memory errors (ASan)
// and undefined behaviour (UBSan), it traps when results contradict the
// promises in http_parser.h.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http_parser.h"

namespace {

void check(bool promise) {
  if (!promise) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace egressd;
  const std::string_view stream(reinterpret_cast<const char*>(data), size);

  const HttpRequestInfo whole = parse_http_request(stream);
  if (whole.status == HttpStatus::kNotHttp || whole.status == HttpStatus::kMalformed) {
    check(whole.method.empty() && whole.host.empty() && !whole.port);
  }
  check(whole.host.size() <= 255);
  for (char c : whole.host) check(c < 'A' || c > 'Z');

  // A cut of a sound request is one still arriving, or already final with
  // the same destination.
  if (whole.status == HttpStatus::kOk) {
    const HttpRequestInfo cut = parse_http_request(stream.substr(0, size / 2));
    check(cut.status == HttpStatus::kOk || cut.status == HttpStatus::kNeedMoreBytes);
    if (cut.status == HttpStatus::kOk) check(cut.host == whole.host && cut.port == whole.port);
  }
  return 0;
}

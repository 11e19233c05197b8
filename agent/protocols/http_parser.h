// Reads the destination an HTTP/1.x client names from the first bytes it
// sent: the CONNECT target for proxy tunnels, else the Host header. Input is
// untrusted and may be cut short: scanning is bounded and nothing throws.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace egressd {

enum class HttpStatus {
  kOk,
  kNeedMoreBytes,  // an HTTP/1.x request so far: the rest has not arrived (or was not captured)
  kNotHttp,        // not the start of an HTTP/1.x request (HTTP/2's preface included)
  kMalformed,      // an HTTP/1.x request line followed by what RFC 9112 rejects
};
const char* http_status_name(HttpStatus s);

struct HttpRequestInfo {
  HttpStatus status = HttpStatus::kOk;
  std::string method;  // as sent: methods are case-sensitive
  // Lowercased, without a trailing dot; an IPv6 literal without its brackets.
  // Empty when the request names no host (an HTTP/1.0 request without Host).
  std::string host;
  std::optional<uint16_t> port;  // only when the request gives one
};

// The destination of the request at the start of stream. It is final (kOk)
// as soon as the request line names it, as CONNECT's authority-form and a
// proxy request's absolute-form do (RFC 9112 3.2), and otherwise once the
// whole header block has arrived. On kNeedMoreBytes the fields hold what
// arrived so far, on kNotHttp and kMalformed they are empty.
HttpRequestInfo parse_http_request(std::string_view stream);

}  // namespace egressd

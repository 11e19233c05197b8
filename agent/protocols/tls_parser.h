// Reads the server name a TLS client asks for from the first bytes it sent
// (its ClientHello, RFC 8446 4.1.2 and RFC 5246 7.4.1.2). Input is untrusted
// and may be cut short: every read is bounds-checked and nothing throws.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace egressd {

enum class TlsStatus {
  kOk,
  kNeedMoreBytes,  // a ClientHello so far: the rest has not arrived (or was not captured)
  kNotTls,         // not the start of a TLS ClientHello
  kMalformed,      // starts like a ClientHello but breaks its rules
};
const char* tls_status_name(TlsStatus s);

struct ClientHelloInfo {
  TlsStatus status = TlsStatus::kOk;
  uint16_t legacy_version = 0;               // 0x0303 for TLS 1.2, also sent by TLS 1.3 clients
  std::vector<uint16_t> supported_versions;  // the supported_versions extension, GREASE left out
  uint16_t highest_version = 0;              // the best of supported_versions, else legacy_version
  std::string server_name;                   // SNI host_name, lowercased; empty when not sent
  // ALPN protocol names in the client's order; bytes outside printable ASCII
  // are written as \xHH so a name cannot carry control characters into a log.
  std::vector<std::string> alpn_protocols;
};

// Decodes a ClientHello from the start of a client's byte stream, also when
// it spans several TLS records. On kNeedMoreBytes the fields hold what was
// learnt from the extensions that arrived whole; on kNotTls and kMalformed
// they are empty.
ClientHelloInfo parse_client_hello(std::span<const uint8_t> stream);

}  // namespace egressd

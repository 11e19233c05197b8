#include "tls_parser.h"

#include <algorithm>
#include <optional>

namespace egressd {
namespace {

constexpr uint8_t kContentTypeHandshake = 22;
constexpr uint8_t kHandshakeClientHello = 1;
constexpr size_t kRecordHeaderSize = 5;
constexpr size_t kHandshakeHeaderSize = 4;
constexpr size_t kMaxRecordPlaintext = 16384;  // RFC 8446 5.1
// Far above real ClientHellos (post-quantum key shares bring them to a few
// KB), and low enough to bound what reassembly copies.
constexpr size_t kMaxClientHello = 64 * 1024;
constexpr size_t kRandomSize = 32;
constexpr size_t kMaxSessionIdSize = 32;
constexpr size_t kMaxHostNameSize = 255;

constexpr uint16_t kExtensionServerName = 0;
constexpr uint16_t kExtensionAlpn = 16;
constexpr uint16_t kExtensionSupportedVersions = 43;
constexpr uint8_t kNameTypeHostName = 0;

// A TLS structure whose length is declared up front but of which only a
// prefix may have arrived. Reading past the declared end means the input is
// malformed; reading past what arrived only means more bytes are needed. The
// first failure sticks.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> arrived, size_t declared)
      : arrived_(arrived.first(std::min(arrived.size(), declared))), declared_(declared) {}

  size_t declared_size() const { return declared_; }
  bool at_end() const { return pos_ == declared_; }
  TlsStatus error() const { return error_; }

  std::optional<std::span<const uint8_t>> take(size_t n) {
    if (error_ != TlsStatus::kOk) return std::nullopt;
    if (n > declared_ - pos_) {
      error_ = TlsStatus::kMalformed;
      return std::nullopt;
    }
    if (n > arrived_left()) {
      error_ = TlsStatus::kNeedMoreBytes;
      return std::nullopt;
    }
    std::span<const uint8_t> out = arrived_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

  // A big-endian unsigned integer of width bytes (at most 4).
  std::optional<uint32_t> number(size_t width) {
    std::optional<std::span<const uint8_t>> bytes = take(width);
    if (!bytes) return std::nullopt;
    uint32_t value = 0;
    for (uint8_t b : *bytes) value = value << 8 | b;
    return value;
  }

  // The next item behind a length prefix of prefix_width bytes, as a cursor
  // of its own. Its contents need not have arrived yet.
  std::optional<Cursor> vector(size_t prefix_width) {
    std::optional<uint32_t> length = number(prefix_width);
    if (!length) return std::nullopt;
    if (*length > declared_ - pos_) {
      error_ = TlsStatus::kMalformed;
      return std::nullopt;
    }
    Cursor inner(arrived_.subspan(pos_, arrived_left()), *length);
    pos_ += *length;
    return inner;
  }

 private:
  size_t arrived_left() const { return pos_ < arrived_.size() ? arrived_.size() - pos_ : 0; }

  std::span<const uint8_t> arrived_;
  size_t declared_;
  size_t pos_ = 0;
  TlsStatus error_ = TlsStatus::kOk;
};

// The first handshake message, gathered from the records it spans.
struct Handshake {
  TlsStatus status = TlsStatus::kOk;
  std::vector<uint8_t> arrived;  // header and body, as far as they arrived
  size_t declared_size = 0;      // header and body, as the header declares
};

Handshake gather_handshake(std::span<const uint8_t> stream) {
  Handshake hs;
  // Decide "not TLS" from as few bytes as possible: a record of type
  // handshake, version 3.x, carrying a ClientHello.
  if ((stream.size() > 0 && stream[0] != kContentTypeHandshake) ||
      (stream.size() > 1 && stream[1] != 3) ||
      (stream.size() > 5 && stream[5] != kHandshakeClientHello)) {
    hs.status = TlsStatus::kNotTls;
    return hs;
  }
  size_t pos = 0;
  while (hs.declared_size == 0 || hs.arrived.size() < hs.declared_size) {
    if (stream.size() - pos < kRecordHeaderSize) {
      hs.status = TlsStatus::kNeedMoreBytes;
      break;
    }
    const size_t record_size = static_cast<size_t>(stream[pos + 3]) << 8 | stream[pos + 4];
    // RFC 8446 5.1: handshake messages may span records but not share them
    // with other content types, and fragments are never empty.
    if (stream[pos] != kContentTypeHandshake || stream[pos + 1] != 3 || record_size == 0 ||
        record_size > kMaxRecordPlaintext) {
      hs.status = TlsStatus::kMalformed;
      return hs;
    }
    const std::span<const uint8_t> fragment = stream.subspan(pos + kRecordHeaderSize).first(
        std::min(record_size, stream.size() - pos - kRecordHeaderSize));
    hs.arrived.insert(hs.arrived.end(), fragment.begin(), fragment.end());
    pos += kRecordHeaderSize + fragment.size();
    if (hs.declared_size == 0 && hs.arrived.size() >= kHandshakeHeaderSize) {
      const size_t body_size = static_cast<size_t>(hs.arrived[1]) << 16 | hs.arrived[2] << 8 | hs.arrived[3];
      hs.declared_size = kHandshakeHeaderSize + body_size;
      if (hs.declared_size > kMaxClientHello) {
        hs.status = TlsStatus::kMalformed;
        return hs;
      }
    }
    if (fragment.size() < record_size) {
      hs.status = TlsStatus::kNeedMoreBytes;
      break;
    }
  }
  if (hs.declared_size != 0 && hs.arrived.size() > hs.declared_size) hs.arrived.resize(hs.declared_size);
  return hs;
}

bool is_grease(uint16_t v) {  // RFC 8701: 0x0A0A, 0x1A1A, ... 0xFAFA
  return (v & 0x0F0F) == 0x0A0A && (v >> 8) == (v & 0xFF);
}

// A host name as DNS names are compared: lowercase, no trailing dot.
std::optional<std::string> host_name(std::span<const uint8_t> bytes) {
  std::string host;
  for (uint8_t c : bytes) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                         c == '-' || c == '.' || c == '_';
    if (!allowed) return std::nullopt;
    host += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  if (!host.empty() && host.back() == '.') host.pop_back();
  if (host.empty() || host.size() > kMaxHostNameSize) return std::nullopt;
  if (host.front() == '.' || host.back() == '.' || host.find("..") != std::string::npos) return std::nullopt;
  return host;
}

std::string printable(std::span<const uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t c : bytes) {
    if (c >= ' ' && c <= '~' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

// RFC 6066 section 3.
TlsStatus read_server_name(Cursor& data, ClientHelloInfo& info) {
  std::optional<Cursor> list = data.vector(2);
  if (!list) return data.error();
  if (!data.at_end() || list->declared_size() == 0) return TlsStatus::kMalformed;
  std::string host;
  while (!list->at_end()) {
    std::optional<uint32_t> type = list->number(1);
    std::optional<Cursor> name = list->vector(2);
    if (!type || !name) return list->error();
    if (*type != kNameTypeHostName) continue;
    if (!host.empty()) return TlsStatus::kMalformed;  // RFC 6066 allows one name per type
    std::optional<std::span<const uint8_t>> bytes = name->take(name->declared_size());
    if (!bytes) return name->error();
    std::optional<std::string> valid = host_name(*bytes);
    if (!valid) return TlsStatus::kMalformed;
    host = std::move(*valid);
  }
  info.server_name = std::move(host);
  return TlsStatus::kOk;
}

// RFC 7301 section 3.1.
TlsStatus read_alpn(Cursor& data, ClientHelloInfo& info) {
  std::optional<Cursor> list = data.vector(2);
  if (!list) return data.error();
  if (!data.at_end() || list->declared_size() == 0) return TlsStatus::kMalformed;
  std::vector<std::string> protocols;
  while (!list->at_end()) {
    std::optional<Cursor> name = list->vector(1);
    if (!name) return list->error();
    if (name->declared_size() == 0) return TlsStatus::kMalformed;
    std::optional<std::span<const uint8_t>> bytes = name->take(name->declared_size());
    if (!bytes) return name->error();
    protocols.push_back(printable(*bytes));
  }
  info.alpn_protocols = std::move(protocols);
  return TlsStatus::kOk;
}

// RFC 8446 section 4.2.1.
TlsStatus read_supported_versions(Cursor& data, ClientHelloInfo& info) {
  std::optional<Cursor> list = data.vector(1);
  if (!list) return data.error();
  if (!data.at_end() || list->declared_size() < 2 || list->declared_size() % 2) {
    return TlsStatus::kMalformed;
  }
  std::vector<uint16_t> versions;
  while (!list->at_end()) {
    std::optional<uint32_t> version = list->number(2);
    if (!version) return list->error();
    if (!is_grease(static_cast<uint16_t>(*version))) versions.push_back(static_cast<uint16_t>(*version));
  }
  info.supported_versions = std::move(versions);
  return TlsStatus::kOk;
}

TlsStatus read_extensions(Cursor& extensions, ClientHelloInfo& info) {
  // RFC 8446 4.2 forbids repeats; a second copy could tell another story.
  bool seen_server_name = false, seen_alpn = false, seen_versions = false;
  while (!extensions.at_end()) {
    std::optional<uint32_t> type = extensions.number(2);
    std::optional<Cursor> data = extensions.vector(2);
    if (!type || !data) return extensions.error();
    bool* seen = nullptr;
    TlsStatus (*read)(Cursor&, ClientHelloInfo&) = nullptr;
    switch (*type) {
      case kExtensionServerName: seen = &seen_server_name; read = read_server_name; break;
      case kExtensionAlpn: seen = &seen_alpn; read = read_alpn; break;
      case kExtensionSupportedVersions: seen = &seen_versions; read = read_supported_versions; break;
      default: continue;
    }
    if (*seen) return TlsStatus::kMalformed;
    *seen = true;
    const TlsStatus status = read(*data, info);
    if (status != TlsStatus::kOk) return status;
  }
  return TlsStatus::kOk;
}

TlsStatus read_client_hello(Cursor& body, ClientHelloInfo& info) {
  std::optional<uint32_t> version = body.number(2);
  if (!version) return body.error();
  info.legacy_version = static_cast<uint16_t>(*version);
  if (!body.take(kRandomSize)) return body.error();
  std::optional<Cursor> session_id = body.vector(1);
  if (!session_id) return body.error();
  if (session_id->declared_size() > kMaxSessionIdSize) return TlsStatus::kMalformed;
  std::optional<Cursor> cipher_suites = body.vector(2);
  if (!cipher_suites) return body.error();
  if (cipher_suites->declared_size() == 0 || cipher_suites->declared_size() % 2) return TlsStatus::kMalformed;
  std::optional<Cursor> compression_methods = body.vector(1);
  if (!compression_methods) return body.error();
  if (compression_methods->declared_size() == 0) return TlsStatus::kMalformed;
  if (body.at_end()) return TlsStatus::kOk;  // extensions became mandatory only with TLS 1.2
  std::optional<Cursor> extensions = body.vector(2);
  if (!extensions) return body.error();
  if (!body.at_end()) return TlsStatus::kMalformed;
  return read_extensions(*extensions, info);
}

}  // namespace

const char* tls_status_name(TlsStatus s) {
  switch (s) {
    case TlsStatus::kOk: return "ok";
    case TlsStatus::kNeedMoreBytes: return "need_more_bytes";
    case TlsStatus::kNotTls: return "not_tls";
    case TlsStatus::kMalformed: return "malformed";
  }
  return "unknown";
}

ClientHelloInfo parse_client_hello(std::span<const uint8_t> stream) {
  ClientHelloInfo info;
  const Handshake hs = gather_handshake(stream);
  if (hs.status == TlsStatus::kNotTls || hs.status == TlsStatus::kMalformed) {
    info.status = hs.status;
    return info;
  }
  if (hs.declared_size == 0) {  // not even the handshake header arrived
    info.status = TlsStatus::kNeedMoreBytes;
    return info;
  }
  Cursor body(std::span(hs.arrived).subspan(kHandshakeHeaderSize), hs.declared_size - kHandshakeHeaderSize);
  info.status = read_client_hello(body, info);
  if (info.status == TlsStatus::kMalformed) {
    info = ClientHelloInfo();
    info.status = TlsStatus::kMalformed;
    return info;
  }
  // Extensions egressd skips are not read, so only the size tells whether
  // all of them arrived.
  if (hs.status == TlsStatus::kNeedMoreBytes) info.status = TlsStatus::kNeedMoreBytes;
  info.highest_version = info.supported_versions.empty()
                             ? info.legacy_version
                             : *std::max_element(info.supported_versions.begin(), info.supported_versions.end());
  return info;
}

}  // namespace egressd

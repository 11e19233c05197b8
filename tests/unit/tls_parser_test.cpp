// ClientHello decoding: real openssl and curl hellos, every truncation of
// them, hellos spread over records, and hand-built malformed ones.
#include "tls_parser.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "hex_bytes.h"

namespace egressd {
namespace {

using std::string_view_literals::operator""sv;
using test::hex_bytes;
using Bytes = std::vector<uint8_t>;

// Captured on loopback from OpenSSL 3.0 and curl 7.88 (Debian bookworm):
//   openssl s_client -connect 127.0.0.1:PORT -servername openssl.example.test -alpn h2,http/1.1
const Bytes kOpensslSni = hex_bytes(
    "16030101530100014f0303be63eca30c1f7f67beb611c03a25e7fe733f16"
    "8ce722ac5fc7b67d369af0d5e920f2247b8a24f0f0e65a3b3132d1759e38"
    "53e2289495087c53d874d7c5e6e40088003e130213031301c02cc030009f"
    "cca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039"
    "c009c0130033009d009c003d003c0035002f00ff010000c8000000190017"
    "0000146f70656e73736c2e6578616d706c652e74657374000b0004030001"
    "02000a00160014001d0017001e0019001801000101010201030104002300"
    "000010000e000c02683208687474702f312e310016000000170000000d00"
    "2a0028040305030603080708080809080a080b0804080508060401050106"
    "01030303010302040205020602002b0009080304030303020301002d0002"
    "0101003300260024001d0020bfb2c17589c917dbca4d7d8bfcde62d99f08"
    "157bebc669efa0f9cd386b16731b");
//   openssl s_client -connect 127.0.0.1:PORT -noservername
const Bytes kOpensslNoSni = hex_bytes(
    "160301012401000120030320a26265a701ee05ccccaf440596e18205d92b"
    "640e22053884f4e05a9efe744f20b34f957f19f18c786dbad3839922a4db"
    "46b976fc9cb29e2b4b6355185ca3c566003e130213031301c02cc030009f"
    "cca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039"
    "c009c0130033009d009c003d003c0035002f00ff01000099000b00040300"
    "0102000a00160014001d0017001e00190018010001010102010301040023"
    "00000016000000170000000d002a0028040305030603080708080809080a"
    "080b080408050806040105010601030303010302040205020602002b0009"
    "080304030303020301002d00020101003300260024001d00203dd1127ce3"
    "df9db7e243d54b08a1730a129600a7a533b779cbf84ce7011e4561");
//   openssl s_client -connect 127.0.0.1:PORT -servername tls12.example.test -tls1_2
const Bytes kOpensslTls12 = hex_bytes(
    "16030100d2010000ce0303ac57f0f89be538b38662499e7564da0de2ba94"
    "2ee08d211f33ea1c17f1c3734d000038c02cc030009fcca9cca8ccaac02b"
    "c02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d"
    "009c003d003c0035002f00ff0100006d000000170015000012746c733132"
    "2e6578616d706c652e74657374000b000403000102000a000c000a001d00"
    "17001e00190018002300000016000000170000000d002a00280403050306"
    "03080708080809080a080b08040805080604010501060103030301030204"
    "0205020602");
//   curl -k https://curl.example.test:PORT/ --resolve curl.example.test:PORT:127.0.0.1
// (padded to 512 bytes by the padding extension).
const Bytes kCurl = hex_bytes(
    "1603010200010001fc03034377545ad8e8527c9620fb89f741b3a08d60ca"
    "2df5525befbdf363cfbde0f5d2202fe8ca522f9ae781dc613436a456e2c0"
    "dddc01ae380d8f7cf42ac052d3fba71f003e130213031301c02cc030009f"
    "cca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039"
    "c009c0130033009d009c003d003c0035002f00ff01000175000000160014"
    "0000116375726c2e6578616d706c652e74657374000b000403000102000a"
    "00160014001d0017001e00190018010001010102010301040010000e000c"
    "02683208687474702f312e31001600000017000000310000000d002a0028"
    "040305030603080708080809080a080b0804080508060401050106010303"
    "03010302040205020602002b0009080304030303020301002d0002010100"
    "3300260024001d0020382584591c08f283ed5d1be82ca81480007f183eb9"
    "8af3ca55f2d8f5554afe55001500ac000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000"
    "00000000000000");

const std::vector<uint16_t> kTls13And12And11And10{0x0304, 0x0303, 0x0302, 0x0301};

Bytes operator+(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

Bytes number(uint32_t value, size_t width) {
  Bytes out;
  for (size_t i = width; i-- > 0;) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
  return out;
}

Bytes with_length(size_t width, const Bytes& body) { return number(static_cast<uint32_t>(body.size()), width) + body; }

Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }

Bytes extension(uint16_t type, const Bytes& data) { return number(type, 2) + with_length(2, data); }

Bytes sni_extension(std::string_view host) {
  return extension(0, with_length(2, Bytes{0} + with_length(2, text(host))));
}

Bytes alpn_extension(const std::vector<Bytes>& protocols) {
  Bytes list;
  for (const Bytes& p : protocols) list = list + with_length(1, p);
  return extension(16, with_length(2, list));
}

// A TLS 1.2-shaped ClientHello body; extensions as given, or none at all.
Bytes client_hello_body(const std::optional<Bytes>& extensions) {
  Bytes body = number(0x0303, 2) + Bytes(32, 0xAB) + with_length(1, {}) + with_length(2, {0x13, 0x01}) +
               with_length(1, {0});
  return extensions ? body + with_length(2, *extensions) : body;
}

Bytes handshake(const Bytes& body) { return Bytes{1} + with_length(3, body); }

// The handshake message cut into records of at most fragment_size bytes.
Bytes in_records(const Bytes& message, size_t fragment_size) {
  Bytes out;
  for (size_t at = 0; at < message.size(); at += fragment_size) {
    const size_t n = std::min(fragment_size, message.size() - at);
    out = out + Bytes{22, 3, 1} + with_length(2, Bytes(message.begin() + at, message.begin() + at + n));
  }
  return out;
}

Bytes client_hello(const Bytes& extensions) { return in_records(handshake(client_hello_body(extensions)), 16384); }

TEST(TlsParser, RealOpensslHelloWithSniAndAlpn) {
  const ClientHelloInfo hello = parse_client_hello(kOpensslSni);
  ASSERT_EQ(hello.status, TlsStatus::kOk);
  EXPECT_EQ(hello.server_name, "openssl.example.test");
  EXPECT_EQ(hello.alpn_protocols, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(hello.legacy_version, 0x0303);
  EXPECT_EQ(hello.supported_versions, kTls13And12And11And10);
  EXPECT_EQ(hello.highest_version, 0x0304);
}

TEST(TlsParser, RealOpensslHelloWithoutSni) {
  const ClientHelloInfo hello = parse_client_hello(kOpensslNoSni);
  ASSERT_EQ(hello.status, TlsStatus::kOk);
  EXPECT_EQ(hello.server_name, "");
  EXPECT_TRUE(hello.alpn_protocols.empty());
  EXPECT_EQ(hello.highest_version, 0x0304);
}

TEST(TlsParser, RealTls12OnlyHello) {
  const ClientHelloInfo hello = parse_client_hello(kOpensslTls12);
  ASSERT_EQ(hello.status, TlsStatus::kOk);
  EXPECT_EQ(hello.server_name, "tls12.example.test");
  EXPECT_TRUE(hello.supported_versions.empty());
  EXPECT_EQ(hello.highest_version, 0x0303);
}

TEST(TlsParser, RealCurlHello) {
  const ClientHelloInfo hello = parse_client_hello(kCurl);
  ASSERT_EQ(hello.status, TlsStatus::kOk);
  EXPECT_EQ(hello.server_name, "curl.example.test");
  EXPECT_EQ(hello.alpn_protocols, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(hello.highest_version, 0x0304);
}

// Any cut of a real hello needs more bytes, and whatever it already tells
// agrees with the whole hello.
void expect_every_prefix_needs_more(const Bytes& capture) {
  const ClientHelloInfo whole = parse_client_hello(capture);
  bool saw_name = false;
  for (size_t n = 0; n < capture.size(); ++n) {
    SCOPED_TRACE(n);
    const ClientHelloInfo part = parse_client_hello(std::span(capture.data(), n));
    ASSERT_EQ(part.status, TlsStatus::kNeedMoreBytes) << tls_status_name(part.status);
    if (!part.server_name.empty()) {
      EXPECT_EQ(part.server_name, whole.server_name);
      saw_name = true;
    } else {
      EXPECT_FALSE(saw_name) << "a longer prefix lost the name";
    }
    if (!part.alpn_protocols.empty()) {
      EXPECT_EQ(part.alpn_protocols, whole.alpn_protocols);
    }
  }
}

TEST(TlsParser, EveryPrefixOfRealHellosNeedsMoreBytes) {
  for (const Bytes* capture : {&kOpensslSni, &kOpensslNoSni, &kOpensslTls12, &kCurl}) {
    expect_every_prefix_needs_more(*capture);
  }
}

TEST(TlsParser, NameIsKnownBeforeTheHelloEnds) {
  // What egressd sees when it copies only the first 200 bytes of curl's hello.
  const ClientHelloInfo part = parse_client_hello(std::span(kCurl.data(), 200));
  EXPECT_EQ(part.status, TlsStatus::kNeedMoreBytes);
  EXPECT_EQ(part.server_name, "curl.example.test");
}

TEST(TlsParser, HelloSpreadOverRecords) {
  const Bytes message(kOpensslSni.begin() + 5, kOpensslSni.end());
  for (size_t fragment : {1, 3, 4, 5, 50, 100, 200}) {
    SCOPED_TRACE(fragment);
    const Bytes stream = in_records(message, fragment);
    const ClientHelloInfo hello = parse_client_hello(stream);
    ASSERT_EQ(hello.status, TlsStatus::kOk);
    EXPECT_EQ(hello.server_name, "openssl.example.test");
    EXPECT_EQ(hello.alpn_protocols, (std::vector<std::string>{"h2", "http/1.1"}));
  }
  expect_every_prefix_needs_more(in_records(message, 37));
}

TEST(TlsParser, BytesAfterTheHelloAreIgnored) {
  const ClientHelloInfo hello = parse_client_hello(kOpensslSni + Bytes{23, 3, 3, 0, 2, 0xde, 0xad});
  EXPECT_EQ(hello.status, TlsStatus::kOk);
  EXPECT_EQ(hello.server_name, "openssl.example.test");
}

TEST(TlsParser, NotTls) {
  for (std::string_view s : {"GET / HTTP/1.1\r\n"sv, "SSH-2.0-OpenSSH_9.2p1\r\n"sv, "\x16\x02"sv,
                             "\x16\x03\x01\x00\x30\x02"sv, "\x80\x2e\x01\x03\x01"sv}) {
    EXPECT_EQ(parse_client_hello(text(s)).status, TlsStatus::kNotTls) << s;
  }
}

TEST(TlsParser, TooShortToTell) {
  for (std::string_view s : {""sv, "\x16"sv, "\x16\x03"sv, "\x16\x03\x01\x00"sv}) {
    EXPECT_EQ(parse_client_hello(text(s)).status, TlsStatus::kNeedMoreBytes) << s.size();
  }
}

TEST(TlsParser, BadRecordLengths) {
  EXPECT_EQ(parse_client_hello(Bytes{22, 3, 1, 0, 0, 1}).status, TlsStatus::kMalformed);
  EXPECT_EQ(parse_client_hello(Bytes{22, 3, 1, 0x40, 0x01, 1}).status, TlsStatus::kMalformed);  // > 2^14
}

TEST(TlsParser, HandshakeLengthBeyondBound) {
  EXPECT_EQ(parse_client_hello(Bytes{22, 3, 1, 0, 4, 1, 0x01, 0x00, 0x01}).status, TlsStatus::kMalformed);
}

TEST(TlsParser, OtherContentBetweenFragments) {
  const Bytes message(kOpensslSni.begin() + 5, kOpensslSni.end());
  const Bytes first = in_records(Bytes(message.begin(), message.begin() + 100), 100);
  const Bytes alert{21, 3, 3, 0, 2, 2, 40};
  EXPECT_EQ(parse_client_hello(first + alert).status, TlsStatus::kMalformed);
}

TEST(TlsParser, MalformedLengthsInsideTheHello) {
  // The extensions block claims one byte more than the hello holds.
  Bytes longer = kOpensslSni;
  const size_t extensions_length = 5 + 4 + 2 + 32 + 1 + 32 + 2 + 0x3e + 1 + 1;
  ASSERT_EQ(longer[extensions_length + 1], 0xc8);
  longer[extensions_length + 1] = 0xc9;
  EXPECT_EQ(parse_client_hello(longer).status, TlsStatus::kMalformed);

  // And one byte less: a byte is left over after them.
  Bytes shorter = kOpensslSni;
  shorter[extensions_length + 1] = 0xc7;
  EXPECT_EQ(parse_client_hello(shorter).status, TlsStatus::kMalformed);

  Bytes session_id = kOpensslSni;
  session_id[5 + 4 + 2 + 32] = 33;
  EXPECT_EQ(parse_client_hello(session_id).status, TlsStatus::kMalformed);
}

TEST(TlsParser, MalformedFieldsClearTheResult) {
  const Bytes hello = client_hello(sni_extension("a.test") + extension(16, {0, 5, 2, 'h', '2'}));
  const ClientHelloInfo info = parse_client_hello(hello);
  EXPECT_EQ(info.status, TlsStatus::kMalformed);
  EXPECT_EQ(info.server_name, "");
}

TEST(TlsParser, CipherSuitesAndCompressionMustBeValid) {
  Bytes odd = number(0x0303, 2) + Bytes(32, 0) + with_length(1, {}) + with_length(2, {0x13}) + with_length(1, {0});
  EXPECT_EQ(parse_client_hello(in_records(handshake(odd), 16384)).status, TlsStatus::kMalformed);
  Bytes no_compression = number(0x0303, 2) + Bytes(32, 0) + with_length(1, {}) + with_length(2, {0x13, 0x01}) +
                         with_length(1, {});
  EXPECT_EQ(parse_client_hello(in_records(handshake(no_compression), 16384)).status, TlsStatus::kMalformed);
}

TEST(TlsParser, HelloWithoutExtensions) {
  const ClientHelloInfo hello = parse_client_hello(in_records(handshake(client_hello_body(std::nullopt)), 16384));
  ASSERT_EQ(hello.status, TlsStatus::kOk);
  EXPECT_EQ(hello.server_name, "");
  EXPECT_EQ(hello.highest_version, 0x0303);
}

TEST(TlsParser, ServerNameIsLowercasedWithoutTrailingDot) {
  const ClientHelloInfo hello = parse_client_hello(client_hello(sni_extension("API.Example.COM.")));
  ASSERT_EQ(hello.status, TlsStatus::kOk);
  EXPECT_EQ(hello.server_name, "api.example.com");
}

TEST(TlsParser, InvalidServerNames) {
  for (std::string_view host : {"a b.test"sv, "a\0b"sv, "é.test"sv, "."sv, ""sv, "a/b"sv, "a..b"sv, ".a"sv, "a.."sv}) {
    EXPECT_EQ(parse_client_hello(client_hello(sni_extension(host))).status, TlsStatus::kMalformed) << host;
  }
  EXPECT_EQ(parse_client_hello(client_hello(sni_extension(std::string(256, 'a')))).status, TlsStatus::kMalformed);
  EXPECT_EQ(parse_client_hello(client_hello(sni_extension(std::string(255, 'a')))).status, TlsStatus::kOk);
}

TEST(TlsParser, DuplicateExtensionsAreMalformed) {
  EXPECT_EQ(parse_client_hello(client_hello(sni_extension("a.test") + sni_extension("b.test"))).status,
            TlsStatus::kMalformed);
  const Bytes alpn = alpn_extension({text("h2")});
  EXPECT_EQ(parse_client_hello(client_hello(alpn + alpn)).status, TlsStatus::kMalformed);
}

TEST(TlsParser, TwoHostNamesInOneExtension) {
  const Bytes names = Bytes{0} + with_length(2, text("a.test")) + Bytes{0} + with_length(2, text("b.test"));
  EXPECT_EQ(parse_client_hello(client_hello(extension(0, with_length(2, names)))).status, TlsStatus::kMalformed);
}

TEST(TlsParser, UnknownNameTypesAreSkipped) {
  const Bytes names = Bytes{7} + with_length(2, text("ignored")) + Bytes{0} + with_length(2, text("b.test"));
  const ClientHelloInfo hello = parse_client_hello(client_hello(extension(0, with_length(2, names))));
  ASSERT_EQ(hello.status, TlsStatus::kOk);
  EXPECT_EQ(hello.server_name, "b.test");
}

TEST(TlsParser, EmptyServerNameListIsMalformed) {
  EXPECT_EQ(parse_client_hello(client_hello(extension(0, with_length(2, {})))).status, TlsStatus::kMalformed);
  EXPECT_EQ(parse_client_hello(client_hello(extension(0, {}))).status, TlsStatus::kMalformed);
}

TEST(TlsParser, AlpnBytesOutsidePrintableAsciiAreEscaped) {
  const ClientHelloInfo hello =
      parse_client_hello(client_hello(alpn_extension({text("h2"), Bytes{'x', 0x00, '\n', '\\', 0xff}})));
  ASSERT_EQ(hello.status, TlsStatus::kOk);
  EXPECT_EQ(hello.alpn_protocols, (std::vector<std::string>{"h2", "x\\x00\\x0a\\x5c\\xff"}));
}

TEST(TlsParser, EmptyAlpnNameIsMalformed) {
  EXPECT_EQ(parse_client_hello(client_hello(alpn_extension({Bytes{}}))).status, TlsStatus::kMalformed);
}

TEST(TlsParser, GreaseVersionsAreLeftOut) {
  const Bytes versions = extension(43, with_length(1, {0x7a, 0x7a, 0x03, 0x04, 0x03, 0x03}));
  const ClientHelloInfo hello = parse_client_hello(client_hello(versions));
  ASSERT_EQ(hello.status, TlsStatus::kOk);
  EXPECT_EQ(hello.supported_versions, (std::vector<uint16_t>{0x0304, 0x0303}));
  EXPECT_EQ(hello.highest_version, 0x0304);
}

TEST(TlsParser, OddSupportedVersionsIsMalformed) {
  EXPECT_EQ(parse_client_hello(client_hello(extension(43, with_length(1, {0x03})))).status, TlsStatus::kMalformed);
}

TEST(TlsParser, RandomBytesNeverCrash) {
  std::mt19937 rng(2);
  for (int i = 0; i < 20000; ++i) {
    Bytes bytes(rng() % 400);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    // Start most of them like a hello, so the parser gets past the record layer.
    if (bytes.size() > 9 && i % 4) {
      const size_t body = bytes.size() - 9 + rng() % 3;
      bytes[0] = 22, bytes[1] = 3, bytes[2] = 1, bytes[3] = 0, bytes[4] = static_cast<uint8_t>(body + 4);
      bytes[5] = 1, bytes[6] = 0, bytes[7] = 0, bytes[8] = static_cast<uint8_t>(body);
    }
    parse_client_hello(bytes);
  }
}

}  // namespace
}  // namespace egressd

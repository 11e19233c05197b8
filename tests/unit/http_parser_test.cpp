// HTTP/1.x request decoding: real curl requests, every truncation of them,
// and requests that break the rules or are not HTTP at all.
#include "http_parser.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace egressd {
namespace {

using std::string_view_literals::operator""sv;

// Captured on loopback from curl 7.88:
//   curl -x http://127.0.0.1:PORT https://proxied.example.test/
constexpr std::string_view kCurlConnect =
    "CONNECT proxied.example.test:443 HTTP/1.1\r\n"
    "Host: proxied.example.test:443\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Proxy-Connection: Keep-Alive\r\n"
    "\r\n";
//   curl -x http://127.0.0.1:PORT 'https://[::1]:8443/'
constexpr std::string_view kCurlConnectIpv6 =
    "CONNECT [::1]:8443 HTTP/1.1\r\n"
    "Host: [::1]:8443\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Proxy-Connection: Keep-Alive\r\n"
    "\r\n";
//   curl http://127.0.0.1:PORT/index.html -H 'Host: web.example.test:8080'
constexpr std::string_view kCurlGetWithHostPort =
    "GET /index.html HTTP/1.1\r\n"
    "Host: web.example.test:8080\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n"
    "\r\n";
//   curl -x http://127.0.0.1:PORT 'http://plain.example.test/a?b=c'
constexpr std::string_view kCurlProxiedGet =
    "GET http://plain.example.test/a?b=c HTTP/1.1\r\n"
    "Host: plain.example.test\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n"
    "Proxy-Connection: Keep-Alive\r\n"
    "\r\n";

void expect_destination(std::string_view request, std::string_view method, std::string_view host,
                        std::optional<uint16_t> port) {
  const HttpRequestInfo info = parse_http_request(request);
  EXPECT_EQ(info.status, HttpStatus::kOk) << http_status_name(info.status) << "\n" << request;
  EXPECT_EQ(info.method, method) << request;
  EXPECT_EQ(info.host, host) << request;
  EXPECT_EQ(info.port, port) << request;
}

void expect_status(std::string_view request, HttpStatus status) {
  const HttpRequestInfo info = parse_http_request(request);
  EXPECT_EQ(info.status, status) << http_status_name(info.status) << "\n" << request;
  if (status == HttpStatus::kNotHttp || status == HttpStatus::kMalformed) {
    EXPECT_EQ(info.method, "");
    EXPECT_EQ(info.host, "");
    EXPECT_EQ(info.port, std::nullopt);
  }
}

TEST(HttpParser, RealCurlConnect) {
  expect_destination(kCurlConnect, "CONNECT", "proxied.example.test", 443);
}

TEST(HttpParser, RealCurlConnectToIpv6Literal) {
  expect_destination(kCurlConnectIpv6, "CONNECT", "::1", 8443);
}

TEST(HttpParser, RealCurlGetWithHostPort) {
  expect_destination(kCurlGetWithHostPort, "GET", "web.example.test", 8080);
}

TEST(HttpParser, RealCurlProxiedGetUsesTheAbsoluteTarget) {
  expect_destination(kCurlProxiedGet, "GET", "plain.example.test", std::nullopt);
}

TEST(HttpParser, AbsoluteTargetWinsOverHost) {
  // RFC 9112 3.2.2: a proxy request's Host is ignored in favour of its target.
  expect_destination("GET https://user:pw@Target.Example:8443/x HTTP/1.1\r\nHost: other.example\r\n\r\n", "GET",
                     "target.example", 8443);
}

TEST(HttpParser, ConnectWithoutPort) {
  expect_destination("CONNECT example.com HTTP/1.1\r\n\r\n", "CONNECT", "example.com", std::nullopt);
}

TEST(HttpParser, ConnectToIpLiterals) {
  expect_destination("CONNECT [2001:DB8::1]:8443 HTTP/1.1\r\n\r\n", "CONNECT", "2001:db8::1", 8443);
  expect_destination("CONNECT 192.0.2.1:22 HTTP/1.0\r\n\r\n", "CONNECT", "192.0.2.1", 22);
}

TEST(HttpParser, ConnectIsFinalOnceItsLineIsIn) {
  expect_destination("CONNECT example.com:443 HTTP/1.1\r\n", "CONNECT", "example.com", 443);
}

TEST(HttpParser, HeaderNamesAnyCase) {
  for (std::string_view name : {"Host", "host", "HOST", "hOsT"}) {
    const std::string request = "GET / HTTP/1.1\r\nAccept: */*\r\n" + std::string(name) + ": Example.COM\r\n\r\n";
    expect_destination(request, "GET", "example.com", std::nullopt);
  }
}

TEST(HttpParser, HostValueWhitespaceAndTrailingDot) {
  expect_destination("GET / HTTP/1.1\r\nHost:\t example.com.:80 \t\r\n\r\n", "GET", "example.com", 80);
  expect_destination("GET / HTTP/1.1\r\nHost:example.com\r\n\r\n", "GET", "example.com", std::nullopt);
}

TEST(HttpParser, HostWithIpv6LiteralAndEmptyPort) {
  expect_destination("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "GET", "::1", 8080);
  expect_destination("GET / HTTP/1.1\r\nHost: example.com:\r\n\r\n", "GET", "example.com", std::nullopt);
}

TEST(HttpParser, BareLineFeeds) {
  expect_destination("POST /submit HTTP/1.1\nContent-Length: 0\nhost: lf.example:81\n\n", "POST", "lf.example", 81);
  expect_destination("CONNECT lf.example:443 HTTP/1.1\n", "CONNECT", "lf.example", 443);
}

TEST(HttpParser, Http10WithoutHostNamesNoHost) {
  expect_destination("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", "GET", "", std::nullopt);
  expect_destination("GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET", "", std::nullopt);
}

TEST(HttpParser, HostBeforeTheHeadersEnd) {
  const HttpRequestInfo info = parse_http_request("GET / HTTP/1.1\r\nHost: early.example\r\nAccept: ");
  EXPECT_EQ(info.status, HttpStatus::kNeedMoreBytes);
  EXPECT_EQ(info.method, "GET");
  EXPECT_EQ(info.host, "early.example");
}

TEST(HttpParser, BodyAfterTheHeadersIsIgnored) {
  expect_destination("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nHost: b.example\r\n", "POST",
                     "a.example", std::nullopt);
}

// Before the request names its destination every cut needs more bytes; after,
// every longer prefix gives the same answer.
void expect_every_prefix_consistent(std::string_view request) {
  const HttpRequestInfo whole = parse_http_request(request);
  ASSERT_EQ(whole.status, HttpStatus::kOk);
  bool final = false;
  for (size_t n = 0; n < request.size(); ++n) {
    SCOPED_TRACE(n);
    const HttpRequestInfo part = parse_http_request(request.substr(0, n));
    if (final) {
      ASSERT_EQ(part.status, HttpStatus::kOk);
    } else {
      ASSERT_TRUE(part.status == HttpStatus::kNeedMoreBytes || part.status == HttpStatus::kOk)
          << http_status_name(part.status);
      final = part.status == HttpStatus::kOk;
    }
    if (final) {
      EXPECT_EQ(part.host, whole.host);
      EXPECT_EQ(part.port, whole.port);
    }
  }
}

TEST(HttpParser, EveryPrefixOfRealRequests) {
  for (std::string_view request : {kCurlConnect, kCurlConnectIpv6, kCurlGetWithHostPort, kCurlProxiedGet}) {
    expect_every_prefix_consistent(request);
  }
  // Origin-form requests are final only with the blank line.
  EXPECT_EQ(parse_http_request(kCurlGetWithHostPort.substr(0, kCurlGetWithHostPort.size() - 1)).status,
            HttpStatus::kNeedMoreBytes);
}

TEST(HttpParser, NotHttp) {
  expect_status("\x16\x03\x01\x02\x00\x01\x00\x01\xfc"sv, HttpStatus::kNotHttp);
  expect_status("SSH-2.0-OpenSSH_9.2p1\r\n", HttpStatus::kNotHttp);
  expect_status("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HttpStatus::kNotHttp);
  expect_status("GET / FTP/1.0\r\n", HttpStatus::kNotHttp);
  expect_status("GET /\r\n", HttpStatus::kNotHttp);  // HTTP/0.9
  expect_status("GET  / HTTP/1.1\r\n", HttpStatus::kNotHttp);
  expect_status(" GET / HTTP/1.1\r\n", HttpStatus::kNotHttp);
  expect_status("\r\nGET / HTTP/1.1\r\n", HttpStatus::kNotHttp);
  expect_status("GET /\x01 HTTP/1.1\r\n"sv, HttpStatus::kNotHttp);
  expect_status(std::string(40, 'A') + " / HTTP/1.1\r\n", HttpStatus::kNotHttp);
}

TEST(HttpParser, TooShortToTell) {
  for (std::string_view s : {""sv, "G"sv, "GET"sv, "GET "sv, "GET /"sv, "GET / HTTP/1"sv, "GET / HTTP/1.1"sv,
                             "GET / HTTP/1.1\r"sv, "GET / HTTP/1.1\r\nHost: a"sv}) {
    expect_status(s, HttpStatus::kNeedMoreBytes);
  }
}

TEST(HttpParser, AbsurdLines) {
  expect_status("GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n", HttpStatus::kMalformed);
  expect_status("GET / HTTP/1.1\r\nX-Long: " + std::string(9000, 'a') + "\r\nHost: a\r\n\r\n", HttpStatus::kMalformed);
  // Still arriving, but already longer than any line may be.
  expect_status("GET / HTTP/1.1\r\nX-Long: " + std::string(9000, 'a'), HttpStatus::kMalformed);
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 200; ++i) many += "X-" + std::to_string(i) + ": 1\r\n";
  expect_status(many + "Host: a\r\n\r\n", HttpStatus::kMalformed);
}

TEST(HttpParser, LongButSaneLinesPass) {
  expect_destination("GET /" + std::string(8000, 'a') + " HTTP/1.1\r\nCookie: " + std::string(8000, 'c') +
                         "\r\nHost: a.example\r\n\r\n",
                     "GET", "a.example", std::nullopt);
}

TEST(HttpParser, MalformedRequests) {
  expect_status("GET / HTTP/1.1 extra\r\n", HttpStatus::kMalformed);
  expect_status("GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", HttpStatus::kMalformed);
  expect_status("GET / HTTP/1.1\r\nHost : a.example\r\n\r\n", HttpStatus::kMalformed);
  expect_status("GET / HTTP/1.1\r\nno colon here\r\n\r\n", HttpStatus::kMalformed);
  expect_status("GET / HTTP/1.1\r\n: empty name\r\n\r\n", HttpStatus::kMalformed);
  expect_status("GET / HTTP/1.1\r\n folded first\r\n\r\n", HttpStatus::kMalformed);
  expect_status("GET / HTTP/1.1\r\nHost: a.example\r\n .b\r\n\r\n", HttpStatus::kMalformed);
  expect_status("CONNECT a.example:443:1 HTTP/1.1\r\n", HttpStatus::kMalformed);
  expect_status("CONNECT /path HTTP/1.1\r\n", HttpStatus::kMalformed);
  expect_status("GET http:///x HTTP/1.1\r\n", HttpStatus::kMalformed);
}

TEST(HttpParser, BadHostValues) {
  for (std::string_view host : {"a b.example", "a.example:http", "a.example:65536", "a.example:123456", "[::1",
                                "[zz::1]:80", "[]:80", "a/b", "a@b", ":80", ".", "\xc3\xa9.example", "a..b", ".a", "a..:80"}) {
    expect_status("GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n", HttpStatus::kMalformed);
  }
  expect_status("GET / HTTP/1.1\r\nHost: " + std::string(256, 'a') + "\r\n\r\n", HttpStatus::kMalformed);
}

TEST(HttpParser, FoldedLinesOfOtherHeadersAreSkipped) {
  expect_destination("GET / HTTP/1.1\r\nX-Old: a\r\n  b\r\nHost: c.example\r\n\r\n", "GET", "c.example",
                     std::nullopt);
}

TEST(HttpParser, PortBounds) {
  expect_destination("GET / HTTP/1.1\r\nHost: a:65535\r\n\r\n", "GET", "a", 65535);
  expect_destination("GET / HTTP/1.1\r\nHost: a:0\r\n\r\n", "GET", "a", 0);
}

TEST(HttpParser, RandomBytesNeverCrash) {
  std::mt19937 rng(3);
  const std::string alphabet = "GETCONNECT HTTP/1.1\r\n:Host[]0123456789. \t\x01\xff";
  for (int i = 0; i < 20000; ++i) {
    std::string s = i % 2 ? "GET / HTTP/1.1\r\n" : "";
    const size_t n = rng() % 200;
    for (size_t j = 0; j < n; ++j) s += alphabet[rng() % alphabet.size()];
    parse_http_request(s);
  }
}

}  // namespace
}  // namespace egressd

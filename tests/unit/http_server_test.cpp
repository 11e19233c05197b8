#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "http_request.h"
#include "http_server.h"
#include "metrics.h"
#include "unique_fd.h"

namespace egressd {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(HttpRequest, HeadSplitAcrossFeeds) {
  RequestHeadParser p;
  EXPECT_EQ(p.feed("GET /met"), HeadStatus::kIncomplete);
  EXPECT_EQ(p.feed("rics?x=1 HTTP/1.1\r\nHost: a\r\nauthor"), HeadStatus::kIncomplete);
  EXPECT_EQ(p.feed("ization:  Basic dTpw \r\n"), HeadStatus::kIncomplete);
  EXPECT_EQ(p.feed("\r"), HeadStatus::kIncomplete);
  EXPECT_EQ(p.feed("\n"), HeadStatus::kComplete);
  EXPECT_EQ(p.head().method, "GET");
  EXPECT_EQ(p.head().path, "/metrics");
  EXPECT_EQ(p.head().authorization, "Basic dTpw");
  EXPECT_EQ(p.feed("more bytes"), HeadStatus::kComplete);
}

TEST(HttpRequest, BareLineFeedsAndAbsoluteTargets) {
  RequestHeadParser p;
  EXPECT_EQ(p.feed("\r\nHEAD http://127.0.0.1:8789/healthz#x HTTP/1.0\n\n"), HeadStatus::kComplete);
  EXPECT_EQ(p.head().method, "HEAD");
  EXPECT_EQ(p.head().path, "/healthz");
  EXPECT_EQ(p.head().authorization, "");
}

TEST(HttpRequest, TooLarge) {
  RequestHeadParser p;
  const std::string head = "GET / HTTP/1.1\r\nX: " + std::string(kMaxRequestHeadBytes, 'a') + "\r\n\r\n";
  EXPECT_EQ(p.feed(head.substr(0, kMaxRequestHeadBytes)), HeadStatus::kIncomplete);
  EXPECT_EQ(p.feed(head.substr(kMaxRequestHeadBytes, 1)), HeadStatus::kTooLarge);
  RequestHeadParser exact;
  const std::string fits = "GET / HTTP/1.1\r\nX: " + std::string(kMaxRequestHeadBytes - 23, 'a') + "\r\n\r\n";
  ASSERT_EQ(fits.size(), kMaxRequestHeadBytes);
  EXPECT_EQ(exact.feed(fits), HeadStatus::kComplete);
}

TEST(HttpRequest, GarbageIsRefusedAtOnce) {
  EXPECT_EQ(RequestHeadParser().feed("\x16\x03\x01"), HeadStatus::kBadRequest);  // a TLS hello
  EXPECT_EQ(RequestHeadParser().feed(std::string_view("GET /x\0", 7)), HeadStatus::kBadRequest);
  EXPECT_EQ(RequestHeadParser().feed("GET /x HTTP/2.0\r\n"), HeadStatus::kBadRequest);
  EXPECT_EQ(RequestHeadParser().feed("GET\r\n"), HeadStatus::kBadRequest);
  EXPECT_EQ(RequestHeadParser().feed("GET metrics HTTP/1.1\r\n"), HeadStatus::kBadRequest);
  EXPECT_EQ(RequestHeadParser().feed("GET / HTTP/1.1\r\nno colon\r\n"), HeadStatus::kBadRequest);
  EXPECT_EQ(RequestHeadParser().feed("GET / HTTP/1.1\r\nA: b\r\n folded\r\n"), HeadStatus::kBadRequest);
  EXPECT_EQ(RequestHeadParser().feed("GET / HTTP/1.1\r\nHost : a\r\n"), HeadStatus::kBadRequest);
}

TEST(HttpServerLimits, Defaults) {
  const HttpServerLimits d;
  EXPECT_EQ(d.header_timeout, 2000ms);
  EXPECT_EQ(d.write_timeout, 10000ms);
  EXPECT_EQ(d.max_per_client, 16u);
  EXPECT_EQ(d.max_connections, 512u);
  EXPECT_EQ(kMaxRequestHeadBytes, 8192u);
}

// A TCP connection from source (a loopback address) to 127.0.0.1:port.
UniqueFd connect_from(const std::string& source, uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  inet_pton(AF_INET, source.c_str(), &sin.sin_addr);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0) << source;
  sin.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  EXPECT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  const timeval tv{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

void send_all(const UniqueFd& fd, const std::string& bytes) {
  ASSERT_EQ(send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL), ssize_t(bytes.size()));
}

// Everything until the server closes (or 5 s pass).
std::string read_all(const UniqueFd& fd) {
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = recv(fd.get(), buf, sizeof(buf), 0)) > 0) out.append(buf, size_t(n));
  return out;
}

std::string request(uint16_t port, const std::string& bytes, const std::string& source = "127.0.0.1") {
  UniqueFd fd = connect_from(source, port);
  send_all(fd, bytes);
  return read_all(fd);
}

// True once the server has closed fd (EOF or reset), false while it is open.
bool closed_by_server(const UniqueFd& fd) {
  char c;
  const ssize_t n = recv(fd.get(), &c, 1, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN);
}

bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5000ms) {
  const auto end = Clock::now() + timeout;
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

struct TestServer {
  explicit TestServer(HttpServerLimits limits = {}, const std::string& host = "127.0.0.1")
      : server(host, 0, [](const RequestHead& r) {
          HttpResponse resp;
          resp.status = r.path == "/metrics" ? 200 : 404;
          resp.body = r.path == "/metrics" ? "up 1\n" : "no\n";
          return resp;
        }, rejected, limits) {}
  uint64_t count(Rejection r) const { return rejected.get(r); }
  RejectionCounts rejected;
  HttpServer server;
};

// The answer's latency, which must stay under a second.
std::chrono::milliseconds timed_scrape(uint16_t port, const std::string& source, std::string* response) {
  const auto t0 = Clock::now();
  *response = request(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", source);
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
}

TEST(HttpServer, AnswersWhileOneClientHoldsThreeHundredIdleConnections) {
  HttpServerLimits limits;
  limits.header_timeout = 30s;  // the caps, not the timeout, must do it
  TestServer s(limits);
  std::vector<UniqueFd> idle;
  for (int i = 0; i < 300; ++i) idle.push_back(connect_from("127.0.0.2", s.server.port()));
  ASSERT_TRUE(wait_for([&] { return s.count(Rejection::kPerClientCap) == 284; })) << s.count(Rejection::kPerClientCap);
  std::string resp;
  EXPECT_LT(timed_scrape(s.server.port(), "127.0.0.1", &resp), 1000ms);
  EXPECT_EQ(resp.substr(0, 15), "HTTP/1.1 200 OK");
  EXPECT_NE(resp.find("\r\nContent-Length: 5\r\nConnection: close\r\n\r\nup 1\n"), std::string::npos) << resp;
  // The oldest went, the newest 16 stay.
  for (size_t i = 0; i < idle.size(); ++i) EXPECT_EQ(closed_by_server(idle[i]), i < 284) << i;
  EXPECT_EQ(s.count(Rejection::kPerClientCap), 284u);
  EXPECT_EQ(s.count(Rejection::kTotalCap), 0u);
  EXPECT_EQ(s.count(Rejection::kHeaderTimeout), 0u);
}

TEST(HttpServer, TotalCapEvictsTheOldestOfAnyone) {
  HttpServerLimits limits;
  limits.header_timeout = 30s;
  limits.max_connections = 40;
  TestServer s(limits);
  std::vector<UniqueFd> idle;
  for (int a = 2; a <= 6; ++a)
    for (int i = 0; i < 10; ++i) idle.push_back(connect_from("127.0.0." + std::to_string(a), s.server.port()));
  ASSERT_TRUE(wait_for([&] { return s.count(Rejection::kTotalCap) == 10; })) << s.count(Rejection::kTotalCap);
  std::string resp;
  EXPECT_LT(timed_scrape(s.server.port(), "127.0.0.9", &resp), 1000ms);
  EXPECT_EQ(resp.substr(0, 15), "HTTP/1.1 200 OK");
  // The scrape took the place of one more.
  EXPECT_EQ(s.count(Rejection::kTotalCap), 11u);
  EXPECT_EQ(s.count(Rejection::kPerClientCap), 0u);
  for (size_t i = 0; i < idle.size(); ++i) EXPECT_EQ(closed_by_server(idle[i]), i < 11) << i;
}

TEST(HttpServer, SlowHeadsAreClosedAtTheHeaderTimeout) {
  HttpServerLimits limits;
  limits.header_timeout = 200ms;
  TestServer s(limits);
  const auto t0 = Clock::now();
  std::vector<UniqueFd> slow;
  for (int i = 0; i < 3; ++i) {
    slow.push_back(connect_from("127.0.0.3", s.server.port()));
    send_all(slow.back(), "GET /metr");
  }
  ASSERT_TRUE(wait_for([&] { return s.count(Rejection::kHeaderTimeout) == 3; }));
  EXPECT_GE(Clock::now() - t0, 200ms);
  for (const auto& fd : slow) EXPECT_EQ(read_all(fd), "");  // closed without an answer
  EXPECT_EQ(s.count(Rejection::kHeaderTimeout), 3u);
}

TEST(HttpServer, DefaultHeaderTimeoutIsTwoSeconds) {
  TestServer s;
  UniqueFd slow = connect_from("127.0.0.4", s.server.port());
  send_all(slow, "GET /metr");
  const auto t0 = Clock::now();
  EXPECT_EQ(read_all(slow), "");
  const auto waited = Clock::now() - t0;
  EXPECT_GE(waited, 1900ms);
  EXPECT_LT(waited, 2500ms);
  EXPECT_EQ(s.count(Rejection::kHeaderTimeout), 1u);
}

TEST(HttpServer, ErrorsAreAnsweredAndCounted) {
  TestServer s;
  const uint16_t port = s.server.port();
  EXPECT_EQ(request(port, "GET /nope HTTP/1.1\r\n\r\n").substr(0, 22), "HTTP/1.1 404 Not Found");
  const std::string post = request(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(post.substr(0, 31), "HTTP/1.1 405 Method Not Allowed");
  EXPECT_NE(post.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos);
  EXPECT_EQ(request(port, "\x16\x03\x01\x02\x00garbage").substr(0, 24), "HTTP/1.1 400 Bad Request");
  const std::string big = "GET /metrics HTTP/1.1\r\nX: " + std::string(10000, 'a') + "\r\n\r\n";
  EXPECT_EQ(request(port, big).substr(0, 44), "HTTP/1.1 431 Request Header Fields Too Large");
  const std::string head = request(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_NE(head.find("Content-Length: 5\r\n"), std::string::npos);
  EXPECT_EQ(head.substr(head.size() - 4), "\r\n\r\n");  // no body
  EXPECT_EQ(s.count(Rejection::kBadRequest), 1u);
  EXPECT_EQ(s.count(Rejection::kTooLarge), 1u);
  EXPECT_EQ(s.count(Rejection::kHeaderTimeout), 0u);
}

TEST(HttpServer, AReaderThatDoesNotReadDelaysNobody) {
  RejectionCounts rejected;
  HttpServerLimits limits;
  limits.write_timeout = 300ms;
  HttpServer server("127.0.0.1", 0, [](const RequestHead& r) {
    HttpResponse resp;
    resp.body = r.path == "/big" ? std::string(32 << 20, 'x') : "small\n";
    return resp;
  }, rejected, limits);
  UniqueFd stuck = connect_from("127.0.0.5", server.port());
  send_all(stuck, "GET /big HTTP/1.1\r\n\r\n");
  const auto t0 = Clock::now();
  const std::string small = request(server.port(), "GET /small HTTP/1.1\r\n\r\n");
  EXPECT_LT(Clock::now() - t0, 1000ms);
  EXPECT_NE(small.find("\r\n\r\nsmall\n"), std::string::npos);
  // Not reading past the write deadline: closed, what arrives stops short of 32 MiB.
  std::this_thread::sleep_for(600ms);
  EXPECT_LT(read_all(stuck).size(), size_t(32 << 20));
  EXPECT_EQ(rejected.get(Rejection::kWriteTimeout), 1u);
  EXPECT_EQ(rejected.get(Rejection::kHeaderTimeout), 0u);
}

TEST(HttpServer, Ipv6AndPortInUse) {
  TestServer v6({}, "::1");
  UniqueFd fd(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(v6.server.port());
  inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
  ASSERT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&sin6), sizeof(sin6)), 0);
  send_all(fd, "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(read_all(fd).substr(0, 15), "HTTP/1.1 200 OK");
  TestServer v4;
  try {
    RejectionCounts r;
    HttpServer again("127.0.0.1", v4.server.port(), [](const RequestHead&) { return HttpResponse{}; }, r);
    ADD_FAILURE() << "bound a port in use";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EADDRINUSE);
  }
}

struct MetricsFixture {
  EgressCounters counters;
  std::shared_ptr<AgentCollector> collector =
      std::make_shared<AgentCollector>(counters, [] { return AgentHealth{}; }, "1.2.3");
};

TEST(MetricsServer, AuthHealthAndRejectionCounters) {
  MetricsFixture f;
  bool healthy = true;
  MetricsServer m("127.0.0.1:0", f.collector, BasicAuth{"u", "p"}, [&] { return healthy; });
  const uint16_t port = parse_host_port(m.bound_address()).second;
  const std::string denied = request(port, "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(denied.substr(0, 25), "HTTP/1.1 401 Unauthorized");
  EXPECT_NE(denied.find("\r\nWWW-Authenticate: Basic realm=\"egressd\"\r\n"), std::string::npos);
  EXPECT_EQ(request(port, "GET /metrics HTTP/1.1\r\nAuthorization: Basic dTpx\r\n\r\n").substr(0, 12), "HTTP/1.1 401");
  EXPECT_EQ(request(port, "GET / HTTP/1.1\r\n\r\n").substr(0, 12), "HTTP/1.1 404");
  EXPECT_EQ(request(port, "\x01").substr(0, 12), "HTTP/1.1 400");
  const std::string health = request(port, "GET /healthz HTTP/1.1\r\n\r\n");
  EXPECT_EQ(health.substr(0, 15), "HTTP/1.1 200 OK");
  EXPECT_EQ(health.substr(health.size() - 7), "\r\n\r\nok\n");
  healthy = false;
  EXPECT_EQ(request(port, "GET /healthz HTTP/1.1\r\n\r\n").substr(0, 12), "HTTP/1.1 503");
  const std::string ok = request(port, "GET /metrics?x HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n");
  EXPECT_EQ(ok.substr(0, 15), "HTTP/1.1 200 OK");
  EXPECT_NE(ok.find("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos);
  EXPECT_NE(ok.find("egressd_build_info{version=\"1.2.3\"} 1\n"), std::string::npos);
  for (const char* line : {"egressd_metrics_connections_rejected_total{reason=\"per_client_cap\"} 0\n",
                           "egressd_metrics_connections_rejected_total{reason=\"total_cap\"} 0\n",
                           "egressd_metrics_connections_rejected_total{reason=\"header_timeout\"} 0\n",
                           "egressd_metrics_connections_rejected_total{reason=\"too_large\"} 0\n",
                           "egressd_metrics_connections_rejected_total{reason=\"bad_request\"} 1\n",
                           "egressd_metrics_connections_rejected_total{reason=\"write_timeout\"} 0\n"})
    EXPECT_NE(ok.find(line), std::string::npos) << line << ok;
}

TEST(MetricsServer, PortInUseIsOneLine) {
  MetricsFixture f;
  MetricsServer first("127.0.0.1:0", f.collector, {}, [] { return true; });
  try {
    MetricsServer second(first.bound_address(), f.collector, {}, [] { return true; });
    ADD_FAILURE() << "bound a port in use";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot serve metrics on " + first.bound_address() +
                                         ": address in use or not local (choose another with --metrics-addr)");
  }
}

}  // namespace
}  // namespace egressd

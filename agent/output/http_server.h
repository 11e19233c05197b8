// A small HTTP/1.1 server for the metrics endpoint: one thread, one epoll
// loop, every socket non-blocking, one request per connection. The watched
// processes are local and may be hostile; the limits below keep any number
// of idle, slow or garbage connections from delaying a scrape (issue 16).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "http_request.h"
#include "unique_fd.h"

namespace egressd {

// Why a connection was closed without an answer, or answered with an error.
enum class Rejection : size_t {
  kPerClientCap,   // the client IP had max_per_client connections open
  kTotalCap,       // max_connections were open
  kHeaderTimeout,  // the request head did not arrive within header_timeout
  kTooLarge,       // the head passed kMaxRequestHeadBytes (431)
  kBadRequest,     // not an HTTP/1.x request (400)
  kWriteTimeout,   // the client did not read its whole answer within write_timeout
};
inline constexpr std::array<std::string_view, 6> kRejectionReasons = {
    "per_client_cap", "total_cap", "header_timeout", "too_large", "bad_request", "write_timeout"};

// Written by the server thread, read by whoever exposes them.
class RejectionCounts {
 public:
  void add(Rejection r) { counts_[static_cast<size_t>(r)].fetch_add(1, std::memory_order_relaxed); }
  uint64_t get(Rejection r) const { return counts_[static_cast<size_t>(r)].load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<uint64_t>, kRejectionReasons.size()> counts_{};
};

struct HttpServerLimits {
  // From accept to the head's last byte; a slowloris client is closed then.
  std::chrono::milliseconds header_timeout{2000};
  // From the head to the response's last byte; a client that does not read
  // its answer is closed then.
  std::chrono::milliseconds write_timeout{10000};
  // Connections from one IP address. A new one evicts that client's oldest
  // connection still sending its head, or is refused when there is none.
  size_t max_per_client = 16;
  // Connections from everyone; the same eviction, from anyone's oldest.
  size_t max_connections = 512;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string extra_headers;  // whole lines, each ending in \r\n
};

class HttpServer {
 public:
  // Called on the server thread for each GET or HEAD request (a HEAD's body
  // is not sent). Other methods are answered 405 without calling it.
  using Handler = std::function<HttpResponse(const RequestHead&)>;

  // Listens on host (IPv4 or IPv6 literal) and port (0: a free one). Throws
  // std::system_error (the failing call, and its errno as the code) when it
  // cannot, std::invalid_argument when host is not an address.
  HttpServer(const std::string& host, uint16_t port, Handler handler, RejectionCounts& rejected,
             HttpServerLimits limits = {});
  ~HttpServer();  // stops the thread and closes every connection
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const { return port_; }

 private:
  class Loop;

  Handler handler_;
  RejectionCounts& rejected_;
  HttpServerLimits limits_;
  UniqueFd listen_fd_;
  UniqueFd epoll_fd_;
  UniqueFd stop_fd_;  // an eventfd: written by the destructor
  uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace egressd

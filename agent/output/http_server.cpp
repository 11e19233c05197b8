#include "http_server.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <stdexcept>
#include <system_error>
#include <unordered_map>

#include "errors.h"
#include "log.h"

namespace egressd {
namespace {

using Clock = std::chrono::steady_clock;

// After the answer, the connection reads and drops what the client still
// sends until it closes, for at most this long: closing with unread input
// would reset the connection and could destroy the answer in flight.
constexpr std::chrono::milliseconds kDrainTime{1000};

// epoll tags; connections are tagged with their accept sequence number.
constexpr uint64_t kListenTag = 0;
constexpr uint64_t kStopTag = 1;
constexpr uint64_t kFirstConnection = 2;

enum class Stage {
  kReading,   // waiting for the request head
  kWriting,   // sending the answer
  kDraining,  // answered; waiting for the client to close
};

struct Connection {
  uint64_t seq = 0;  // its epoll tag
  UniqueFd fd;
  std::string client;  // the peer's address bytes (IPv4-mapped IPv6 as IPv4)
  Stage stage = Stage::kReading;
  Clock::time_point deadline;
  RequestHeadParser parser;
  std::string out;
  size_t sent = 0;
};

std::system_error sys_error(const char* call) { return std::system_error(errno, std::generic_category(), call); }

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
  }
}

std::string client_of(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    return std::string(reinterpret_cast<const char*>(&sin.sin_addr), 4);
  }
  const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
  const auto* b = reinterpret_cast<const char*>(&sin6.sin6_addr);
  if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) return std::string(b + 12, 4);
  return std::string(b, 16);
}

HttpResponse error_response(int status) {
  HttpResponse r;
  r.status = status;
  r.body = fmt::format("{}\n", reason_phrase(status));
  return r;
}

}  // namespace

class HttpServer::Loop {
 public:
  explicit Loop(HttpServer& s) : s_(s) {}

  void run() {
    epoll_event events[64];
    for (;;) {
      const int n = epoll_wait(s_.epoll_fd_.get(), events, 64, timeout_ms());
      if (n < 0 && errno != EINTR) {
        log_error("metrics server: epoll_wait: {}", errno_text(errno));
        return;
      }
      for (int i = 0; i < n; ++i) {
        const uint64_t tag = events[i].data.u64;
        if (tag == kStopTag) return;
        if (tag == kListenTag)
          accept_all();
        else
          serve(tag, events[i].events);
      }
      expire();
    }
  }

 private:
  // Until the nearest deadline; -1 (no timeout) with no connection.
  int timeout_ms() const {
    if (conns_.empty()) return -1;
    Clock::time_point first = Clock::time_point::max();
    for (const auto& [seq, c] : conns_) first = std::min(first, c.deadline);
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(first - Clock::now()).count();
    return left < 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 60000));
  }

  void accept_all() {
    for (;;) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      const int fd = accept4(s_.listen_fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: make room as for the total cap, or stop
          // accepting until a connection closes (the listening socket would
          // otherwise wake the loop without end).
          if (evict(oldest_evictable(nullptr), Rejection::kTotalCap)) continue;
          pause_accepting(true);
        }
        return;
      }
      admit(UniqueFd(fd), client_of(ss));
    }
  }

  void admit(UniqueFd fd, std::string client) {
    size_t& from_client = per_client_[client];
    if (from_client >= s_.limits_.max_per_client && !evict(oldest_evictable(&client), Rejection::kPerClientCap)) {
      s_.rejected_.add(Rejection::kPerClientCap);
      if (from_client == 0) per_client_.erase(client);
      return;  // fd closes here
    }
    if (conns_.size() >= s_.limits_.max_connections && !evict(oldest_evictable(nullptr), Rejection::kTotalCap)) {
      s_.rejected_.add(Rejection::kTotalCap);
      if (per_client_[client] == 0) per_client_.erase(client);
      return;
    }
    const uint64_t seq = next_seq_++;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = seq;
    if (epoll_ctl(s_.epoll_fd_.get(), EPOLL_CTL_ADD, fd.get(), &ev) < 0) {
      if (per_client_[client] == 0) per_client_.erase(client);
      return;
    }
    ++per_client_[client];
    Connection& c = conns_[seq];
    c.seq = seq;
    c.fd = std::move(fd);
    c.client = std::move(client);
    c.deadline = Clock::now() + s_.limits_.header_timeout;
    // A client usually sends its head with the connection: read it now, so a
    // flood of connections behind it in the backlog cannot evict it first.
    serve(seq, EPOLLIN);
  }

  // The oldest connection that is not being answered, of client (or of
  // anyone); conns_.end() if none.
  std::map<uint64_t, Connection>::iterator oldest_evictable(const std::string* client) {
    for (auto it = conns_.begin(); it != conns_.end(); ++it)
      if (it->second.stage != Stage::kWriting && (!client || it->second.client == *client)) return it;
    return conns_.end();
  }

  // Closes victim; one still waiting for its head is counted under why. One
  // answered in full and waiting for the client's close (draining) is closed
  // without a count: nothing it asked for is lost.
  bool evict(std::map<uint64_t, Connection>::iterator victim, Rejection why) {
    if (victim == conns_.end()) return false;
    if (victim->second.stage == Stage::kReading) s_.rejected_.add(why);
    close_connection(victim);
    return true;
  }

  void close_connection(std::map<uint64_t, Connection>::iterator it) {
    auto pc = per_client_.find(it->second.client);
    if (pc != per_client_.end() && --pc->second == 0) per_client_.erase(pc);
    conns_.erase(it);  // closing the fd removes it from the epoll set
    if (accept_paused_) pause_accepting(false);
  }

  void pause_accepting(bool pause) {
    epoll_event ev{};
    ev.events = pause ? 0U : static_cast<uint32_t>(EPOLLIN);
    ev.data.u64 = kListenTag;
    epoll_ctl(s_.epoll_fd_.get(), EPOLL_CTL_MOD, s_.listen_fd_.get(), &ev);
    accept_paused_ = pause;
  }

  void serve(uint64_t seq, uint32_t events) {
    auto it = conns_.find(seq);
    if (it == conns_.end()) return;  // closed earlier in this batch
    Connection& c = it->second;
    if (events & EPOLLERR) return close_connection(it);
    switch (c.stage) {
      case Stage::kReading:
        return read_head(it);
      case Stage::kWriting:
        return flush(it);
      case Stage::kDraining:
        return drain(it);
    }
  }

  void read_head(std::map<uint64_t, Connection>::iterator it) {
    Connection& c = it->second;
    char buf[4096];
    HeadStatus status = HeadStatus::kIncomplete;
    while (status == HeadStatus::kIncomplete) {
      const ssize_t n = read(c.fd.get(), buf, sizeof(buf));
      if (n > 0) {
        status = c.parser.feed(std::string_view(buf, static_cast<size_t>(n)));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      return close_connection(it);  // closed (or reset) before a whole head
    }
    if (status == HeadStatus::kBadRequest) {
      s_.rejected_.add(Rejection::kBadRequest);
      return answer(it, error_response(400), false);
    }
    if (status == HeadStatus::kTooLarge) {
      s_.rejected_.add(Rejection::kTooLarge);
      return answer(it, error_response(431), false);
    }
    const RequestHead& head = c.parser.head();
    const bool is_head = head.method == "HEAD";
    if (head.method != "GET" && !is_head) {
      HttpResponse r = error_response(405);
      r.extra_headers = "Allow: GET, HEAD\r\n";
      return answer(it, r, false);
    }
    HttpResponse r;
    try {
      r = s_.handler_(head);
    } catch (const std::exception& e) {
      log_error("metrics server: {} {}: {}", head.method, head.path, e.what());
      r = error_response(500);
    }
    answer(it, r, is_head);
  }

  void answer(std::map<uint64_t, Connection>::iterator it, const HttpResponse& r, bool head_only) {
    Connection& c = it->second;
    c.out = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
                        r.status, reason_phrase(r.status), r.content_type, r.body.size(), r.extra_headers);
    if (!head_only) c.out += r.body;
    c.stage = Stage::kWriting;
    c.deadline = Clock::now() + s_.limits_.write_timeout;
    flush(it);
  }

  void flush(std::map<uint64_t, Connection>::iterator it) {
    Connection& c = it->second;
    while (c.sent < c.out.size()) {
      const ssize_t n = send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
      if (n > 0) {
        c.sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return watch(c, EPOLLOUT);
      return close_connection(it);
    }
    shutdown(c.fd.get(), SHUT_WR);
    c.out = std::string();
    c.stage = Stage::kDraining;
    c.deadline = Clock::now() + std::min<std::chrono::milliseconds>(kDrainTime, s_.limits_.write_timeout);
    watch(c, EPOLLIN | EPOLLRDHUP);
    drain(it);
  }

  void drain(std::map<uint64_t, Connection>::iterator it) {
    char buf[4096];
    for (;;) {
      const ssize_t n = read(it->second.fd.get(), buf, sizeof(buf));
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      return close_connection(it);
    }
  }

  void watch(const Connection& c, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = c.seq;
    epoll_ctl(s_.epoll_fd_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
  }

  void expire() {
    const auto now = Clock::now();
    for (auto it = conns_.begin(); it != conns_.end();) {
      auto next = std::next(it);
      if (it->second.deadline <= now) {
        if (it->second.stage == Stage::kReading) s_.rejected_.add(Rejection::kHeaderTimeout);
        if (it->second.stage == Stage::kWriting) s_.rejected_.add(Rejection::kWriteTimeout);
        close_connection(it);
      }
      it = next;
    }
  }

  HttpServer& s_;
  std::map<uint64_t, Connection> conns_;  // by accept order: the oldest first
  std::unordered_map<std::string, size_t> per_client_;
  uint64_t next_seq_ = kFirstConnection;
  bool accept_paused_ = false;
};

HttpServer::HttpServer(const std::string& host, uint16_t port, Handler handler, RejectionCounts& rejected,
                       HttpServerLimits limits)
    : handler_(std::move(handler)), rejected_(rejected), limits_(limits) {
  sockaddr_storage ss{};
  socklen_t len;
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    len = sizeof(*sin);
  } else if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    len = sizeof(*sin6);
  } else {
    throw std::invalid_argument(fmt::format("'{}' is not an IPv4 or IPv6 address", host));
  }
  listen_fd_ = UniqueFd(socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listen_fd_) throw sys_error("socket");
  // A restart must not wait for the previous run's TIME_WAIT connections; a
  // port another socket listens on still fails.
  const int one = 1;
  setsockopt(listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0) throw sys_error("bind");
  if (listen(listen_fd_.get(), SOMAXCONN) < 0) throw sys_error("listen");
  len = sizeof(ss);
  if (getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) < 0) throw sys_error("getsockname");
  port_ = ntohs(ss.ss_family == AF_INET ? sin->sin_port : sin6->sin6_port);

  epoll_fd_ = UniqueFd(epoll_create1(EPOLL_CLOEXEC));
  stop_fd_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!epoll_fd_ || !stop_fd_) throw sys_error("epoll_create1/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenTag;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, listen_fd_.get(), &ev) < 0) throw sys_error("epoll_ctl");
  ev.data.u64 = kStopTag;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, stop_fd_.get(), &ev) < 0) throw sys_error("epoll_ctl");
  thread_ = std::thread([this] { Loop(*this).run(); });
}

HttpServer::~HttpServer() {
  const uint64_t one = 1;
  if (write(stop_fd_.get(), &one, sizeof(one)) < 0) log_error("metrics server: cannot stop: {}", errno_text(errno));
  thread_.join();
}

}  // namespace egressd

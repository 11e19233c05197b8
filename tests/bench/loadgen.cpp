// Load generator for tests/bench/run.sh: TCP over 127.0.0.1 to an in-process
// sink. Loopback only; it never sends anywhere else.
//
//   loadgen send DURATION_S            64-byte send() calls on one connection
//   loadgen connect DURATION_S         short connections, as fast as possible
//   loadgen connect-rate N DURATION_S  short connections paced at N per second
//   loadgen sink spin|epoll --listen ADDR:PORT
//                                      only the sink, on ADDR:PORT, until
//                                      SIGTERM or SIGINT (tests/bench/workloads.sh
//                                      runs it inside a network namespace)
//
// Options (before or after the mode): --cpu C (sender, default 0),
// --sink-cpu C (sink thread, default 1), --dst ADDR:PORT (send to a sink
// there, such as `loadgen sink`, instead of to an in-process one; the JSON
// line then has "dst" and none of the sink_* fields), --listen ADDR:PORT
// (sink mode). ADDR must be in 127.0.0.0/8 or 10.213.0.0/16 (the addresses
// workloads.sh gives its network namespace and veth pair): loadgen refuses
// any other, so it sends only to loopback or to that namespace.
//
// A short connection is: socket, connect, send 64 bytes, close (abortive: see
// one_connection). The sender is
// the main thread, pinned to one CPU; the sink is a thread pinned to another.
// Prints one JSON line on stdout, with the sender thread's share of its CPU
// over the run and how many times it was preempted. Exit status 0, or 2 on bad usage, 1 when the
// sink cannot be set up.
//
// Build: g++ -O2 -std=c++20 -pthread -o loadgen loadgen.cpp
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace {

constexpr size_t kPayload = 64;

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// CPU time and context switches of the calling thread: how much of the run
// the sender was on its CPU, how often something else took it, and how often
// it had to wait.
struct ThreadUsage {
  double cpu_s = 0;
  long preempted = 0;  // involuntary context switches: something else ran
  long blocked = 0;    // voluntary ones: the sender waited (full send buffer)
  static ThreadUsage now() {
    rusage ru{};
    getrusage(RUSAGE_THREAD, &ru);
    ThreadUsage u;
    u.cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
              static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
    u.preempted = ru.ru_nivcsw;
    u.blocked = ru.ru_nvcsw;
    return u;
  }
};

// Also the whole process's CPU time so far (sender and sink), which
// run.sh subtracts from the machine's to see what else ran meanwhile.
void print_usage(const ThreadUsage& before, const ThreadUsage& after, double elapsed) {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double self_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                        static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
  std::printf("\"sender_cpu_s\":%.3f,\"sender_cpu_share\":%.3f,\"sender_preempted\":%ld,"
              "\"sender_blocked\":%ld,\"process_cpu_s\":%.3f,",
              after.cpu_s - before.cpu_s, (after.cpu_s - before.cpu_s) / elapsed,
              after.preempted - before.preempted, after.blocked - before.blocked, self_s);
}

bool pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;  // 0: the calling thread
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "loadgen: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: loadgen [--cpu C] [--sink-cpu C] send DURATION_S\n"
               "       loadgen [--cpu C] [--sink-cpu C] connect DURATION_S\n"
               "       loadgen [--cpu C] [--sink-cpu C] connect-rate N DURATION_S\n"
               "       (with --dst ADDR:PORT: to that sink, not an in-process one)\n"
               "       loadgen [--sink-cpu C] --listen ADDR:PORT sink spin|epoll\n"
               "       (ADDR in 127.0.0.0/8 or 10.213.0.0/16)\n");
  std::exit(2);
}

// Accepts every connection on the listener and reads until EOF; the data is
// thrown away. Runs until destroyed.
//
// Two ways to wait, chosen per mode:
//  - Spin (send mode): never sleeps, polls with non-blocking calls. With a
//    reader that sleeps, 64-byte sends over loopback flip between two
//    regimes -- a wakeup per send, or batched reads -- and one run's send
//    rate differs from the next by up to 3x; spinning keeps it in one.
//  - Sleep in epoll_wait (connection modes): the sink CPU stays partly idle,
//    as a real server's would, so an agent woken there does not have to take
//    its time from the sender or the sink.
class Sink {
 public:
  enum class Wait { kSpin, kEpoll };

  // Binds 127.0.0.1 on a free port, or `bind_to` if given.
  Sink(int cpu, Wait wait, const sockaddr_in* bind_to = nullptr) : cpu_(cpu), wait_(wait) {
    lfd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd_ < 0) die("socket");
    int one = 1;
    setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (bind_to) a = *bind_to;
    if (bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0) die("bind");
    if (listen(lfd_, 4096) < 0) die("listen");
    socklen_t len = sizeof(addr_);
    if (getsockname(lfd_, reinterpret_cast<sockaddr*>(&addr_), &len) < 0) die("getsockname");
    if (wait_ == Wait::kEpoll) {
      epfd_ = epoll_create1(EPOLL_CLOEXEC);
      if (epfd_ < 0) die("epoll_create1");
      watch(lfd_);
    }
    thread_ = std::thread([this] { wait_ == Wait::kSpin ? spin() : sleep(); });
  }

  ~Sink() {
    stop_.store(true);
    thread_.join();
    for (int fd : open_) close(fd);
    if (epfd_ >= 0) close(epfd_);
    close(lfd_);
  }

  const sockaddr_in& addr() const { return addr_; }
  uint64_t accepted() const { return accepted_.load(); }
  // Mean bytes per successful recv(): how far the sink lags the sender.
  double bytes_per_read() const {
    const uint64_t n = reads_.load();
    return n ? static_cast<double>(read_bytes_.load()) / static_cast<double>(n) : 0.0;
  }
  bool pinned() const { return pinned_.load(); }
  // Gives the sink up to a second to accept the last connections.
  void wait_for(uint64_t n) const {
    for (int i = 0; i < 100 && accepted() < n; ++i) usleep(10'000);
  }
  const char* wait_name() const { return wait_ == Wait::kSpin ? "spin" : "epoll"; }

 private:
  void watch(int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
  }

  void accept_all() {
    for (;;) {
      int c = accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) return;
      accepted_.fetch_add(1, std::memory_order_relaxed);
      if (drain(c)) {  // data and FIN are often there already
        open_.insert(c);
        if (epfd_ >= 0) watch(c);
      } else {
        close(c);
      }
    }
  }

  void spin() {
    pinned_.store(pin(cpu_));
    std::vector<int> done;
    while (!stop_.load(std::memory_order_relaxed)) {
      accept_all();
      for (int fd : open_)
        if (!drain(fd)) done.push_back(fd);
      for (int fd : done) finish(fd);
      done.clear();
    }
  }

  void sleep() {
    pinned_.store(pin(cpu_));
    epoll_event evs[256];
    while (!stop_.load(std::memory_order_relaxed)) {
      int n = epoll_wait(epfd_, evs, 256, 50);
      for (int i = 0; i < n; ++i) {
        int fd = evs[i].data.fd;
        if (fd == lfd_)
          accept_all();
        else if (!drain(fd))
          finish(fd);
      }
    }
  }

  void finish(int fd) {
    open_.erase(fd);
    close(fd);  // also leaves the epoll set
  }

  // Reads what is there. False at EOF or error.
  bool drain(int fd) {
    for (;;) {
      ssize_t r = recv(fd, buf_.data(), buf_.size(), MSG_DONTWAIT);
      if (r > 0) {
        reads_.fetch_add(1, std::memory_order_relaxed);
        read_bytes_.fetch_add(static_cast<uint64_t>(r), std::memory_order_relaxed);
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (r < 0 && errno == EINTR) continue;
      return false;
    }
  }

  int cpu_;
  Wait wait_;
  int lfd_ = -1, epfd_ = -1;
  sockaddr_in addr_{};
  // The sink thread's alone (and the destructor's, after the join).
  std::unordered_set<int> open_;
  std::vector<char> buf_ = std::vector<char>(1 << 16);
  std::atomic<bool> stop_{false};
  std::atomic<bool> pinned_{false};
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> reads_{0}, read_bytes_{0};
  std::thread thread_;
};

struct Common {
  int cpu = 0, sink_cpu = 1;
  bool pinned = false;
  bool has_dst = false;  // --dst: an external sink
  sockaddr_in dst{};
  bool has_listen = false;  // --listen: the sink mode's address
  sockaddr_in listen{};
};

std::string addr_text(const sockaddr_in& a) {
  char ip[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &a.sin_addr, ip, sizeof(ip));
  return std::string(ip) + ":" + std::to_string(ntohs(a.sin_port));
}

// With --dst (no in-process sink): the fields print_common prints, without the sink's.
void print_common_dst(const Common& c) {
  std::printf("\"pid\":%d,\"cpu\":%d,\"pinned\":%s,\"dst\":\"%s\",\"port\":%u",
              static_cast<int>(getpid()), c.cpu, c.pinned ? "true" : "false", addr_text(c.dst).c_str(),
              ntohs(c.dst.sin_port));
}

void print_common(const Common& c, const Sink& sink) {
  std::printf("\"pid\":%d,\"cpu\":%d,\"sink_cpu\":%d,\"pinned\":%s,\"sink_pinned\":%s,\"port\":%u,\"sink_wait\":\"%s\"",
              static_cast<int>(getpid()), c.cpu, c.sink_cpu, c.pinned ? "true" : "false",
              sink.pinned() ? "true" : "false", ntohs(sink.addr().sin_port), sink.wait_name());
}

// The connection modes' last fields.
void print_end(const Common& c, const std::optional<Sink>& sink) {
  if (!sink) {
    print_common_dst(c);
    std::printf("}\n");
    return;
  }
  print_common(c, *sink);
  std::printf(",\"sink_accepted\":%llu}\n", static_cast<unsigned long long>(sink->accepted()));
}

// Sink mode: a sink on --listen until SIGTERM or SIGINT. Prints a line once
// it listens, and one with its counts when it stops.
int run_sink(const Common& c, const std::string& wait) {
  if (!c.has_listen || (wait != "spin" && wait != "epoll")) usage();
  pin(c.sink_cpu);  // the main thread only waits; keep it off the sender's CPU
  // Blocked before the sink thread starts, so that it inherits the mask and
  // the signal waits for sigwait below.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  uint64_t accepted = 0;
  double bpr = 0;
  bool sink_pinned = false;
  {
    Sink sink(c.sink_cpu, wait == "spin" ? Sink::Wait::kSpin : Sink::Wait::kEpoll, &c.listen);
    std::printf("{\"mode\":\"sink\",\"listening\":\"%s\",\"pid\":%d,\"sink_cpu\":%d,\"sink_wait\":\"%s\"}\n",
                addr_text(sink.addr()).c_str(), static_cast<int>(getpid()), c.sink_cpu, sink.wait_name());
    sigwait(&set, &sig);
    accepted = sink.accepted();
    bpr = sink.bytes_per_read();
    sink_pinned = sink.pinned();
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double self_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                        static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
  std::printf("{\"mode\":\"sink\",\"stopped_by\":%d,\"sink_accepted\":%llu,\"sink_bytes_per_read\":%.0f,"
              "\"sink_pinned\":%s,\"process_cpu_s\":%.3f}\n",
              sig, static_cast<unsigned long long>(accepted), bpr, sink_pinned ? "true" : "false", self_s);
  return 0;
}

int run_send(const Common& c, double duration) {
  std::optional<Sink> sink;
  if (!c.has_dst) sink.emplace(c.sink_cpu, Sink::Wait::kSpin);
  const sockaddr_in& dst = c.has_dst ? c.dst : sink->addr();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) die("TCP_NODELAY");
  if (connect(fd, reinterpret_cast<const sockaddr*>(&dst), sizeof(sockaddr_in)) < 0)
    die("connect");
  char payload[kPayload];
  std::memset(payload, 'x', sizeof(payload));

  uint64_t sends = 0, errors = 0;
  const ThreadUsage u0 = ThreadUsage::now();
  const double start = now_s();
  const double deadline = start + duration;
  double end = start;
  for (;;) {
    for (int i = 0; i < 32; ++i) {
      ssize_t r = send(fd, payload, sizeof(payload), 0);
      if (r == static_cast<ssize_t>(sizeof(payload)))
        ++sends;
      else
        ++errors;
    }
    end = now_s();
    if (end >= deadline) break;
  }
  const ThreadUsage u1 = ThreadUsage::now();
  const double elapsed = end - start;
  close(fd);
  std::printf("{\"mode\":\"send\",\"payload_bytes\":%zu,\"duration_s\":%.3f,\"sends\":%llu,"
              "\"send_errors\":%llu,\"sends_per_s\":%.1f,",
              kPayload, elapsed, static_cast<unsigned long long>(sends),
              static_cast<unsigned long long>(errors), static_cast<double>(sends) / elapsed);
  print_usage(u0, u1, elapsed);
  if (!sink) {
    print_common_dst(c);
    std::printf("}\n");
    return 0;
  }
  print_common(c, *sink);
  std::printf(",\"sink_bytes_per_read\":%.0f}\n", sink->bytes_per_read());
  return 0;
}

struct ConnStats {
  uint64_t attempted = 0;  // connect() calls made
  uint64_t connected = 0;  // connect() calls that succeeded
  uint64_t send_errors = 0;
  uint64_t socket_errors = 0;
  std::map<int, uint64_t> connect_errno;
};

// One short connection. Returns false if no connect() call was made.
//
// The close is abortive (SO_LINGER 0: an RST, no TIME_WAIT). With a normal
// close every connection leaves a TIME_WAIT socket on its port, and Linux
// gives connect() only the even half of the ephemeral range and reuses a
// TIME_WAIT port (tcp_tw_reuse=2) only after tcp_tw_reuse_delay (1 s): from
// one source address to one port that caps the rate at about 14,100 per
// second (32768-60999), whatever else the sender pays, and then measures
// the port search rather than the connection.
bool one_connection(const sockaddr_in& dst, const char* payload, ConnStats& s) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ++s.socket_errors;
    return false;
  }
  const linger abortive{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive));
  ++s.attempted;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&dst), sizeof(dst)) < 0) {
    ++s.connect_errno[errno];
    close(fd);
    return true;
  }
  ++s.connected;
  if (send(fd, payload, kPayload, 0) != static_cast<ssize_t>(kPayload)) ++s.send_errors;
  close(fd);
  return true;
}

void print_conn_stats(const ConnStats& s) {
  std::printf("\"attempted\":%llu,\"connections\":%llu,\"send_errors\":%llu,\"socket_errors\":%llu,"
              "\"connect_errors\":{",
              static_cast<unsigned long long>(s.attempted),
              static_cast<unsigned long long>(s.connected),
              static_cast<unsigned long long>(s.send_errors),
              static_cast<unsigned long long>(s.socket_errors));
  bool first = true;
  for (const auto& [e, n] : s.connect_errno) {
    std::printf("%s\"%s\":%llu", first ? "" : ",", strerrorname_np(e) ? strerrorname_np(e) : "?",
                static_cast<unsigned long long>(n));
    first = false;
  }
  std::printf("},");
}

int run_connect(const Common& c, double duration) {
  std::optional<Sink> sink;
  if (!c.has_dst) sink.emplace(c.sink_cpu, Sink::Wait::kEpoll);
  const sockaddr_in& dst = c.has_dst ? c.dst : sink->addr();
  char payload[kPayload];
  std::memset(payload, 'x', sizeof(payload));
  ConnStats s;
  const ThreadUsage u0 = ThreadUsage::now();
  const double start = now_s();
  const double deadline = start + duration;
  double end = start;
  for (;;) {
    one_connection(dst, payload, s);
    end = now_s();
    if (end >= deadline) break;
  }
  const ThreadUsage u1 = ThreadUsage::now();
  const double elapsed = end - start;
  if (sink) sink->wait_for(s.connected);
  std::printf("{\"mode\":\"connect\",\"duration_s\":%.3f,", elapsed);
  print_conn_stats(s);
  print_usage(u0, u1, elapsed);
  std::printf("\"connections_per_s\":%.1f,", static_cast<double>(s.connected) / elapsed);
  print_end(c, sink);
  return 0;
}

int run_connect_rate(const Common& c, double rate, double duration) {
  std::optional<Sink> sink;
  if (!c.has_dst) sink.emplace(c.sink_cpu, Sink::Wait::kEpoll);
  const sockaddr_in& dst = c.has_dst ? c.dst : sink->addr();
  char payload[kPayload];
  std::memset(payload, 'x', sizeof(payload));
  ConnStats s;
  const uint64_t total = static_cast<uint64_t>(rate * duration + 0.5);
  const double interval = 1.0 / rate;
  double max_lag = 0;
  const ThreadUsage u0 = ThreadUsage::now();
  const double start = now_s();
  for (uint64_t i = 0; i < total; ++i) {
    const double due = start + static_cast<double>(i) * interval;
    double now = now_s();
    if (now < due) {
      // Sleep only when well ahead; spin the last stretch.
      if (due - now > 200e-6) {
        const double t = due - 100e-6;
        timespec ts;
        ts.tv_sec = static_cast<time_t>(t);
        ts.tv_nsec = static_cast<long>((t - static_cast<double>(ts.tv_sec)) * 1e9);
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
      }
      while (now_s() < due) {
      }
    } else if (now - due > max_lag) {
      max_lag = now - due;
    }
    one_connection(dst, payload, s);
  }
  const double elapsed = now_s() - start;
  const ThreadUsage u1 = ThreadUsage::now();
  if (sink) sink->wait_for(s.connected);
  std::printf("{\"mode\":\"connect-rate\",\"target_per_s\":%.0f,\"planned\":%llu,\"duration_s\":%.3f,",
              rate, static_cast<unsigned long long>(total), elapsed);
  print_conn_stats(s);
  print_usage(u0, u1, elapsed);
  std::printf("\"connections_per_s\":%.1f,\"max_lag_ms\":%.3f,",
              static_cast<double>(s.connected) / elapsed, max_lag * 1e3);
  print_end(c, sink);
  return 0;
}

double number(const char* s) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || *end || !(v > 0)) usage();
  return v;
}

// ADDR:PORT, ADDR in 127.0.0.0/8 or 10.213.0.0/16 (see the top of the file).
sockaddr_in endpoint(const char* s) {
  const std::string t = s;
  const size_t colon = t.rfind(':');
  if (colon == std::string::npos) usage();
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (inet_pton(AF_INET, t.substr(0, colon).c_str(), &a.sin_addr) != 1) usage();
  char* end = nullptr;
  const long port = std::strtol(t.c_str() + colon + 1, &end, 10);
  if (end == t.c_str() + colon + 1 || *end || port < 1 || port > 65535) usage();
  a.sin_port = htons(static_cast<uint16_t>(port));
  const uint32_t ip = ntohl(a.sin_addr.s_addr);
  if ((ip >> 24) != 127 && (ip >> 16) != ((10u << 8) | 213u)) {
    std::fprintf(stderr, "loadgen: %s: only 127.0.0.0/8 and 10.213.0.0/16 are allowed\n", s);
    std::exit(2);
  }
  return a;
}

int cpu_number(const char* s) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end || v < 0 || v >= CPU_SETSIZE) usage();
  return static_cast<int>(v);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  Common c;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--cpu" || a == "--sink-cpu") && i + 1 < argc) {
      int v = cpu_number(argv[++i]);
      (a == "--cpu" ? c.cpu : c.sink_cpu) = v;
      continue;
    }
    if (a == "--cpu" || a == "--sink-cpu") usage();
    if ((a == "--dst" || a == "--listen") && i + 1 < argc) {
      const sockaddr_in e = endpoint(argv[++i]);
      if (a == "--dst") {
        c.has_dst = true;
        c.dst = e;
      } else {
        c.has_listen = true;
        c.listen = e;
      }
      continue;
    }
    if (a == "--dst" || a == "--listen") usage();
    pos.push_back(a);
  }
  if (pos.empty()) usage();
  if (pos[0] == "sink") {
    if (pos.size() != 2 || c.has_dst) usage();
    setvbuf(stdout, nullptr, _IOLBF, 0);
    return run_sink(c, pos[1]);
  }
  if (c.has_listen) usage();
  // The sink thread pins itself; the main thread (the sender) pins here,
  // before any socket work.
  c.pinned = pin(c.cpu);
  if (!c.pinned) std::fprintf(stderr, "loadgen: cannot pin to CPU %d: %s\n", c.cpu, std::strerror(errno));
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (pos[0] == "send" && pos.size() == 2) return run_send(c, number(pos[1].c_str()));
  if (pos[0] == "connect" && pos.size() == 2) return run_connect(c, number(pos[1].c_str()));
  if (pos[0] == "connect-rate" && pos.size() == 3)
    return run_connect_rate(c, number(pos[1].c_str()), number(pos[2].c_str()));
  usage();
}

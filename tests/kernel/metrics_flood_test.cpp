// The watched cannot blind the watcher: the real agent's metrics endpoint
// keeps answering scrapes and health checks while an unprivileged local
// process holds hundreds of slow, idle and garbage connections to it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace egressd::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

uint16_t port_of(const std::string& host_port) {
  return static_cast<uint16_t>(std::stoi(host_port.substr(host_port.rfind(':') + 1)));
}

// A connection from source (127.x.y.z) to 127.0.0.1:port; -1 when refused.
int connect_from(const std::string& source, uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, source.c_str(), &a.sin_addr);
  sockaddr_in b{};
  b.sin_family = AF_INET;
  b.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &b.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&b), sizeof(b)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

struct Answer {
  std::string status;  // "200", ..., or why there was none
  std::chrono::milliseconds took{};
};

// GET path with a deadline of limit for the whole answer.
Answer timed_get(uint16_t port, const std::string& path, std::chrono::milliseconds limit) {
  const auto t0 = Clock::now();
  Answer a;
  const int fd = connect_from("127.0.0.1", port);
  if (fd < 0) return {"connect refused", {}};
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: egressd\r\n\r\n";
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return {"send failed", {}};
  }
  std::string data;
  char buf[65536];
  for (;;) {
    const auto left = limit - std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    if (left <= 0ms) {
      a.status = "timed out";
      break;
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) {
      a.status = data.size() > 12 ? data.substr(9, 3) : "empty";
      break;
    }
    data.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  a.took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  return a;
}

double rejected(const std::string& exposition, const std::string& reason) {
  return metric_sum(exposition, "egressd_metrics_connections_rejected_total", {{"reason", reason}});
}

// The hostile process: as nobody, opens kSlow connections that send half a
// request line ("GET /metr") from kSources addresses (16 each: the per-client
// cap), kIdle that send nothing, kGarbage that send a TLS record, then
// kOverCap more slow ones from the first address; says how many it opened on
// report and waits to be killed.
constexpr int kSources = 20, kPerSource = 16, kIdle = 40, kGarbage = 40, kOverCap = 4;

[[noreturn]] void hostile(uint16_t port, int report) {
  if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
  std::vector<int> held;
  int opened = 0;
  auto open = [&](const std::string& source, const std::string& what) {
    const int fd = connect_from(source, port);
    if (fd < 0) return;
    ++opened;
    if (!what.empty()) (void)!send(fd, what.data(), what.size(), MSG_NOSIGNAL);
    held.push_back(fd);
  };
  for (int s = 0; s < kSources; ++s)
    for (int i = 0; i < kPerSource; ++i) open("127.0.1." + std::to_string(s + 1), "GET /metr");
  for (int i = 0; i < kIdle; ++i) open("127.0.3." + std::to_string(i % 20 + 1), "");
  for (int i = 0; i < kGarbage; ++i) open("127.0.2.1", std::string("\x16\x03\x01\x00\x05garbage\r\n"));
  for (int i = 0; i < kOverCap; ++i) open("127.0.1.1", "GET /metr");
  (void)!write(report, &opened, sizeof(opened));
  for (;;) pause();
}

TEST(MetricsUnderAttack, ScrapesAndHealthChecksAreAnsweredWithinASecond) {
  EGRESSD_REQUIRE_KERNEL();
  AgentProcess agent;
  ASSERT_TRUE(agent.started()) << agent.stderr_text();
  const uint16_t port = port_of(agent.metrics_address());
  const std::string before = agent.scrape();

  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipefd[0]);
    hostile(port, pipefd[1]);
  }
  close(pipefd[1]);
  int opened = 0;
  ASSERT_EQ(read(pipefd[0], &opened, sizeof(opened)), static_cast<ssize_t>(sizeof(opened)));
  close(pipefd[0]);
  const auto attack_began = Clock::now();
  EXPECT_EQ(opened, kSources * kPerSource + kIdle + kGarbage + kOverCap);

  // While every hostile connection is still within its 2 s head deadline.
  std::chrono::milliseconds worst{};
  for (int round = 0; round < 5; ++round) {
    for (const char* path : {"/metrics", "/healthz"}) {
      const Answer a = timed_get(port, path, 1000ms);
      EXPECT_EQ(a.status, "200") << path << " in round " << round;
      worst = std::max(worst, a.took);
    }
  }
  EXPECT_LT(Clock::now() - attack_began, 2000ms) << "the scrapes did not run while the attack held";
  EXPECT_LT(worst, 1000ms);

  // The caps and the head deadline end every hostile connection, counted.
  std::string after;
  wait_until([&] {
    after = agent.scrape();
    return rejected(after, "header_timeout") - rejected(before, "header_timeout") >= kSources * kPerSource + kIdle;
  }, 10s);
  EXPECT_EQ(rejected(after, "per_client_cap") - rejected(before, "per_client_cap"), kOverCap);
  EXPECT_EQ(rejected(after, "bad_request") - rejected(before, "bad_request"), kGarbage);
  EXPECT_EQ(rejected(after, "header_timeout") - rejected(before, "header_timeout"), kSources * kPerSource + kIdle);
  EXPECT_EQ(rejected(after, "total_cap") - rejected(before, "total_cap"), 0);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_EQ(timed_get(port, "/healthz", 1000ms).status, "200");
}

}  // namespace
}  // namespace egressd::test

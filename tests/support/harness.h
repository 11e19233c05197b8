// Shared pieces of the kernel and end-to-end tests: the real agent as a child
// process, sinks on loopback, the traffic generator, log and metric readers.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "pinned_state.h"
#include "subprocess.h"
#include "temp_dir.h"

namespace egressd::test {

// Kernel tests need root and a kernel that loads the programs. Without them
// they skip with the reason, unless EGRESSD_REQUIRE_BPF=1 (CI), where the
// same condition is a failure: a skip in CI would hide a broken data path.
std::string bpf_unavailable_reason();
#define EGRESSD_REQUIRE_KERNEL()                                              \
  do {                                                                        \
    std::string why_ = ::egressd::test::bpf_unavailable_reason();             \
    if (!why_.empty()) {                                                      \
      if (::egressd::test::bpf_required()) FAIL() << "EGRESSD_REQUIRE_BPF=1: " << why_; \
      GTEST_SKIP() << why_;                                                   \
    }                                                                         \
  } while (0)
bool bpf_required();

std::string egressd_bin();
std::string traffic_bin();  // canonical path, as the kernel resolves it

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// EGRESSD_TEST_KERNEL (YAML lines, or items separated by commas, for the
// kernel section): adds it to the -c/--config file among args, or a config
// file of its own written in dir, so a suite runs again on a fallback path
// of this kernel (ctest kernel_fallbacks.*). AgentProcess applies it; tests
// that run egressd themselves call it.
void with_kernel_overrides(std::vector<std::string>& args, const std::string& dir);

// The real agent, started as `egressd run` with its own log file and a free
// metrics port. stop() sends SIGTERM and returns the exit status.
class AgentProcess {
 public:
  // log_path: where the event log goes (default: a file in a temp dir).
  explicit AgentProcess(std::vector<std::string> extra_args = {}, std::string log_path = "");
  ~AgentProcess();
  bool started() const { return running() && !metrics_addr_.empty(); }
  int stop();
  // SIGKILL, as the OOM killer or a crash would end it; its log is then
  // checked without a last line the kill cut short.
  void kill_hard();
  pid_t pid() const { return running() ? proc_->pid() : -1; }
  const std::string& log_path() const { return log_path_; }
  const std::string& metrics_address() const { return metrics_addr_; }
  std::vector<nlohmann::json> events() const;
  std::string scrape() const;
  std::string stderr_text() const;

 private:
  bool running() const { return proc_ && proc_->started() && !proc_->status(); }

  TempDir dir_{"egressd-test"};
  std::string log_path_, err_path_, metrics_addr_;
  bool killed_ = false;
  std::string own_instance_;  // the --instance the harness chose, unpinned at the end
  std::unique_ptr<Subprocess> proc_;
};

// Where egressd run pins its kernel state (PinOptions), one directory per --instance.
inline const std::string kPinRoot = PinOptions().root;
// Unpins an instance's state: its programs are detached.
void remove_pins(const std::string& instance);

// A suite whose tests share one agent with its defaults, started once for
// the suite. SetUp fails each test (skips it, outside CI) when the kernel
// cannot run it, or when the agent did not start.
class SharedAgentTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (bpf_unavailable_reason().empty()) agent_ = new AgentProcess();
  }
  static void TearDownTestSuite() {
    delete agent_;
    agent_ = nullptr;
  }
  void SetUp() override {
    EGRESSD_REQUIRE_KERNEL();
    ASSERT_TRUE(agent_ && agent_->started()) << (agent_ ? agent_->stderr_text() : "no agent");
  }
  static inline AgentProcess* agent_ = nullptr;
};

struct TrafficResult {
  int pid = 0;
  uint64_t bytes = 0;
  int child = 0;
  uint64_t child_bytes = 0;
  int64_t elapsed_us = 0;
  int exit_code = -1;
  std::string output;
};

// Runs egressd-traffic with args (prefix: e.g. {"ip","netns","exec","ns"}).
TrafficResult run_traffic(const std::vector<std::string>& args,
                          const std::vector<std::string>& prefix = {},
                          const std::string& binary = "");

// Runs argv to its end in a process group of its own with stdio on
// /dev/null; returns the exit code (-1 if a signal ended it) and stores the
// child's pid.
int run_process(const std::vector<std::string>& argv, pid_t* pid = nullptr);

// egressd-traffic (or a copy of it) run with a mode that waits on stdin:
// the constructor returns after its first line; go() lets it continue;
// finish() waits for it to exit. Killed when destroyed.
class InteractiveTraffic {
 public:
  InteractiveTraffic(const std::string& binary, const std::vector<std::string>& args);
  pid_t pid() const { return proc_.pid(); }
  const std::string& first_line() const { return first_line_; }
  void go();
  int finish();  // exit code, -1 if a signal ended it

 private:
  Subprocess proc_;
  std::string first_line_;
};

// TCP listener on 127.0.0.1 or ::1 that accepts and drains in a thread.
// Accepts stream connections and drains them. protocol: 0 (TCP) or
// IPPROTO_SCTP; port() is 0 when the kernel has no such protocol.
class TcpSink {
 public:
  explicit TcpSink(const std::string& addr = "127.0.0.1", int protocol = 0);
  ~TcpSink();
  int port() const { return port_; }
  uint64_t received() const { return received_.load(); }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_{0};
  std::thread thread_;
};

// A bound UDP socket nobody reads: datagrams are counted by the sender side.
class UdpSink {
 public:
  explicit UdpSink(const std::string& addr = "127.0.0.1");
  ~UdpSink();
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Final source.bytes of the flows of pid to port: the last flow-ended or
// flow-updated event of each flow id, summed.
uint64_t logged_bytes(const std::vector<nlohmann::json>& events, int pid, int port);
// Events with event.action == action of process pid.
std::vector<nlohmann::json> events_of(const std::vector<nlohmann::json>& events,
                                      const std::string& action, int pid);

// Sum of the samples of a metric whose labels include all of want.
double metric_sum(const std::string& exposition, const std::string& name,
                  const std::map<std::string, std::string>& want);

int free_tcp_port();
// Runs a shell command; returns its stdout (and the exit code in *code).
std::string run_capture(const std::string& cmd, int* code = nullptr);

// argv as a shell command line, each word quoted.
std::string shell_words(const std::vector<std::string>& argv);

// A shell command that runs argv in a network namespace of its own that has
// only lo, with an /etc/resolv.conf naming 127.0.0.1: nothing it does can
// reach another machine. For browsers, and anything else that may call home
// (update checks, telemetry, resolver probes).
std::string isolated_command(const std::vector<std::string>& argv);

// Debian's Prometheus on a free loopback port, scraping target every second
// (job "egressd"). extra_config is appended to prometheus.yml (rule_files,
// alerting). Stopped with SIGTERM when destroyed.
class PrometheusServer {
 public:
  PrometheusServer(const std::string& dir, const std::string& target, const std::string& extra_config = "");
  ~PrometheusServer();
  bool ready() const;
  // The result vector of an instant query, as JSON.
  nlohmann::json query(const std::string& promql) const;

 private:
  int port_ = 0;
  std::unique_ptr<Subprocess> proc_;
};

// Fails the current test unless every line of the file (and of the files it
// rotated to) matches docs/egressd-events.schema.json.
// whole_lines_in: a directory for copies of the files without a last line
// that has no end (an agent killed in the middle of a write); "" to check the
// files as they are.
void validate_log(const std::string& log_path, const std::string& whole_lines_in = "");

// A string field at a dotted path ("process.executable"), or "".
std::string field(const nlohmann::json& j, const std::string& dotted);

}  // namespace egressd::test

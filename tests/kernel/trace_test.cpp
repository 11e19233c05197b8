// egressd trace on a real kernel: launch mode with exact summaries while
// unrelated traffic runs beside it, every filter's inclusion and exclusion,
// the terminal view through a real pseudo-terminal, and the HTML report
// rendered by headless Chromium.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <set>
#include <sstream>

#include "harness.h"

namespace egressd::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `egressd trace ARGS` with stdout and stderr in files; env: NAME=VALUE
// entries added to its environment.
class TraceProcess {
 public:
  explicit TraceProcess(std::vector<std::string> args, std::vector<std::string> env = {})
      : proc_(command(std::move(args)), options(std::move(env))) {}
  // Attached, and the processes running at start judged.
  bool wait_ready() {
    return wait_until([&] { return err().find("egressd trace: following") != std::string::npos || exited(); },
                      30s) &&
           !exited();
  }
  bool exited() { return !proc_.running(); }
  // Waits for the trace to end by itself; -1 on timeout.
  int wait(std::chrono::seconds timeout = 60s) { return proc_.wait(timeout).value_or(-1); }
  int interrupt() {
    proc_.kill(SIGINT);
    return wait(30s);
  }
  std::string out() const { return read_file(dir_ / "out"); }
  std::string err() const { return read_file(dir_ / "err"); }
  std::string out_path() const { return dir_ / "out"; }
  std::vector<nlohmann::json> lines() const {
    std::vector<nlohmann::json> v;
    std::istringstream in(out());
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) v.push_back(nlohmann::json::parse(line, nullptr, false));
    return v;
  }
  // The events, without the final trace-summary line.
  std::vector<nlohmann::json> events() const {
    auto v = lines();
    if (!v.empty() && field(v.back(), "event.action") == "trace-summary") v.pop_back();
    return v;
  }
  nlohmann::json summary() const {
    auto v = lines();
    if (v.empty() || field(v.back(), "event.action") != "trace-summary") return nullptr;
    return v.back()["egressd"]["trace"];
  }

 private:
  std::vector<std::string> command(std::vector<std::string> args) {
    std::vector<std::string> argv = {egressd_bin(), "trace"};
    with_kernel_overrides(args, dir_.path());
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  SubprocessOptions options(std::vector<std::string> env) const {
    SubprocessOptions o;
    o.in = Stdio::null();
    o.out = Stdio::file(dir_ / "out");
    o.err = Stdio::file(dir_ / "err");
    o.env = std::move(env);
    o.own_process_group = true;
    return o;
  }

  TempDir dir_{"egressd-trace-test"};  // before proc_: its files outlive the process
  Subprocess proc_;
};

// The summary's row for address:port/transport, or null.
nlohmann::json destination(const nlohmann::json& summary, const std::string& address, int port,
                           const std::string& transport) {
  if (!summary.is_object()) return nullptr;
  for (const auto& d : summary["destinations"])
    if (d["address"] == address && d["port"] == port && d["transport"] == transport) return d;
  return nullptr;
}

std::set<int> pids_in(const std::vector<nlohmann::json>& events) {
  std::set<int> pids;
  for (const auto& e : events)
    if (e.contains("process")) pids.insert(e["process"]["pid"].get<int>());
  return pids;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string fmt_cmd(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + shell_quote(a);
  return out;
}

std::string tcp_cmd(const std::string& bin, const std::string& host, int port, uint64_t bytes) {
  return fmt_cmd({bin, "tcp", host, std::to_string(port), std::to_string(bytes), "1000", "send"});
}

// A shell that waits for a line on stdin, then runs cmd: a process tree that
// exists before the traffic starts.
class WaitingShell {
 public:
  explicit WaitingShell(const std::string& cmd) : proc_({"/bin/sh", "-c", "read line; " + cmd}, options()) {}
  pid_t pid() const { return proc_.pid(); }
  void go() {
    proc_.write_stdin("\n");
    proc_.close_stdin();
  }
  int finish() {
    const int status = proc_.wait();
    return proc_.signaled() ? -1 : status;
  }

 private:
  static SubprocessOptions options() {
    SubprocessOptions o;
    o.in = Stdio::pipe();
    o.out = Stdio::null();
    return o;
  }
  Subprocess proc_;
};

// Whether a --json trace has shown the end of every flow it showed the
// start of, and at least one (to port, when not 0): what a test waits for
// before it interrupts the trace.
bool flows_ended(const std::vector<nlohmann::json>& events, int port = 0) {
  std::set<std::string> started, ended;
  for (const auto& e : events) {
    if (port && field(e, "destination.port") != std::to_string(port)) continue;
    const std::string action = field(e, "event.action");
    if (action == "connection-attempted") started.insert(field(e, "egressd.flow.id"));
    if (action == "flow-ended") ended.insert(field(e, "egressd.flow.id"));
  }
  if (ended.empty()) return false;
  for (const auto& id : started)
    if (!ended.count(id)) return false;
  return true;
}

// A copy of egressd-traffic under another name: its executable path and comm
// tell it apart from the original.
std::string traffic_copy(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name;
  fs::copy_file(traffic_bin(), path, fs::copy_options::overwrite_existing);
  chmod(path.c_str(), 0755);
  return fs::canonical(path).string();
}

class Trace : public ::testing::Test {
 protected:
  void SetUp() override {
    EGRESSD_REQUIRE_KERNEL();
    tmp_ = std::make_unique<TempDir>("egressd-trace-test");
    dir_ = tmp_->path();
  }

  // Runs a filtered trace while `included` and `excluded` run (both shell
  // commands, started after the trace is ready); returns the trace's events
  // and summary once the included command's flows have ended.
  struct Outcome {
    std::vector<nlohmann::json> events;
    nlohmann::json summary;
    std::set<int> pids;
  };
  Outcome filtered(const std::vector<std::string>& trace_args, const std::string& included,
                   const std::string& excluded) {
    std::vector<std::string> args = {"--json"};
    args.insert(args.end(), trace_args.begin(), trace_args.end());
    TraceProcess trace(args);
    EXPECT_TRUE(trace.wait_ready()) << trace.err();
    EXPECT_EQ(run_process({"/bin/sh", "-c", excluded}), 0) << excluded;
    EXPECT_EQ(run_process({"/bin/sh", "-c", included}), 0) << included;
    // The flows are over: the trace shows their ends once it has read them.
    wait_until([&] { return flows_ended(trace.events()); }, 10s);
    EXPECT_EQ(trace.interrupt(), 0) << trace.err();
    Outcome o{trace.events(), trace.summary(), {}};
    o.pids = pids_in(o.events);
    validate_log(trace.out_path());
    return o;
  }

  // A copy of egressd-traffic named `name` sends `bytes` to a sink while the
  // original sends 777 bytes to the same sink: the trace (args made from the
  // copy's path) shows exactly the copy's bytes, and only the copy.
  Outcome only_the_copy(const std::string& name,
                        const std::function<std::vector<std::string>(const std::string&)>& args,
                        uint64_t bytes) {
    TcpSink sink;
    const std::string copy = traffic_copy(dir_, name);
    Outcome o = filtered(args(copy), tcp_cmd(copy, "127.0.0.1", sink.port(), bytes),
                         tcp_cmd(traffic_bin(), "127.0.0.1", sink.port(), 777));
    const auto d = destination(o.summary, "127.0.0.1", sink.port(), "tcp");
    EXPECT_TRUE(d.is_object()) << o.summary.dump(2);
    if (d.is_object()) {
      EXPECT_EQ(d["bytes"], bytes);
      EXPECT_EQ(d["binaries"], nlohmann::json::array({copy}));
    }
    for (const auto& e : o.events) EXPECT_EQ(field(e, "process.executable"), copy) << e.dump();
    return o;
  }

  std::unique_ptr<TempDir> tmp_;
  std::string dir_;
};

// trace -- CMD: a script whose children connect and send known bytes while
// the same binary sends to the same sink outside the trace. The summary
// counts exactly the script's bytes and nothing of the rest, and the trace
// exits with the script's status.
TEST_F(Trace, LaunchModeSummaryIsExactAmidUnrelatedTraffic) {
  TcpSink tcp;
  UdpSink udp;
  const std::string bin = traffic_bin();
  // Unrelated: the same binary, to the same sinks, all along (paced with
  // sleep 0.1 so that it overlaps the traced script).
  WaitingShell unrelated("for i in $(seq 20); do " + tcp_cmd(bin, "127.0.0.1", tcp.port(), 999) +
                         " >/dev/null; " +
                         fmt_cmd({bin, "udp", "127.0.0.1", std::to_string(udp.port()), "3", "111"}) +
                         " >/dev/null; sleep 0.1; done");
  unrelated.go();
  const std::string script = tcp_cmd(bin, "127.0.0.1", tcp.port(), 12345) + " >/dev/null & " +
                             tcp_cmd(bin, "127.0.0.1", tcp.port(), 2000) + " >/dev/null & " +
                             fmt_cmd({bin, "udp", "127.0.0.1", std::to_string(udp.port()), "4", "250"}) +
                             " >/dev/null; wait; exit 7";
  TraceProcess trace({"--json", "--", "/bin/sh", "-c", script});
  EXPECT_EQ(trace.wait(), 7) << trace.err();
  EXPECT_EQ(unrelated.finish(), 0);
  const auto summary = trace.summary();
  ASSERT_TRUE(summary.is_object()) << trace.out() << trace.err();
  const auto t = destination(summary, "127.0.0.1", tcp.port(), "tcp");
  ASSERT_TRUE(t.is_object()) << summary.dump(2);
  EXPECT_EQ(t["bytes"], 12345 + 2000) << t.dump();
  EXPECT_EQ(t["connections"], 2);
  EXPECT_EQ(t["failed_connections"], 0);
  EXPECT_EQ(t["binaries"], nlohmann::json::array({bin}));
  const auto u = destination(summary, "127.0.0.1", udp.port(), "udp");
  ASSERT_TRUE(u.is_object()) << summary.dump(2);
  EXPECT_EQ(u["bytes"], 1000);
  EXPECT_EQ(u["connections"], 1);
  EXPECT_EQ(summary["destinations"].size(), 2u) << summary.dump(2);
  // Every event is from a child of the one traced shell, none from the
  // unrelated loop's.
  const auto events = trace.events();
  std::set<int> parents;
  for (const auto& e : events) {
    ASSERT_TRUE(e.contains("process")) << e.dump();
    EXPECT_EQ(field(e, "process.executable"), bin) << e.dump();
    parents.insert(e["process"]["parent"]["pid"].get<int>());
  }
  EXPECT_EQ(parents.size(), 1u);
  EXPECT_FALSE(parents.count(unrelated.pid()));
  EXPECT_GE(events.size(), 6u);  // 3 connections attempted, 3 flows ended
  validate_log(trace.out_path());
}

// A trace loads its own programs: beside a running agent both count the
// same exact bytes.
TEST_F(Trace, RunsBesideTheAgent) {
  AgentProcess agent;
  ASSERT_TRUE(agent.started()) << agent.stderr_text();
  TcpSink sink;
  TraceProcess trace({"--json", "--", "/bin/sh", "-c",
                      tcp_cmd(traffic_bin(), "127.0.0.1", sink.port(), 9100) + " >/dev/null"});
  ASSERT_EQ(trace.wait(), 0) << trace.err();
  const auto d = destination(trace.summary(), "127.0.0.1", sink.port(), "tcp");
  ASSERT_TRUE(d.is_object()) << trace.out();
  EXPECT_EQ(d["bytes"], 9100);
  const int pid = trace.events().front()["process"]["pid"];
  uint64_t logged = 0;
  wait_until([&] { return (logged = logged_bytes(agent.events(), pid, sink.port())) >= 9100; }, 10s);
  EXPECT_EQ(logged, 9100u);
}

// Through sudo, the command runs as the user who ran sudo, not as root.
TEST_F(Trace, LaunchModeRunsTheCommandAsTheSudoUser) {
  chmod(dir_.c_str(), 0777);
  const std::string out = dir_ + "/id";
  TcpSink sink;
  TraceProcess trace({"--json", "--", "/bin/sh", "-c",
                      "id -u > " + out + "; id -G >> " + out + "; " +
                          tcp_cmd(traffic_bin(), "127.0.0.1", sink.port(), 300) + " >" + dir_ + "/traffic.out"},
                     {"SUDO_UID=65534", "SUDO_GID=65534", "SUDO_USER=nobody"});
  ASSERT_EQ(trace.wait(), 0) << trace.err();
  EXPECT_EQ(read_file(out), "65534\n65534\n");
  bool seen = false;
  for (const auto& e : trace.events()) {
    EXPECT_EQ(field(e, "user.id"), "65534") << e.dump();
    seen = true;
  }
  EXPECT_TRUE(seen) << trace.out();
}

TEST_F(Trace, LaunchModeReportsACommandThatCannotRun) {
  TraceProcess trace({"--", dir_ + "/no-such-command"});
  EXPECT_EQ(trace.wait(), 3);
  EXPECT_NE(trace.err().find("cannot run " + dir_ + "/no-such-command: No such file or directory"),
            std::string::npos)
      << trace.err();
}

TEST_F(Trace, PidFilterFollowsTheProcessAndItsDescendants) {
  TcpSink a, b;
  WaitingShell in(tcp_cmd(traffic_bin(), "127.0.0.1", a.port(), 4321));
  WaitingShell out(tcp_cmd(traffic_bin(), "127.0.0.1", b.port(), 1234));
  TraceProcess trace({"--json", "--pid", std::to_string(in.pid())});
  ASSERT_TRUE(trace.wait_ready()) << trace.err();
  const pid_t shell = in.pid();
  out.go();
  in.go();
  EXPECT_EQ(in.finish(), 0);
  EXPECT_EQ(out.finish(), 0);
  wait_until([&] { return flows_ended(trace.events(), a.port()); }, 10s);
  EXPECT_EQ(trace.interrupt(), 0);
  const auto s = trace.summary();
  const auto d = destination(s, "127.0.0.1", a.port(), "tcp");
  ASSERT_TRUE(d.is_object()) << trace.out() << trace.err();
  EXPECT_EQ(d["bytes"], 4321);
  EXPECT_TRUE(destination(s, "127.0.0.1", b.port(), "tcp").is_null()) << s.dump(2);
  for (const auto& e : trace.events()) EXPECT_EQ(e["process"]["parent"]["pid"], shell) << e.dump();
}

// The kernel drops what the trace does not follow: a hundred unrelated
// connections during a --pid trace reach its ring buffer as nothing.
TEST_F(Trace, UnfollowedProcessesAreFilteredInTheKernel) {
  TcpSink a, b;
  WaitingShell in(tcp_cmd(traffic_bin(), "127.0.0.1", a.port(), 100));
  WaitingShell noise("for i in $(seq 100); do " + tcp_cmd(traffic_bin(), "127.0.0.1", b.port(), 10) +
                     "; done");
  TraceProcess trace({"--json", "--pid", std::to_string(in.pid())});
  ASSERT_TRUE(trace.wait_ready()) << trace.err();
  noise.go();
  EXPECT_EQ(noise.finish(), 0);
  in.go();
  EXPECT_EQ(in.finish(), 0);
  wait_until([&] { return flows_ended(trace.events(), a.port()); }, 10s);
  EXPECT_EQ(trace.interrupt(), 0);
  const auto s = trace.summary();
  ASSERT_TRUE(destination(s, "127.0.0.1", a.port(), "tcp").is_object()) << s.dump(2);
  // The followed shell's child: fork, exec, exit, connect, its result and
  // close. The noise (100 x those) would be 600.
  EXPECT_LE(s["kernel_events"].get<int>(), 12) << s.dump(2);
}

TEST_F(Trace, PidFilterRejectsAMissingProcess) {
  TraceProcess trace({"--pid", "999999999"});
  EXPECT_EQ(trace.wait(), 2);
  EXPECT_NE(trace.err().find("--pid 999999999: no such process"), std::string::npos) << trace.err();
}

TEST_F(Trace, ExeFilter) {
  only_the_copy("trc-exe-copy", [](const std::string& copy) { return std::vector<std::string>{"--exe", copy}; },
                5000);
}

TEST_F(Trace, ExeFilterGlob) {
  only_the_copy("trc-glob-copy", [](const std::string&) { return std::vector<std::string>{"--exe", "*/trc-glob-*"}; },
                2500);
}

TEST_F(Trace, CommFilter) {
  only_the_copy("trc-comm-copy", [](const std::string&) { return std::vector<std::string>{"--comm", "trc-comm-*"}; },
                3100);
}

TEST_F(Trace, ToolFilter) {
  const std::string cfg = dir_ + "/egressd.yaml";
  std::ofstream(cfg) << "tools:\n  - name: trace-test-tool\n    match: {executables: ['*/trc-tool-copy']}\n";
  auto o = only_the_copy(
      "trc-tool-copy",
      [&](const std::string&) { return std::vector<std::string>{"-c", cfg, "--tool", "trace-test-tool"}; }, 6100);
  for (const auto& e : o.events) EXPECT_EQ(field(e, "egressd.tool"), "trace-test-tool") << e.dump();
}

TEST_F(Trace, ToolFilterRejectsAnUnknownTool) {
  TraceProcess trace({"--tool", "no-such-tool"});
  EXPECT_EQ(trace.wait(), 2);
  EXPECT_NE(trace.err().find("--tool no-such-tool: no such tool"), std::string::npos) << trace.err();
}

TEST_F(Trace, CgroupFilter) {
  TcpSink sink;
  std::string root = run_capture("awk '$9 == \"cgroup2\" {print $5; exit}' /proc/self/mountinfo");
  while (!root.empty() && root.back() == '\n') root.pop_back();
  ASSERT_FALSE(root.empty()) << "no cgroup v2 mount";
  const std::string name = "egressd-trace-test-" + std::to_string(getpid());
  const std::string cg = root + "/" + name;
  ASSERT_TRUE(fs::create_directory(cg)) << cg;
  auto o = filtered({"--cgroup", name},
                    "echo $$ > " + cg + "/cgroup.procs && exec " + tcp_cmd(traffic_bin(), "127.0.0.1", sink.port(), 7300),
                    tcp_cmd(traffic_bin(), "127.0.0.1", sink.port(), 777));
  rmdir(cg.c_str());
  const auto d = destination(o.summary, "127.0.0.1", sink.port(), "tcp");
  ASSERT_TRUE(d.is_object()) << o.summary.dump(2);
  EXPECT_EQ(d["bytes"], 7300);
  EXPECT_EQ(d["flows"], 1);
}

TEST_F(Trace, DestinationCidrFilter) {
  TcpSink in("127.0.0.2"), out("127.0.0.1");
  auto o = filtered({"--dest", "127.0.0.2/32"}, tcp_cmd(traffic_bin(), "127.0.0.2", in.port(), 4400),
                    tcp_cmd(traffic_bin(), "127.0.0.1", out.port(), 777));
  const auto d = destination(o.summary, "127.0.0.2", in.port(), "tcp");
  ASSERT_TRUE(d.is_object()) << o.summary.dump(2);
  EXPECT_EQ(d["bytes"], 4400);
  for (const auto& e : o.events) EXPECT_EQ(field(e, "destination.ip"), "127.0.0.2") << e.dump();
}

TEST_F(Trace, DestinationDomainFilter) {
  TcpSink sink;
  const std::string port = std::to_string(sink.port());
  auto curl = [&](const std::string& host) {
    return fmt_cmd({"curl", "-s", "--max-time", "1", "--resolve", host + ":" + port + ":127.0.0.1",
                    "http://" + host + ":" + port + "/x"}) +
           "; true";
  };
  auto o = filtered({"--dest", "trace.test"}, curl("api.trace.test"), curl("api.other.test"));
  ASSERT_FALSE(o.events.empty()) << o.summary.dump(2);
  for (const auto& e : o.events) EXPECT_EQ(field(e, "destination.domain"), "api.trace.test") << e.dump();
  ASSERT_EQ(o.summary["destinations"].size(), 1u) << o.summary.dump(2);
  EXPECT_EQ(o.summary["destinations"][0]["name"], "api.trace.test");
  EXPECT_EQ(o.summary["destinations"][0]["connections"], 1);
}

TEST_F(Trace, PortFilter) {
  TcpSink in, out;
  auto o = filtered({"--port", std::to_string(in.port())}, tcp_cmd(traffic_bin(), "127.0.0.1", in.port(), 2100),
                    tcp_cmd(traffic_bin(), "127.0.0.1", out.port(), 777));
  const auto d = destination(o.summary, "127.0.0.1", in.port(), "tcp");
  ASSERT_TRUE(d.is_object()) << o.summary.dump(2);
  EXPECT_EQ(d["bytes"], 2100);
  EXPECT_EQ(o.summary["destinations"].size(), 1u) << o.summary.dump(2);
}

// The live view through a real pseudo-terminal (script(1)): aligned columns,
// colours, one line per event, then the summary. Through a pipe: no colours.
TEST_F(Trace, TerminalViewThroughAPseudoTerminal) {
  TcpSink sink;
  const std::string cmd = fmt_cmd({egressd_bin(), "trace", "--", "/bin/sh", "-c",
                                   tcp_cmd(traffic_bin(), "127.0.0.1", sink.port(), 8888) + " >/dev/null"});
  int code = -1;
  const std::string tty = run_capture("TERM=xterm script -qefc " + shell_quote(cmd) + " /dev/null", &code);
  EXPECT_EQ(code, 0) << tty;
  const std::string port = std::to_string(sink.port());
  // Header, then a green "connect" and a cyan "end" line with the bytes.
  EXPECT_NE(tty.find("\033[1mTIME"), std::string::npos) << tty;
  std::istringstream in(tty);
  std::string line, connect, end;
  while (std::getline(in, line)) {
    if (line.find("\033[32mconnect") != std::string::npos) connect = line;
    if (line.find("\033[36mend") != std::string::npos) end = line;
  }
  ASSERT_FALSE(connect.empty()) << tty;
  ASSERT_FALSE(end.empty()) << tty;
  EXPECT_NE(connect.find("127.0.0.1"), std::string::npos) << connect;
  EXPECT_NE(connect.find(port), std::string::npos) << connect;
  EXPECT_NE(connect.find(" ok"), std::string::npos) << connect;
  EXPECT_NE(end.find(" 8888 "), std::string::npos) << end;
  EXPECT_NE(end.find("egressd-traffi"), std::string::npos) << end;
  // Columns line up: the destination starts at the same place on both lines
  // once the escapes are gone.
  auto plain = [](std::string s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\033') {
        while (i < s.size() && s[i] != 'm') ++i;
        continue;
      }
      if (s[i] != '\r') out += s[i];
    }
    return out;
  };
  EXPECT_EQ(plain(connect).find("127.0.0.1"), plain(end).find("127.0.0.1")) << plain(connect) << "\n" << plain(end);
  EXPECT_NE(tty.find("Summary"), std::string::npos) << tty;
  EXPECT_NE(tty.find("8888"), std::string::npos);

  const std::string piped = run_capture(cmd + " 2>/dev/null", &code);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(piped.find('\033'), std::string::npos) << piped;
  EXPECT_NE(piped.find("connect"), std::string::npos) << piped;
}

// The followed command is shown on stderr, in the summary and in the
// report's title: each time through the redactor, as process.command_line.
TEST_F(Trace, SecretsInTheFollowedCommandAreRedactedEverywhere) {
  const std::string report = dir_ + "/secret.html";
  const std::string secret = "sk-ant-api03-S3CRETvalue0123456789";
  TraceProcess trace({"--json", "--report", report, "--", "env", "ANTHROPIC_API_KEY=" + secret, "/bin/sh", "-c",
                      "exit 0", "--token", "tok-S3CRET-42", "https://bob:S3CRETpw@example.com/p"});
  ASSERT_EQ(trace.wait(), 0) << trace.err();
  const std::string err = trace.err(), out = trace.out(), html = read_file(report);
  ASSERT_FALSE(html.empty());
  for (const std::string* text : {&err, &out, &html}) EXPECT_EQ(text->find("S3CRET"), std::string::npos) << *text;
  EXPECT_NE(err.find("ANTHROPIC_API_KEY=[REDACTED]"), std::string::npos) << err;
  const auto summary = trace.summary();
  ASSERT_TRUE(summary.is_object()) << out;
  EXPECT_NE(summary["following"].get<std::string>().find("ANTHROPIC_API_KEY=[REDACTED]"), std::string::npos)
      << summary.dump();
  const auto title = html.substr(html.find("<title>"), html.find("</title>") - html.find("<title>"));
  EXPECT_NE(title.find("ANTHROPIC_API_KEY=[REDACTED]"), std::string::npos) << title;
}

// --report: a self-contained HTML file; headless Chromium renders it, and the
// screenshot shows the timeline's TCP bars (their exact colour, which only
// the chart uses).
TEST_F(Trace, HtmlReportRendersTheTimeline) {
  const std::string chromium = run_capture("command -v chromium || command -v chromium-browser");
  if (chromium.empty()) {
    if (bpf_required()) FAIL() << "chromium is not installed (scripts/install-deps.sh --with-tests)";
    GTEST_SKIP() << "chromium is not installed";
  }
  TcpSink sink;
  const std::string report = dir_ + "/report.html";
  // Two flows half a second apart: two bars apart on the timeline.
  TraceProcess trace({"--report", report, "--", "/bin/sh", "-c",
                      tcp_cmd(traffic_bin(), "127.0.0.1", sink.port(), 20000) + "; sleep 0.5; " +
                          tcp_cmd(traffic_bin(), "127.0.0.1", sink.port(), 30000)});
  ASSERT_EQ(trace.wait(), 0) << trace.err();
  const std::string html = read_file(report);
  ASSERT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find(">50000<"), std::string::npos) << "the destination row shows the exact bytes";
  EXPECT_EQ(html.find("<script"), std::string::npos) << "self-contained, no script";
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg")) << "no external resources";

  // Pixels of the TCP bars' colour in a screenshot of the page. Chromium
  // calls home on its own (update and safe-browsing hosts, a resolver
  // probe): it runs in a namespace with only lo, under a trace of its own
  // that shows where it tried to go.
  auto bar_pixels = [&](const std::string& page) {
    const std::string png = page + ".png";
    TraceProcess browser({"--json", "--", "/bin/sh", "-c",
                          isolated_command({"timeout", "120", "chromium", "--headless", "--no-sandbox",
                                            "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
                                            "--window-size=1200,900", "--screenshot=" + png, "file://" + page})});
    EXPECT_EQ(browser.wait(150s), 0) << browser.err();
    EXPECT_TRUE(fs::exists(png)) << browser.err();
    const auto summary = browser.summary();
    EXPECT_TRUE(summary.is_object()) << browser.out();
    // It does try (a UDP probe to a public resolver was seen): each such
    // attempt failed in the namespace, and nothing was sent beyond lo.
    for (const auto& d : summary.value("destinations", nlohmann::json::array())) {
      const std::string ip = d.value("address", std::string());
      if (ip.rfind("127.", 0) == 0 || ip == "::1") continue;
      EXPECT_EQ(d["bytes"], 0) << "chromium sent beyond loopback: " << d.dump();
      EXPECT_EQ(d["failed_connections"], d["connections"]) << "chromium reached " << d.dump();
    }
    const std::string count = run_capture(std::string("/usr/bin/python3 ") + EGRESSD_SOURCE_DIR +
                                          "/tests/support/png_colour_count.py " + png + " 1f6fb4 2");
    return std::stoi(count.empty() ? "0" : count);
  };
  // Two bars of at least 6 x 16 pixels each.
  EXPECT_GE(bar_pixels(report), 2 * 6 * 16);

  // The same check on a report without TCP flows finds (next to) nothing.
  UdpSink udp;
  const std::string udp_report = dir_ + "/udp.html";
  TraceProcess udp_trace({"--report", udp_report, "--", traffic_bin(), "udp", "127.0.0.1",
                          std::to_string(udp.port()), "2", "100"});
  ASSERT_EQ(udp_trace.wait(), 0) << udp_trace.err();
  EXPECT_LT(bar_pixels(udp_report), 10);
}

}  // namespace
}  // namespace egressd::test

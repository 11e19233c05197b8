// Tool attribution end to end: fake installs laid out on disk the way the
// real tools are installed, known traffic from the tools, their children,
// a setsid daemon and exec chains, and exact bytes per tool and binary.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "harness.h"

namespace egressd::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class Tools : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!bpf_unavailable_reason().empty()) return;
    tmp_ = std::make_unique<TempDir>("egressd-tools");
    root_ = tmp_->path();
    sink_ = new TcpSink();
    other_sink_ = new TcpSink();
    const std::string cfg = root_ + "/egressd.yaml";
    std::ofstream(cfg) << "tools:\n"
                          "  - name: fake-node-tool\n"
                          "    match: {args: ['*/node_modules/@fakescope/fake-node-tool/*']}\n"
                          "  - name: fake-native\n"
                          "    match: {executables: ['*/.local/share/fake-native/versions/*']}\n"
                          "    expected: {cidrs: ['127.0.0.1/32'], ports: ["
                       << sink_->port()
                       << "]}\n"
                          "  - name: fake-py\n"
                          "    match: {args: ['*/fake-py-env/bin/fake-py']}\n"
                          "  - name: fake-wrapper\n"
                          "    match: {args: ['*/fake-wrapper/bin/launch.sh']}\n"
                          "  - name: fake-nofollow\n"
                          "    match: {args: ['*/fake-nofollow/run.py']}\n"
                          "    follow_children: false\n";
    make_layouts();
    agent_ = new AgentProcess({"--config", cfg});
  }
  static void TearDownTestSuite() {
    delete agent_;
    delete sink_;
    delete other_sink_;
    agent_ = nullptr;
    tmp_.reset();
  }
  void SetUp() override {
    EGRESSD_REQUIRE_KERNEL();
    ASSERT_TRUE(agent_ && agent_->started()) << agent_->stderr_text();
  }

  static void write_exec(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    fs::permissions(p, fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
  }

  static std::string port() { return std::to_string(sink_->port()); }
  static std::string send_cmd(int bytes) {
    return traffic_bin() + " tcp 127.0.0.1 " + port() + " " + std::to_string(bytes) + " 1000 send";
  }

  static void make_layouts() {
    // An npm package run by node, as `npm i -g` lays it out.
    write_exec(root_ + "/usr/lib/node_modules/@fakescope/fake-node-tool/cli.js",
               "const net = require('net');\n"
               "const { spawnSync } = require('child_process');\n"
               "const [port, cmd] = process.argv.slice(2);\n"
               "const s = net.connect(+port, '127.0.0.1', () => {\n"
               "  s.end(Buffer.alloc(1111, 'n'), () => {\n"
               "    spawnSync('sh', ['-c', cmd], { stdio: 'ignore' });\n"
               "  });\n"
               "});\n");
    // A native binary in a versioned directory, with a symlink on PATH.
    const fs::path version = root_ + "/home/dev/.local/share/fake-native/versions/1.2.3";
    fs::create_directories(version.parent_path());
    fs::copy_file(traffic_bin(), version);
    fs::create_directories(root_ + "/home/dev/.local/bin");
    fs::create_symlink(version, root_ + "/home/dev/.local/bin/fake-native");
    // A python entry point (pipx/venv shape): the tool itself sends, then a
    // setsid double-forked daemon sends, then an exec chain through sh.
    write_exec(root_ + "/fake-py-env/bin/fake-py",
               "#!/usr/bin/python3\n"
               "import os, socket, subprocess, sys\n"
               "port, traffic = int(sys.argv[1]), sys.argv[2]\n"
               "s = socket.create_connection(('127.0.0.1', port)); s.sendall(b'p' * 500); s.close()\n"
               "r, w = os.pipe()\n"
               "if os.fork() == 0:\n"
               "    os.setsid()\n"
               "    if os.fork() == 0:\n"
               "        os.dup2(w, 1)\n"
               "        os.execv(traffic, [traffic, 'tcp', '127.0.0.1', str(port), '600', '1000', 'send'])\n"
               "    os._exit(0)\n"
               "os.close(w)\n"
               "os.read(r, 4096)  # the daemon's report: it has sent\n"
               "subprocess.run(['sh', '-c', 'exec sh -c \"exec %s tcp 127.0.0.1 %d 700 1000 send\"' % (traffic, port)],\n"
               "               stdout=subprocess.DEVNULL, check=True)\n");
    // A wrapper script that spawns the native binaries.
    write_exec(root_ + "/opt/fake-wrapper/bin/launch.sh",
               "#!/bin/sh\n" + send_cmd(900) + " >/dev/null\n" + root_ +
                   "/home/dev/.local/bin/fake-native tcp 127.0.0.1 " + port() + " 250 250 send >/dev/null\n");
    // A tool whose children are not the tool.
    write_exec(root_ + "/opt/fake-nofollow/run.py",
               "import socket, subprocess, sys\n"
               "port = int(sys.argv[1])\n"
               "s = socket.create_connection(('127.0.0.1', port)); s.sendall(b'q' * 300); s.close()\n"
               "subprocess.run(sys.argv[2].split(), stdout=subprocess.DEVNULL, check=True)\n");
  }

  static double tool_bytes(const std::map<std::string, std::string>& labels, double want) {
    double got = 0;
    auto with_port = labels;
    with_port["port"] = port();
    wait_until([&] { return (got = metric_sum(agent_->scrape(), "egressd_sent_bytes_total", with_port)) >= want; }, 10s);
    return got;
  }

  static std::unique_ptr<TempDir> tmp_;
  static std::string root_;  // tmp_'s path
  static TcpSink* sink_;
  static TcpSink* other_sink_;
  static AgentProcess* agent_;
};
std::unique_ptr<TempDir> Tools::tmp_;
std::string Tools::root_;
TcpSink* Tools::sink_ = nullptr;
TcpSink* Tools::other_sink_ = nullptr;
AgentProcess* Tools::agent_ = nullptr;

TEST_F(Tools, NpmPackageRunByNodeAndItsShellChild) {
  pid_t pid = 0;
  ASSERT_EQ(run_process({"node", root_ + "/usr/lib/node_modules/@fakescope/fake-node-tool/cli.js", port(),
                         send_cmd(2222)}, &pid), 0);
  EXPECT_EQ(tool_bytes({{"tool", "fake-node-tool"}}, 3333), 3333);
  EXPECT_EQ(tool_bytes({{"tool", "fake-node-tool"}, {"binary", fs::canonical("/usr/bin/node").string()}}, 1111), 1111);
  EXPECT_EQ(tool_bytes({{"tool", "fake-node-tool"}, {"binary", traffic_bin()}}, 2222), 2222);
  auto ended = events_of(agent_->events(), "flow-ended", pid);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(field(ended[0], "egressd.tool"), "fake-node-tool");
}

TEST_F(Tools, NativeBinaryBehindASymlinkAndUnexpectedDestinations) {
  const std::string link = root_ + "/home/dev/.local/bin/fake-native";
  const std::string real = root_ + "/home/dev/.local/share/fake-native/versions/1.2.3";
  pid_t pid = 0;
  ASSERT_EQ(run_process({link, "tcp", "127.0.0.1", port(), "4444", "1000", "send"}, &pid), 0);
  EXPECT_EQ(tool_bytes({{"tool", "fake-native"}, {"binary", real}}, 4444), 4444);
  auto ended = events_of(agent_->events(), "flow-ended", pid);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(field(ended[0], "process.executable"), real);
  EXPECT_EQ(field(ended[0], "egressd.destination.expected"), "true");

  // The same tool to a port it does not list: marked, and counted once.
  pid_t stray = 0;
  const std::string other = std::to_string(other_sink_->port());
  ASSERT_EQ(run_process({link, "tcp", "127.0.0.1", other, "10", "10", "send"}, &stray), 0);
  double unexpected = 0;
  wait_until([&] {
    return (unexpected = metric_sum(agent_->scrape(), "egressd_unexpected_flows_total",
                                    {{"tool", "fake-native"}, {"port", other}})) >= 1;
  }, 10s);
  EXPECT_EQ(unexpected, 1);
  EXPECT_EQ(metric_sum(agent_->scrape(), "egressd_unexpected_flows_total", {{"tool", "fake-native"}, {"port", port()}}), 0);
  auto attempts = events_of(agent_->events(), "connection-attempted", stray);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(field(attempts[0], "egressd.destination.expected"), "false");
}

// What real CLIs do around every connection: a lookup through the resolver
// and getaddrinfo's UDP connects that choose a source address. Neither is an
// unexpected destination nor a connection; the one real stray flow is.
TEST_F(Tools, LookupsAndSourceAddressProbesRaiseNoAlert) {
  const std::string link = root_ + "/home/dev/.local/bin/fake-native";
  const std::string real = root_ + "/home/dev/.local/share/fake-native/versions/1.2.3";
  pid_t probe = 0, lookup = 0, stray = 0;
  const std::string other = std::to_string(other_sink_->port());
  // The suite's agent has counted flows to the other port before.
  const double stray_before =
      metric_sum(agent_->scrape(), "egressd_unexpected_flows_total", {{"tool", "fake-native"}, {"port", other}});
  ASSERT_EQ(run_process({link, "udp-probe", "127.0.0.1", "0", "3"}, &probe), 0);
  ASSERT_EQ(run_process({link, "udp-probe", "::1", "65535", "2"}, &probe), 0);
  ASSERT_EQ(run_process({link, "dns", "127.0.0.1", "53", "probe.tools-test.example"}, &lookup), 0);
  ASSERT_EQ(run_process({link, "tcp", "127.0.0.1", other, "10", "10", "send"}, &stray), 0);

  std::string m;
  wait_until([&] {
    m = agent_->scrape();
    return metric_sum(m, "egressd_udp_connects_unsent_total", {{"tool", "fake-native"}}) >= 5 &&
           metric_sum(m, "egressd_unexpected_flows_total", {{"tool", "fake-native"}, {"port", other}}) >=
               stray_before + 1 &&
           metric_sum(m, "egressd_sent_bytes_total", {{"tool", "fake-native"}, {"port", "53"}}) >= 42;
  }, 10s);
  EXPECT_EQ(metric_sum(m, "egressd_udp_connects_unsent_total", {{"tool", "fake-native"}}), 5);
  // The lookup: its bytes (12 header + 26 name + 4 type and class), no connection, no alert.
  EXPECT_EQ(metric_sum(m, "egressd_sent_bytes_total", {{"tool", "fake-native"}, {"port", "53"}}), 42);
  EXPECT_EQ(metric_sum(m, "egressd_connections_total", {{"tool", "fake-native"}, {"port", "53"}}), 0);
  EXPECT_EQ(metric_sum(m, "egressd_unexpected_flows_total", {{"tool", "fake-native"}, {"port", "53"}}), 0);
  // The probes: nothing at all.
  for (const char* port : {"0", "65535"}) {
    EXPECT_EQ(metric_sum(m, "egressd_connections_total", {{"tool", "fake-native"}, {"port", port}}), 0) << port;
    EXPECT_EQ(metric_sum(m, "egressd_unexpected_flows_total", {{"tool", "fake-native"}, {"port", port}}), 0) << port;
  }
  // Of all three, only the stray TCP flow is unexpected.
  EXPECT_EQ(metric_sum(m, "egressd_unexpected_flows_total", {{"tool", "fake-native"}, {"port", other}}),
            stray_before + 1);
  const auto events = agent_->events();
  EXPECT_TRUE(events_of(events, "connection-attempted", probe).empty());
  EXPECT_TRUE(events_of(events, "flow-ended", probe).empty());
  auto queries = events_of(events, "dns-query", lookup);
  ASSERT_EQ(queries.size(), 1u);
  EXPECT_EQ(field(queries[0], "dns.question.name"), "probe.tools-test.example");
  EXPECT_EQ(field(queries[0], "egressd.tool"), "fake-native");
  for (const auto& e : events_of(events, "flow-ended", lookup)) {
    EXPECT_EQ(field(e, "network.protocol"), "dns") << e.dump();
    EXPECT_EQ(field(e, "egressd.destination.expected"), "") << e.dump();
  }
}

TEST_F(Tools, PythonEntryPointWithDaemonAndExecChain) {
  pid_t pid = 0;
  ASSERT_EQ(run_process({root_ + "/fake-py-env/bin/fake-py", port(), traffic_bin()}, &pid), 0);
  EXPECT_EQ(tool_bytes({{"tool", "fake-py"}}, 1800), 1800);
  EXPECT_EQ(tool_bytes({{"tool", "fake-py"}, {"binary", fs::canonical("/usr/bin/python3").string()}}, 500), 500);
  EXPECT_EQ(tool_bytes({{"tool", "fake-py"}, {"binary", traffic_bin()}}, 1300), 1300);
}

TEST_F(Tools, WrapperSpawnsNativeBinariesAndATooltakesItsOwnTag) {
  ASSERT_EQ(run_process({"/bin/sh", root_ + "/opt/fake-wrapper/bin/launch.sh"}), 0);
  EXPECT_EQ(tool_bytes({{"tool", "fake-wrapper"}, {"binary", traffic_bin()}}, 900), 900);
  // fake-native spawned by the wrapper is a tool itself.
  EXPECT_EQ(tool_bytes({{"tool", "fake-wrapper"}}, 900), 900);
  EXPECT_GE(tool_bytes({{"tool", "fake-native"}}, 4444 + 250), 250);
}

TEST_F(Tools, FollowChildrenFalse) {
  pid_t pid = 0;
  ASSERT_EQ(run_process({"/usr/bin/python3", root_ + "/opt/fake-nofollow/run.py", port(), send_cmd(400)}, &pid), 0);
  EXPECT_EQ(tool_bytes({{"tool", "fake-nofollow"}}, 300), 300);
  uint64_t child = 0;
  std::string child_tool = "unset";
  wait_until([&] {
    child = 0;
    for (const auto& e : agent_->events())
      if (field(e, "event.action") == "flow-ended" && field(e, "process.parent.pid") == std::to_string(pid)) {
        child += e["source"]["bytes"].get<uint64_t>();
        child_tool = field(e, "egressd.tool");
      }
    return child >= 400;
  }, 10s);
  EXPECT_EQ(child, 400u);
  EXPECT_EQ(child_tool, "");
}

TEST_F(Tools, ToolRunningBeforeTheAgentIsRecognised) {
  TcpSink sink;
  InteractiveTraffic early(root_ + "/home/dev/.local/bin/fake-native",
                           {"tcp-late", "127.0.0.1", std::to_string(sink.port()), "321"});
  ASSERT_NE(early.first_line().find("connected"), std::string::npos);
  AgentProcess late_agent({"--config", root_ + "/egressd.yaml"});
  ASSERT_TRUE(late_agent.started()) << late_agent.stderr_text();
  const pid_t pid = early.pid();
  early.go();
  ASSERT_EQ(early.finish(), 0);
  std::vector<nlohmann::json> ended;
  wait_until([&] { return !(ended = events_of(late_agent.events(), "flow-ended", pid)).empty(); }, 10s);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(field(ended[0], "egressd.tool"), "fake-native");
  EXPECT_EQ(ended[0]["source"]["bytes"].get<uint64_t>(), 321u);
}

}  // namespace
}  // namespace egressd::test

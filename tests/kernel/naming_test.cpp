// Flows named by what the process itself learned: DNS answers from a real
// dnsmasq, TLS server names from openssl s_client and curl, the target of an
// HTTP CONNECT through a real tinyproxy, and the Host of plain HTTP.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "harness.h"

namespace egressd::test {
namespace {

using namespace std::chrono_literals;

// A loopback address of its own, so port 53 is free whatever else runs.
constexpr const char* kResolver = "127.0.0.153";

// A server in a process group of its own, stdio on /dev/null.
std::unique_ptr<Subprocess> serve(const std::vector<std::string>& argv) {
  SubprocessOptions o;
  o.in = o.out = o.err = Stdio::null();
  o.own_process_group = true;
  return std::make_unique<Subprocess>(argv, o);
}

// SIGTERM, so it cleans up after itself (pid files); the destructor's
// SIGKILL is for a suite that did not get here.
void stop(std::unique_ptr<Subprocess>& p) {
  if (!p) return;
  p->kill_group(SIGTERM);
  p->kill(SIGTERM);
  p->wait();
  p.reset();
}

bool port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0;
  close(fd);
  return ok;
}

class Naming : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!bpf_unavailable_reason().empty()) return;
    tmp_ = std::make_unique<TempDir>("egressd-naming");
    const std::string& dir = tmp_->path();
    // dnsmasq answering the test names only: no upstream, no hosts file.
    dnsmasq_ = serve({"dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
                      std::string("--listen-address=") + kResolver, "--port=53", "--user=root",
                      "--pid-file=" + dir + "/dnsmasq.pid", "--host-record=api.egressd.test,127.0.0.1,::1",
                      "--cname=alias.egressd.test,api.egressd.test", "--log-facility=/dev/null"});
    // A self-signed certificate and a TLS server.
    std::system(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=egressd.test -keyout " + dir +
                 "/key.pem -out " + dir + "/cert.pem >/dev/null 2>&1").c_str());
    tls_port_ = free_tcp_port();
    tls_server_ = serve({"openssl", "s_server", "-quiet", "-accept", "127.0.0.1:" + std::to_string(tls_port_),
                         "-cert", dir + "/cert.pem", "-key", dir + "/key.pem", "-www"});
    // tinyproxy as an HTTPS_PROXY.
    proxy_port_ = free_tcp_port();
    std::ofstream(dir + "/tinyproxy.conf") << "Port " << proxy_port_ << "\nListen 127.0.0.1\nTimeout 10\n"
                                           << "Allow 127.0.0.1\nLogLevel Critical\nMaxClients 10\n"
                                           << "PidFile \"" << dir << "/tinyproxy.pid\"\n";
    proxy_ = serve({"tinyproxy", "-d", "-c", dir + "/tinyproxy.conf"});
    agent_ = new AgentProcess();
    wait_until([] { return port_open(tls_port_) && port_open(proxy_port_); }, 10s);
  }
  static void TearDownTestSuite() {
    delete agent_;
    agent_ = nullptr;
    stop(proxy_);
    stop(tls_server_);
    stop(dnsmasq_);
    tmp_.reset();
  }
  void SetUp() override {
    EGRESSD_REQUIRE_KERNEL();
    ASSERT_TRUE(agent_ && agent_->started()) << agent_->stderr_text();
  }

  // The first flow-ended event of pid, waited for.
  static nlohmann::json ended_flow(pid_t pid, int port) {
    nlohmann::json found;
    wait_until([&] {
      for (const auto& e : events_of(agent_->events(), "flow-ended", pid))
        if (field(e, "destination.port") == std::to_string(port)) {
          found = e;
          return true;
        }
      return false;
    }, 10s);
    return found;
  }

  static double bytes_to(const std::string& destination, int port) {
    double got = 0;
    wait_until([&] {
      got = metric_sum(agent_->scrape(), "egressd_sent_bytes_total",
                       {{"destination", destination}, {"port", std::to_string(port)}});
      return got > 0;
    }, 10s);
    return got;
  }

  static std::unique_ptr<TempDir> tmp_;
  static std::unique_ptr<Subprocess> dnsmasq_, tls_server_, proxy_;
  static int tls_port_, proxy_port_;
  static AgentProcess* agent_;
};
std::unique_ptr<TempDir> Naming::tmp_;
std::unique_ptr<Subprocess> Naming::dnsmasq_, Naming::tls_server_, Naming::proxy_;
int Naming::tls_port_ = 0, Naming::proxy_port_ = 0;
AgentProcess* Naming::agent_ = nullptr;

TEST_F(Naming, DnsAnswerNamesTheFlowV4AndV6) {
  for (const auto& [qtype, sink_addr] : {std::pair{"A", "127.0.0.1"}, std::pair{"AAAA", "::1"}}) {
    TcpSink sink(sink_addr);
    pid_t pid = 0;
    ASSERT_EQ(run_process({"/usr/bin/python3", std::string(EGRESSD_SOURCE_DIR) + "/tests/support/dns_client.py",
                           kResolver, "api.egressd.test", qtype, std::to_string(sink.port()), "1234"}, &pid), 0) << qtype;
    nlohmann::json f = ended_flow(pid, sink.port());
    ASSERT_FALSE(f.is_null()) << qtype;
    EXPECT_EQ(field(f, "destination.domain"), "api.egressd.test");
    EXPECT_EQ(field(f, "destination.ip"), sink_addr);
    EXPECT_EQ(field(f, "egressd.destination.name_source"), "dns");
    EXPECT_EQ(f["source"]["bytes"], 1234);
    EXPECT_EQ(bytes_to("api.egressd.test", sink.port()), 1234);
    auto queries = events_of(agent_->events(), "dns-query", pid);
    ASSERT_EQ(queries.size(), 1u);
    EXPECT_EQ(field(queries[0], "dns.question.name"), "api.egressd.test");
    EXPECT_EQ(field(queries[0], "dns.question.type"), qtype);
    EXPECT_EQ(field(queries[0], "destination.ip"), kResolver);
  }
}

TEST_F(Naming, DnsOverTcpNamesTheFlow) {
  TcpSink sink;
  pid_t pid = 0;
  ASSERT_EQ(run_process({"/usr/bin/python3", std::string(EGRESSD_SOURCE_DIR) + "/tests/support/dns_client.py",
                         kResolver, "api.egressd.test", "A", std::to_string(sink.port()), "4321", "tcp"}, &pid), 0);
  nlohmann::json f = ended_flow(pid, sink.port());
  ASSERT_FALSE(f.is_null());
  EXPECT_EQ(field(f, "destination.domain"), "api.egressd.test");
  EXPECT_EQ(bytes_to("api.egressd.test", sink.port()), 4321);
  auto queries = events_of(agent_->events(), "dns-query", pid);
  ASSERT_EQ(queries.size(), 1u);
  EXPECT_EQ(field(queries[0], "network.transport"), "tcp");
  EXPECT_EQ(field(queries[0], "dns.question.name"), "api.egressd.test");
}

TEST_F(Naming, CnameChainNamesTheFlowByTheNameAsked) {
  TcpSink sink;
  pid_t pid = 0;
  ASSERT_EQ(run_process({"/usr/bin/python3", std::string(EGRESSD_SOURCE_DIR) + "/tests/support/dns_client.py",
                         kResolver, "alias.egressd.test", "A", std::to_string(sink.port()), "99"}, &pid), 0);
  nlohmann::json f = ended_flow(pid, sink.port());
  EXPECT_EQ(field(f, "destination.domain"), "alias.egressd.test");
  EXPECT_EQ(bytes_to("alias.egressd.test", sink.port()), 99);
}

TEST_F(Naming, AnotherProcessDoesNotInheritTheName) {
  // No reverse lookups and no borrowing: a process that did not resolve the
  // name is shown by address.
  TcpSink sink;
  TrafficResult r = run_traffic({"tcp", "127.0.0.1", std::to_string(sink.port()), "10", "10", "send"});
  nlohmann::json f = ended_flow(r.pid, sink.port());
  EXPECT_EQ(field(f, "destination.domain"), "");
  EXPECT_EQ(bytes_to("127.0.0.1", sink.port()), 10);
}

TEST_F(Naming, TlsServerNameFromOpensslAndCurlWithoutDns) {
  pid_t pid = 0;
  run_process({"sh", "-c", "exec openssl s_client -connect 127.0.0.1:" + std::to_string(tls_port_) +
                               " -servername sni.egressd.test </dev/null"}, &pid);
  nlohmann::json f = ended_flow(pid, tls_port_);
  ASSERT_FALSE(f.is_null());
  EXPECT_EQ(field(f, "destination.domain"), "sni.egressd.test");
  EXPECT_EQ(field(f, "tls.client.server_name"), "sni.egressd.test");
  EXPECT_EQ(field(f, "egressd.destination.name_source"), "sni");
  // curl with --resolve: no DNS at all, as with DNS over HTTPS.
  pid_t curl = 0;
  const std::string url = "https://curl.egressd.test:" + std::to_string(tls_port_) + "/";
  EXPECT_EQ(run_process({"curl", "-sk", "--max-time", "5", "--resolve",
                         "curl.egressd.test:" + std::to_string(tls_port_) + ":127.0.0.1", url}, &curl), 0);
  nlohmann::json c = ended_flow(curl, tls_port_);
  EXPECT_EQ(field(c, "destination.domain"), "curl.egressd.test");
  EXPECT_EQ(field(c, "egressd.destination.name_source"), "sni");
  EXPECT_GT(bytes_to("curl.egressd.test", tls_port_), 0);
  // The connection is counted under the same name as the bytes.
  EXPECT_EQ(metric_sum(agent_->scrape(), "egressd_connections_total",
                       {{"destination", "curl.egressd.test"}, {"result", "ok"}}), 1);
  auto attempts = events_of(agent_->events(), "connection-attempted", curl);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(field(attempts[0], "destination.domain"), "curl.egressd.test");
}

TEST_F(Naming, HttpsProxyConnectTargetNamesTheFlowToTheProxy) {
  pid_t curl = 0;
  const std::string target = "localhost:" + std::to_string(tls_port_);
  setenv("HTTPS_PROXY", ("http://127.0.0.1:" + std::to_string(proxy_port_)).c_str(), 1);
  int code = run_process({"curl", "-sk", "--max-time", "5", "https://" + target + "/"}, &curl);
  unsetenv("HTTPS_PROXY");
  EXPECT_EQ(code, 0);
  nlohmann::json f = ended_flow(curl, proxy_port_);
  ASSERT_FALSE(f.is_null());
  EXPECT_EQ(field(f, "destination.domain"), "localhost");
  EXPECT_EQ(field(f, "egressd.destination.name_source"), "connect");
  EXPECT_EQ(field(f, "egressd.proxy.target"), target);
  EXPECT_EQ(field(f, "destination.ip"), "127.0.0.1");
  EXPECT_GT(bytes_to("localhost", proxy_port_), 0);
}

TEST_F(Naming, PlainHttpHostHeader) {
  TcpSink sink;
  pid_t curl = 0;
  const std::string host = "web.egressd.test:" + std::to_string(sink.port());
  run_process({"curl", "-s", "--max-time", "1", "--resolve", host + ":127.0.0.1", "http://" + host + "/x"}, &curl);
  nlohmann::json f = ended_flow(curl, sink.port());
  EXPECT_EQ(field(f, "destination.domain"), "web.egressd.test");
  EXPECT_EQ(field(f, "egressd.destination.name_source"), "http");
}

// An address in Host (a local telemetry sink, as one real CLI uses) names no
// domain: "127.0.0.1" is not the registered domain "0.1".
TEST_F(Naming, AddressInTheHostHeaderIsNoDomain) {
  TcpSink sink;
  pid_t curl = 0;
  run_process({"curl", "-s", "--max-time", "1", "http://127.0.0.1:" + std::to_string(sink.port()) + "/v1/logs"},
              &curl);
  nlohmann::json f = ended_flow(curl, sink.port());
  ASSERT_TRUE(f.is_object());
  EXPECT_EQ(field(f, "destination.domain"), "") << f.dump();
  EXPECT_EQ(field(f, "destination.registered_domain"), "") << f.dump();
  EXPECT_EQ(field(f, "destination.address"), "127.0.0.1");
  EXPECT_EQ(field(f, "egressd.destination.name_source"), "") << f.dump();
}

}  // namespace
}  // namespace egressd::test

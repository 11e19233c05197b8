// The alert path end to end: the real agent, a real Prometheus evaluating
// deploy/prometheus/egressd-rules.yml, a real Alertmanager routed by
// deploy/alertmanager/alertmanager.yml, and a webhook receiver here. A fake
// tool contacts a destination outside its expected list; the alert that
// reaches the webhook names the tool and the destination.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>

#include "harness.h"

namespace egressd::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Accepts HTTP POSTs on loopback and keeps their bodies.
class WebhookReceiver {
 public:
  WebhookReceiver() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    bind(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
    listen(fd_, 8);
    socklen_t len = sizeof(sin);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&sin), &len);
    port_ = ntohs(sin.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~WebhookReceiver() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  std::vector<std::string> bodies() {
    std::lock_guard lock(mu_);
    return bodies_;
  }

 private:
  void serve() {
    for (;;) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string req;
      char buf[8192];
      ssize_t n;
      size_t want = std::string::npos;
      while ((n = read(c, buf, sizeof(buf))) > 0) {
        req.append(buf, static_cast<size_t>(n));
        auto head = req.find("\r\n\r\n");
        if (head != std::string::npos && want == std::string::npos) {
          std::smatch m;
          static const std::regex cl("[Cc]ontent-[Ll]ength: *([0-9]+)");
          const std::string headers = req.substr(0, head);
          want = std::regex_search(headers, m, cl) ? head + 4 + std::stoul(m[1]) : head + 4;
        }
        if (want != std::string::npos && req.size() >= want) break;
      }
      const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      (void)!write(c, ok.data(), ok.size());
      close(c);
      auto head = req.find("\r\n\r\n");
      if (head != std::string::npos) {
        std::lock_guard lock(mu_);
        bodies_.push_back(req.substr(head + 4));
      }
    }
  }
  int fd_ = -1, port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> bodies_;
};

std::string read_file(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Alerting, UnexpectedDestinationReachesTheWebhook) {
  EGRESSD_REQUIRE_KERNEL();
  for (const char* bin : {"/usr/bin/prometheus", "/usr/bin/prometheus-alertmanager"})
    ASSERT_TRUE(fs::exists(bin)) << bin << ": scripts/install-deps.sh --with-tests installs it";
  TempDir tmp("egressd-alert");
  const std::string& dir = tmp.path();
  const std::string src = EGRESSD_SOURCE_DIR;

  // The shipped rules, evaluated every second instead of every minute.
  std::string rules = read_file(src + "/deploy/prometheus/egressd-rules.yml");
  rules = std::regex_replace(rules, std::regex("interval: [0-9]+[smh]"), "interval: 1s");
  std::ofstream(dir + "/rules.yml") << rules;
  // The shipped routing, with the test's webhook and no waiting.
  WebhookReceiver hook;
  std::string am = read_file(src + "/deploy/alertmanager/alertmanager.yml");
  am = std::regex_replace(am, std::regex("http://127\\.0\\.0\\.1:5001"), "http://127.0.0.1:" + std::to_string(hook.port()));
  am = std::regex_replace(am, std::regex("group_wait: [0-9]+[smh]"), "group_wait: 1s");
  am = std::regex_replace(am, std::regex("group_interval: [0-9]+[smh]"), "group_interval: 1s");
  std::ofstream(dir + "/alertmanager.yml") << am;
  const int am_port = free_tcp_port();
  SubprocessOptions quiet;
  quiet.out = quiet.err = Stdio::null();
  Subprocess alertmanager({"/usr/bin/prometheus-alertmanager", "--config.file=" + dir + "/alertmanager.yml",
                           "--storage.path=" + dir + "/am", "--web.listen-address=127.0.0.1:" + std::to_string(am_port),
                           "--cluster.listen-address="},
                          quiet);

  // A fake tool whose only expected destination is 192.0.2.1:443.
  const std::string tool_bin = dir + "/opt/alert-fake/bin/agent";
  fs::create_directories(fs::path(tool_bin).parent_path());
  fs::copy_file(traffic_bin(), tool_bin);
  std::ofstream(dir + "/egressd.yaml")
      << "tools:\n  - name: alert-fake\n    match: {executables: ['*/alert-fake/bin/*']}\n"
         "    expected: {cidrs: ['192.0.2.1/32'], ports: [443]}\n";
  AgentProcess agent({"--config", dir + "/egressd.yaml"});
  ASSERT_TRUE(agent.started()) << agent.stderr_text();
  PrometheusServer prom(dir, agent.metrics_address(),
                        "rule_files: ['" + dir + "/rules.yml']\n"
                        "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:" +
                            std::to_string(am_port) + "']\n");
  ASSERT_TRUE(prom.ready());

  TcpSink sink;
  ASSERT_EQ(run_traffic({"tcp", "127.0.0.1", std::to_string(sink.port()), "100", "100", "send"}, {}, tool_bin).exit_code, 0);
  // And a refused connection, for the dashboard's failure panels.
  EXPECT_NE(run_traffic({"tcp", "127.0.0.1", std::to_string(free_tcp_port()), "1", "1", "send"}, {}, tool_bin).exit_code, 0);

  nlohmann::json alert;
  const bool fired = wait_until([&] {
    for (const auto& body : hook.bodies()) {
      auto j = nlohmann::json::parse(body, nullptr, false);
      if (j.is_discarded()) continue;
      for (const auto& a : j["alerts"])
        if (a["labels"].value("alertname", "") == "EgressdUnexpectedDestination" && a["status"] == "firing" &&
            a["labels"].value("port", "") == std::to_string(sink.port())) {
          alert = a;
          return true;
        }
    }
    return false;
  }, 90s);
  alertmanager.kill(SIGTERM);
  alertmanager.wait();
  ASSERT_TRUE(fired) << "no EgressdUnexpectedDestination alert reached the webhook";
  EXPECT_EQ(alert["labels"]["tool"], "alert-fake");
  EXPECT_EQ(alert["labels"]["destination"], "127.0.0.1");
  EXPECT_EQ(alert["labels"]["port"], std::to_string(sink.port()));
  EXPECT_EQ(alert["labels"]["severity"], "critical");
  EXPECT_NE(alert["annotations"]["summary"].get<std::string>().find("alert-fake contacted 127.0.0.1"), std::string::npos);

  // Every query of the shipped dashboard returns data from this Prometheus,
  // with Grafana's variables set as a user would leave them (All).
  auto dashboard = nlohmann::json::parse(read_file(src + "/deploy/grafana/egressd-dashboard.json"));
  std::vector<std::string> exprs;
  std::function<void(const nlohmann::json&)> walk = [&](const nlohmann::json& panels) {
    for (const auto& p : panels) {
      for (const auto& t : p.value("targets", nlohmann::json::array()))
        if (t.contains("expr")) exprs.push_back(t["expr"]);
      if (p.contains("panels")) walk(p["panels"]);
    }
  };
  walk(dashboard["panels"]);
  ASSERT_GT(exprs.size(), 10u);
  for (std::string e : exprs) {
    for (const auto& [var, value] : {std::pair{"$__rate_interval", "30s"}, {"$__range", "10m"}, {"$job", ".*"},
                                     {"$instance", ".*"}, {"$tool", ".*"}})
      for (size_t at; (at = e.find(var)) != std::string::npos;) e.replace(at, std::string(var).size(), value);
    bool data = wait_until([&] { return !prom.query(e).empty(); }, 20s);
    EXPECT_TRUE(data) << "dashboard query returns no data: " << e;
  }
}

}  // namespace
}  // namespace egressd::test

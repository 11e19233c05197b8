#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "bpf_programs.h"
#include "feature_probe.h"

namespace egressd::test {
namespace fs = std::filesystem;

bool bpf_required() {
  const char* v = std::getenv("EGRESSD_REQUIRE_BPF");
  return v && std::string(v) == "1";
}

std::string bpf_unavailable_reason() {
  static std::string reason = [] {
    if (geteuid() != 0) return std::string("kernel tests need root");
    FeatureReport r = probe_features();
    if (auto p = r.first_problem(); !p.empty()) return p;
    try {
      LoadOptions opts;
      opts.cgroup_path = r.cgroup2_path;
      BpfPrograms::load(opts);
    } catch (const std::exception& e) {
      return std::string("BPF programs do not load: ") + e.what();
    }
    return std::string();
  }();
  return reason;
}

std::string egressd_bin() { return EGRESSD_BIN; }
std::string traffic_bin() { return fs::canonical(EGRESSD_TRAFFIC_BIN).string(); }

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

static std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// See harness.h. The keys go under the file's own `kernel:` line if it has one.
void with_kernel_overrides(std::vector<std::string>& args, const std::string& dir) {
  const char* env = std::getenv("EGRESSD_TEST_KERNEL");
  if (!env || !*env) return;
  std::string keys, spec = env;
  std::replace(spec.begin(), spec.end(), ',', '\n');  // "a: x, b: y" fits a ctest ENVIRONMENT value
  std::istringstream lines(spec);
  for (std::string line; std::getline(lines, line);) {
    line.erase(0, line.find_first_not_of(' '));
    if (!line.empty()) keys += "  " + line + "\n";
  }
  std::string text;
  // Options end at `--` (egressd trace's command, which may have a -c of its own).
  const auto end = std::find(args.begin(), args.end(), "--");
  auto it = std::find_if(args.begin(), end, [](const std::string& a) { return a == "-c" || a == "--config"; });
  const bool has_config = it != end && it + 1 != end;
  if (has_config) text = slurp(*(it + 1));
  if (size_t k = text.find("\nkernel:\n"); k != std::string::npos)
    text.insert(k + 9, keys);
  else if (text.rfind("kernel:\n", 0) == 0)
    text.insert(8, keys);
  else
    text += "\nkernel:\n" + keys;
  const std::string path = dir + "/kernel-overrides.yaml";
  std::ofstream(path) << text;
  if (has_config)
    *(it + 1) = path;
  else
    args.insert(end, {"-c", path});
}

AgentProcess::AgentProcess(std::vector<std::string> extra_args, std::string log_path) {
  log_path_ = log_path.empty() ? dir_ / "events.json" : log_path;
  err_path_ = dir_ / "stderr.txt";
  std::vector<std::string> args = {egressd_bin(), "run", "--log-file", log_path_,
                                   "--metrics-addr", "127.0.0.1:0"};
  with_kernel_overrides(extra_args, dir_.path());
  // Each agent its own pinned state (its instance, removed when it goes),
  // unless the test names one: agents run side by side in a suite.
  if (std::find(extra_args.begin(), extra_args.end(), "--instance") == extra_args.end()) {
    static int agents = 0;
    own_instance_ = "test-" + std::to_string(getpid()) + "-" + std::to_string(++agents);
    args.insert(args.end(), {"--instance", own_instance_});
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  SubprocessOptions opts;
  opts.err = Stdio::file(err_path_);
  proc_ = std::make_unique<Subprocess>(args, opts);
  wait_until(
      [&] {
        for (const auto& e : events())
          if (field(e, "event.action") == "agent-started") {
            metrics_addr_ = e["egressd"]["metrics"]["address"].get<std::string>();
            return true;
          }
        return !proc_->running();
      },
      std::chrono::seconds(30));
}

// The live log and its rotated files, oldest first: a busy machine (another
// suite's load) can rotate the log in the middle of a test.
static std::vector<std::string> log_files(const std::string& path) {
  std::vector<std::string> files;
  for (int i = 9; i >= 1; --i)
    if (fs::exists(path + "." + std::to_string(i))) files.push_back(path + "." + std::to_string(i));
  files.push_back(path);
  return files;
}

// Every line any test makes the agent write must match the published schema.
void validate_log(const std::string& log_path, const std::string& whole_lines_in) {
  if (!fs::exists(log_path)) return;
  std::string cmd = std::string("/usr/bin/python3 ") + EGRESSD_SOURCE_DIR +
                    "/tests/support/validate_events.py " + EGRESSD_SOURCE_DIR +
                    "/docs/egressd-events.schema.json";
  int copies = 0;
  for (auto f : log_files(log_path)) {
    if (!whole_lines_in.empty()) {
      std::ifstream in(f, std::ios::binary);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (!text.empty() && text.back() != '\n') {
        f = whole_lines_in + "/whole-lines-" + std::to_string(copies++) + ".json";
        std::ofstream(f, std::ios::binary) << text.substr(0, text.rfind('\n') + 1);
      }
    }
    cmd += " " + f;
  }
  cmd += " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    ADD_FAILURE() << "event log does not match docs/egressd-events.schema.json:\n" << out;
}

// The log is checked before dir_ (a member) goes, with the log in it.
AgentProcess::~AgentProcess() {
  stop();
  if (!own_instance_.empty()) remove_pins(own_instance_);
  validate_log(log_path_, killed_ ? dir_.path() : "");
  // On the sanitizer build (scripts/test.sh, build-asan) a report fails the
  // test that ran the agent, whatever the agent's exit code.
  const std::string err = stderr_text();
  for (const char* mark : {"Sanitizer", "runtime error:"})
    EXPECT_EQ(err.find(mark), std::string::npos) << "the agent's stderr:\n" << err;
}

void remove_pins(const std::string& instance) {
  std::error_code ec;
  fs::remove_all(fs::path(kPinRoot) / instance, ec);
}

void AgentProcess::kill_hard() {
  if (!running()) return;
  proc_->kill(SIGKILL);
  proc_->wait();
  killed_ = true;
}

int AgentProcess::stop() {
  if (!running()) return -1;
  proc_->kill(SIGTERM);
  return proc_->wait();
}

namespace {

uint64_t log_bytes(const std::string& log_path) {
  uint64_t n = 0;
  std::error_code ec;
  for (const auto& file : log_files(log_path)) {
    const auto size = fs::file_size(file, ec);
    if (!ec) n += size;
  }
  return n;
}

}  // namespace

std::vector<nlohmann::json> AgentProcess::events() const {
  // The metrics count an event when the agent handles it; its line reaches
  // the file a few ms later (the writer gathers lines for up to 5 ms). Read
  // once the file has stopped growing for longer than that, so a test that
  // waited for a metric sees the line too.
  for (int i = 0; i < 100; ++i) {
    const uint64_t before = log_bytes(log_path_);
    std::this_thread::sleep_for(std::chrono::milliseconds(15));
    if (log_bytes(log_path_) == before) break;
  }
  std::vector<nlohmann::json> out;
  for (const auto& file : log_files(log_path_)) {
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded()) out.push_back(std::move(j));
    }
  }
  return out;
}

std::string AgentProcess::stderr_text() const { return slurp(err_path_); }

std::string AgentProcess::scrape() const {
  auto colon = metrics_addr_.rfind(':');
  int port = std::stoi(metrics_addr_.substr(colon + 1));
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) < 0) {
    close(fd);
    return {};
  }
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (write(fd, req.data(), req.size()) < 0) {
    close(fd);
    return {};
  }
  std::string resp;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  auto body = resp.find("\r\n\r\n");
  return body == std::string::npos ? resp : resp.substr(body + 4);
}

TrafficResult run_traffic(const std::vector<std::string>& args,
                          const std::vector<std::string>& prefix, const std::string& binary) {
  std::vector<std::string> all = prefix;
  all.push_back(binary.empty() ? traffic_bin() : binary);
  all.insert(all.end(), args.begin(), args.end());
  SubprocessOptions opts;
  opts.out = Stdio::pipe();
  Subprocess p(all, opts);
  if (!p.started()) return {};
  TrafficResult r;
  const int status = p.wait();
  r.exit_code = p.signaled() ? -1 : status;
  r.output = p.out();
  std::istringstream lines(r.output);
  std::string line;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("bytes")) continue;
    r.pid = j.value("pid", 0);
    r.bytes = j.value("bytes", 0ULL);
    r.child = j.value("child", 0);
    r.child_bytes = j.value("child_bytes", 0ULL);
    r.elapsed_us = j.value("elapsed_us", 0LL);
  }
  return r;
}

int run_process(const std::vector<std::string>& argv, pid_t* pid_out) {
  SubprocessOptions opts;
  opts.in = opts.out = opts.err = Stdio::null();
  opts.own_process_group = true;
  Subprocess p(argv, opts);
  if (pid_out) *pid_out = p.pid();
  const int status = p.wait();
  return p.signaled() ? -1 : status;
}

static SubprocessOptions interactive() {
  SubprocessOptions opts;
  opts.in = opts.out = Stdio::pipe();
  return opts;
}

static std::vector<std::string> concat(const std::string& first, const std::vector<std::string>& rest) {
  std::vector<std::string> all = {first};
  all.insert(all.end(), rest.begin(), rest.end());
  return all;
}

InteractiveTraffic::InteractiveTraffic(const std::string& binary, const std::vector<std::string>& args)
    : proc_(concat(binary, args), interactive()) {
  first_line_ = proc_.read_line().value_or("");
}

void InteractiveTraffic::go() {
  if (!proc_.write_stdin("g")) ADD_FAILURE() << "cannot signal the traffic process";
}

int InteractiveTraffic::finish() {
  if (!proc_.started()) return -1;
  proc_.close_stdin();
  const int status = proc_.wait();
  return proc_.signaled() ? -1 : status;
}

static int listen_on(const std::string& addr, int type, int* port_out, int protocol = 0) {
  const bool v6 = addr.find(':') != std::string::npos;
  int fd = socket(v6 ? AF_INET6 : AF_INET, type, protocol);
  if (fd < 0) return -1;
  sockaddr_storage ss{};
  socklen_t len;
  if (v6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, addr.c_str(), &s6->sin6_addr);
    len = sizeof(*s6);
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    s4->sin_family = AF_INET;
    inet_pton(AF_INET, addr.c_str(), &s4->sin_addr);
    len = sizeof(*s4);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) return -1;
  if (type == SOCK_STREAM) listen(fd, 64);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  *port_out = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                       : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return fd;
}

TcpSink::TcpSink(const std::string& addr, int protocol) {
  fd_ = listen_on(addr, SOCK_STREAM, &port_, protocol);
  thread_ = std::thread([this] {
    while (!stop_) {
      // poll, not a bare accept: shutdown() does not wake an SCTP accept on
      // Linux 5.10, and the destructor would wait for ever.
      pollfd p{fd_, POLLIN, 0};
      if (fd_ < 0 || poll(&p, 1, 100) <= 0) {
        if (fd_ < 0) break;
        continue;
      }
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) break;
      std::thread([this, c] {
        char buf[65536];
        ssize_t n;
        while ((n = read(c, buf, sizeof(buf))) > 0) received_ += static_cast<uint64_t>(n);
        close(c);
      }).detach();
    }
  });
}

TcpSink::~TcpSink() {
  stop_ = true;
  shutdown(fd_, SHUT_RDWR);
  close(fd_);
  thread_.join();
}

UdpSink::UdpSink(const std::string& addr) {
  fd_ = listen_on(addr, SOCK_DGRAM, &port_);
  int big = 4 << 20;
  setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
}

UdpSink::~UdpSink() { close(fd_); }

std::string field(const nlohmann::json& j, const std::string& dotted) {
  const nlohmann::json* cur = &j;
  std::stringstream ss(dotted);
  std::string part;
  while (std::getline(ss, part, '.')) {
    if (!cur->is_object() || !cur->contains(part)) return "";
    cur = &(*cur)[part];
  }
  if (cur->is_string()) return cur->get<std::string>();
  if (cur->is_null()) return "";
  return cur->dump();
}

std::vector<nlohmann::json> events_of(const std::vector<nlohmann::json>& events,
                                      const std::string& action, int pid) {
  std::vector<nlohmann::json> out;
  for (const auto& e : events)
    if (field(e, "event.action") == action && field(e, "process.pid") == std::to_string(pid))
      out.push_back(e);
  return out;
}

uint64_t logged_bytes(const std::vector<nlohmann::json>& events, int pid, int port) {
  std::map<std::string, uint64_t> last;
  for (const auto& e : events) {
    const std::string action = field(e, "event.action");
    if (action != "flow-ended" && action != "flow-updated") continue;
    if (field(e, "process.pid") != std::to_string(pid)) continue;
    if (port && field(e, "destination.port") != std::to_string(port)) continue;
    last[field(e, "egressd.flow.id")] = e["source"]["bytes"].get<uint64_t>();
  }
  uint64_t sum = 0;
  for (const auto& [_, b] : last) sum += b;
  return sum;
}

double metric_sum(const std::string& exposition, const std::string& name,
                  const std::map<std::string, std::string>& want) {
  static const std::regex label_re(R"re((\w+)="((?:[^"\\]|\\.)*)")re");
  double sum = 0;
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.compare(0, name.size(), name) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') continue;
    std::map<std::string, std::string> labels;
    auto close = line.rfind('}');
    if (next == '{') {
      std::string body = line.substr(name.size() + 1, close - name.size() - 1);
      for (std::sregex_iterator it(body.begin(), body.end(), label_re), end; it != end; ++it)
        labels[(*it)[1]] = (*it)[2];
    }
    bool match = true;
    for (const auto& [k, v] : want)
      if (labels[k] != v) match = false;
    if (!match) continue;
    sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

int free_tcp_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
  socklen_t len = sizeof(sin);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  close(fd);
  return ntohs(sin.sin_port);
}

std::string run_capture(const std::string& cmd, int* code) {
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  if (code) *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

PrometheusServer::PrometheusServer(const std::string& dir, const std::string& target,
                                   const std::string& extra_config) {
    port_ = free_tcp_port();
    std::ofstream(dir + "/prometheus.yml") << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                                              "scrape_configs:\n  - job_name: egressd\n    static_configs:\n"
                                              "      - targets: ['" << target << "']\n" << extra_config;
    SubprocessOptions opts;
    opts.out = opts.err = Stdio::null();
    proc_ = std::make_unique<Subprocess>(
        std::vector<std::string>{"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
                                 "--storage.tsdb.path=" + dir + "/data",
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port_)},
        opts);
}

PrometheusServer::~PrometheusServer() {
    proc_->kill(SIGTERM);
    proc_->wait();
}

bool PrometheusServer::ready() const {
    return wait_until([&] { return run_capture("curl -sf http://127.0.0.1:" + std::to_string(port_) + "/-/ready") != ""; },
                      std::chrono::seconds(30));
}

nlohmann::json PrometheusServer::query(const std::string& promql) const {
    std::string out = run_capture("curl -s -G http://127.0.0.1:" + std::to_string(port_) +
                                  "/api/v1/query --data-urlencode 'query=" + promql + "'");
    auto j = nlohmann::json::parse(out, nullptr, false);
    if (j.is_discarded() || j.value("status", "") != "success") return nlohmann::json::array();
    return j["data"]["result"];
}

std::string shell_words(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    std::string q = "'";
    for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += (out.empty() ? "" : " ") + q + "'";
  }
  return out;
}

std::string isolated_command(const std::vector<std::string>& argv) {
  // unshare --mount: the bind mount of resolv.conf stays in the namespace.
  const std::string inner =
      "set -e; ip link set lo up; conf=$(mktemp); echo 'nameserver 127.0.0.1' >\"$conf\"; "
      "mount --bind \"$conf\" /etc/resolv.conf; exec " +
      shell_words(argv);
  return "unshare --net --mount --propagation private sh -c " + shell_words({inner});
}

}  // namespace egressd::test

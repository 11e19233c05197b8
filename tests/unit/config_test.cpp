#include <gtest/gtest.h>

#include "config.h"

#include <cstdio>
#include <fstream>

namespace egressd {
namespace {

std::string error_of(const std::string& text) {
  Config cfg;
  try {
    load_config_text(text, "egressd.yaml", cfg);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsAreLoopbackAndStdout) {
  Config cfg;
  EXPECT_EQ(cfg.metrics_address, "127.0.0.1:8789");
  EXPECT_EQ(cfg.log.path, "-");
}

TEST(Config, ReadsEveryKey) {
  Config cfg;
  load_config_text(R"(
metrics:
  address: "127.0.0.1:9000"
log:
  file: /var/log/egressd/events.json
flows:
  update_interval_seconds: 30
  poll_interval_seconds: 5
  log: summary
  summary_interval_seconds: 300
kernel:
  ring_buffer_bytes: 8388608
  process_table_entries: 32768
  flow_table_entries: 131072
  bytes_hook: kprobe
  socket_state: hash
  path_walk: bounded
redaction:
  patterns: ["corp-[0-9]+"]
)",
                   "egressd.yaml", cfg);
  EXPECT_EQ(cfg.metrics_address, "127.0.0.1:9000");
  EXPECT_EQ(cfg.log.path, "/var/log/egressd/events.json");
  EXPECT_EQ(cfg.update_interval_ms, 30000u);
  EXPECT_EQ(cfg.poll_interval_ms, 5000u);
  EXPECT_TRUE(cfg.summarize_flows);
  EXPECT_EQ(cfg.summary_interval_ms, 300000u);
  EXPECT_EQ(pipeline_options(cfg).summary_interval_ms, 300000u);
  EXPECT_EQ(cfg.load.ring_buffer_bytes, 8388608u);
  EXPECT_EQ(cfg.load.process_table_entries, 32768u);
  EXPECT_EQ(cfg.load.flow_table_entries, 131072u);
  EXPECT_EQ(cfg.load.bytes_hook, "kprobe");
  EXPECT_EQ(cfg.load.socket_state, "hash");
  EXPECT_EQ(cfg.load.path_walk, "bounded");
  ASSERT_EQ(cfg.redact_patterns.size(), 1u);
}

TEST(Config, EmptyFileKeepsDefaults) {
  EXPECT_EQ(error_of(""), "");
  Config cfg;
  EXPECT_FALSE(cfg.summarize_flows) << "a line per flow by default";
  EXPECT_EQ(pipeline_options(cfg).summary_interval_ms, 0u);
}

TEST(Config, ErrorsNameFileAndLine) {
  EXPECT_EQ(error_of("metrics:\n  adress: x\n").rfind("egressd.yaml:2: unknown key 'adress' in metrics (known: address, ", 0), 0u);
  EXPECT_EQ(error_of("flows:\n  poll_interval_seconds: soon\n"),
            "egressd.yaml:2: 'flows.poll_interval_seconds' must be a whole number, not 'soon'");
  EXPECT_EQ(error_of("flows:\n  log: sometimes\n"),
            "egressd.yaml:2: 'flows.log' must be each or summary, not 'sometimes'");
  EXPECT_EQ(error_of("flows:\n  summary_interval_seconds: 0\n"),
            "egressd.yaml:2: 'flows.summary_interval_seconds' must be between 1 and 86400");
  EXPECT_EQ(error_of("kernel:\n  ring_buffer_bytes: 1000\n"),
            "egressd.yaml:2: 'kernel.ring_buffer_bytes' must be between 65536 and 1073741824");
  EXPECT_EQ(error_of("kernel:\n  ring_buffer_bytes: 3000000\n"),
            "egressd.yaml:2: 'kernel.ring_buffer_bytes' must be a power of two");
  EXPECT_EQ(error_of("kernel:\n  bytes_hook: uprobe\n"),
            "egressd.yaml:2: 'kernel.bytes_hook' must be auto, sock_send_length, fexit or kprobe");
  EXPECT_EQ(error_of("kernel:\n  socket_state: array\n"),
            "egressd.yaml:2: 'kernel.socket_state' must be auto, sk_storage or hash");
  EXPECT_EQ(error_of("kernel:\n  path_walk: unrolled\n"),
            "egressd.yaml:2: 'kernel.path_walk' must be auto, bpf_loop or bounded");
  EXPECT_EQ(error_of("metrics:\n  address: nowhere\n"),
            "egressd.yaml:2: metrics.address: 'nowhere' is not HOST:PORT");
  EXPECT_EQ(error_of("redaction:\n  patterns: ['(unclosed']\n").rfind("egressd.yaml:2: invalid regular expression", 0), 0u);
  EXPECT_EQ(error_of("metrics: [1, 2\n").rfind("egressd.yaml:", 0), 0u);
  EXPECT_EQ(error_of("- just\n- a list\n"), "egressd.yaml:1: 'the top level' must be a mapping");
}

TEST(Config, StatePinsByDefaultAndOnlyForRun) {
  Config cfg;
  EXPECT_TRUE(cfg.state.pin);
  EXPECT_EQ(cfg.state.instance, "default");
  EXPECT_EQ(run_options(cfg).load.pin.instance, "default");
  EXPECT_EQ(pipeline_options(cfg).load.pin.instance, "");  // egressd trace pins nothing
  load_config_text("state:\n  pin: false\n  instance: ws-42_a\n", "egressd.yaml", cfg);
  EXPECT_FALSE(cfg.state.pin);
  EXPECT_EQ(cfg.state.instance, "ws-42_a");
  EXPECT_EQ(run_options(cfg).load.pin.instance, "");
  EXPECT_EQ(error_of("state:\n  instance: a.b\n"),
            "egressd.yaml:2: 'state.instance' must be 1 to 64 letters, digits, '_' or '-'; got 'a.b'");
  EXPECT_EQ(error_of("state:\n  instance: ''\n"),
            "egressd.yaml:2: 'state.instance' must be 1 to 64 letters, digits, '_' or '-'; got ''");
  EXPECT_EQ(error_of("state:\n  pinned: yes\n").rfind("egressd.yaml:2: unknown key 'pinned' in state", 0), 0u);
  EXPECT_THROW(check_instance_name(std::string(65, 'x'), "--instance"), ConfigError);
  EXPECT_NO_THROW(check_instance_name(std::string(64, 'x'), "--instance"));
}

TEST(Config, BasicAuthReadsThePasswordFromAFile) {
  const std::string pw = "/tmp/egressd-config-test-pw";
  std::ofstream(pw) << "s3cret\n";
  Config cfg;
  load_config_text("metrics:\n  basic_auth:\n    username: prom\n    password_file: " + pw + "\n", "egressd.yaml", cfg);
  EXPECT_EQ(cfg.metrics_auth.username, "prom");
  EXPECT_EQ(cfg.metrics_auth.password, "s3cret");
  std::remove(pw.c_str());
  EXPECT_EQ(error_of("metrics:\n  basic_auth:\n    username: prom\n"),
            "egressd.yaml:3: metrics.basic_auth needs 'username' and 'password_file'");
  EXPECT_EQ(error_of("metrics:\n  basic_auth:\n    username: prom\n    password_file: /nonexistent/pw\n"),
            "egressd.yaml:4: cannot read password file /nonexistent/pw: No such file or directory");
}

TEST(Config, UnreadableFile) {
  Config cfg;
  try {
    load_config_file("/nonexistent/egressd.yaml", cfg);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "cannot read config /nonexistent/egressd.yaml: No such file or directory");
  }
}

}  // namespace
}  // namespace egressd

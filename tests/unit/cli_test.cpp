// The egressd binary's answers to bad input: one line, a documented exit code.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include <array>
#include <cstdio>
#include <fstream>

#include "harness.h"

namespace egressd::test {
namespace {

struct CliRun {
  int code;
  std::string out;
};

// prefix: a command egressd runs under (setpriv ...).
CliRun run_egressd(const std::string& args, const std::string& prefix = "") {
  std::string cmd = prefix + egressd_bin() + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  CliRun r{-1, ""};
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(Cli, Version) {
  CliRun r = run_egressd("--version");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out.rfind("egressd ", 0), 0u);
}

TEST(Cli, HelpListsCommandsAndFlags) {
  CliRun r = run_egressd("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* s : {"run", "check"}) EXPECT_NE(r.out.find(s), std::string::npos) << s;
  r = run_egressd("run --help");
  for (const char* s : {"--config", "--metrics-addr", "--log-file"}) EXPECT_NE(r.out.find(s), std::string::npos) << s;
}

TEST(Cli, UnknownFlagIsAUsageError) {
  CliRun r = run_egressd("run --frobnicate");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("frobnicate"), std::string::npos);
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;  // the error and a hint
}

TEST(Cli, NoCommandIsAUsageError) {
  EXPECT_EQ(run_egressd("").code, 2);
}

TEST(Cli, BadMetricsAddress) {
  CliRun r = run_egressd("run --metrics-addr localhost");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "egressd: 'localhost' is not HOST:PORT\n");
}

TEST(Cli, MissingConfigFile) {
  CliRun r = run_egressd("run --config /nonexistent/egressd.yaml");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("/nonexistent/egressd.yaml"), std::string::npos);
}

TEST(Cli, InvalidConfigNamesFileAndLine) {
  const std::string path = "/tmp/egressd-cli-test.yaml";
  std::ofstream(path) << "metrics:\n  address: 127.0.0.1:1\nflows:\n  pol_interval_seconds: 3\n";
  CliRun r = run_egressd("run --config " + path);
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out.rfind("egressd: " + path + ":4: unknown key 'pol_interval_seconds'", 0), 0u) << r.out;
  std::remove(path.c_str());
}

// egressd args without privileges: as root, dropped to nobody (no
// capabilities); unprivileged, run as is.
CliRun run_unprivileged(const std::string& args) {
  return run_egressd(args, geteuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups " : "");
}

TEST(Cli, WithoutPrivilegesSaysSoInOneLine) {
  CliRun r = run_unprivileged("run --metrics-addr 127.0.0.1:0");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "egressd: privileges: needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (run with sudo)\n");
}

TEST(Cli, TheKernelIsCheckedBeforeTheLogIsOpened) {
  // A packaged config names a log directory only the package creates: without
  // privileges the answer is still the privileges (1), not the log (3).
  CliRun r = run_unprivileged("run --metrics-addr 127.0.0.1:0 --log-file /nonexistent-dir/events.json");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(r.out, "egressd: privileges: needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (run with sudo)\n");
}

TEST(Cli, TraceWithoutPrivilegesSaysWhatRunSays) {
  CliRun r = run_unprivileged("trace --duration 1");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "egressd: privileges: needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (run with sudo)\n");
}

TEST(Cli, TraceRejectsBadFiltersBeforeLoadingAnything) {
  CliRun r = run_egressd("trace --dest 'not a domain!'");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "egressd: --dest not a domain!: not a CIDR, address or domain\n");
  r = run_egressd("trace --color sometimes");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out.rfind("egressd: --color: sometimes not in {auto,always,never}", 0), 0u) << r.out;
  r = run_egressd("trace --port 99999");
  EXPECT_EQ(r.code, 2) << r.out;
  r = run_egressd("trace --report /nonexistent-dir/x.html");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_EQ(r.out, "egressd: --report /nonexistent-dir/x.html: No such file or directory\n");
}

TEST(Cli, TraceFlagsTakeOneValueEach) {
  // "nope" is the command to start, not a second --tool.
  CliRun r = run_egressd("trace --tool claude-code nope");
  if (geteuid() != 0) {
    EXPECT_EQ(r.code, 1) << r.out;
    return;
  }
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("egressd: cannot run nope: No such file or directory"), std::string::npos) << r.out;
}

TEST(Cli, ExitCodeFollowsTheKindOfErrorNotItsWording) {
  if (geteuid() != 0) {
    if (bpf_required()) FAIL() << "EGRESSD_REQUIRE_BPF=1: needs root (the refusal list is read at load)";
    GTEST_SKIP() << "needs root: the refusal list is read at load";
  }
  // A bad test-switch value is bad input (2), found once the kernel side loads.
  CliRun r = run_egressd("run --metrics-addr 127.0.0.1:0 --log-file /dev/null", "EGRESSD_REFUSE_PROGRAMS=no_such_prog ");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_EQ(r.out, "egressd: EGRESSD_REFUSE_PROGRAMS: no BPF program named 'no_such_prog' (egressd check lists them)\n");
}

TEST(Cli, CheckWithoutPrivilegesFails) { EXPECT_EQ(run_unprivileged("check").code, 1); }

}  // namespace
}  // namespace egressd::test

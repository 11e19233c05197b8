// The test support's own guarantees: a Subprocess is reaped and its streams
// read whatever the test does, a TempDir leaves nothing behind.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "harness.h"
#include "subprocess.h"
#include "temp_dir.h"

namespace egressd::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

SubprocessOptions captured() {
  SubprocessOptions o;
  o.out = o.err = Stdio::pipe();
  return o;
}

TEST(Subprocess, CapturesBothStreamsAndTheExitCode) {
  Subprocess p({"sh", "-c", "echo out; echo err >&2; exit 3"}, captured());
  EXPECT_EQ(p.wait(), 3);
  EXPECT_FALSE(p.signaled());
  EXPECT_EQ(p.out(), "out\n");
  EXPECT_EQ(p.err(), "err\n");
}

TEST(Subprocess, AddsToTheEnvironment) {
  SubprocessOptions o = captured();
  o.env = {"EGRESSD_SUBPROCESS_TEST=yes", "HOME=/nonexistent"};
  Subprocess p({"sh", "-c", "echo $EGRESSD_SUBPROCESS_TEST $HOME; test -n \"$PATH\""}, o);
  EXPECT_EQ(p.wait(), 0);
  EXPECT_EQ(p.out(), "yes /nonexistent\n");
}

TEST(Subprocess, AMissingProgramExits127) {
  Subprocess p({"/nonexistent/program"});
  EXPECT_EQ(p.wait(), 127);
}

TEST(Subprocess, WaitTimesOutThenKillEndsIt) {
  Subprocess p({"sleep", "60"});
  EXPECT_FALSE(p.wait(100ms).has_value());
  EXPECT_TRUE(p.running());
  p.kill(SIGTERM);
  EXPECT_EQ(p.wait(5s), 128 + SIGTERM);
  EXPECT_TRUE(p.signaled());
}

TEST(Subprocess, StdinAndLinesOfStdout) {
  SubprocessOptions o;
  o.in = o.out = Stdio::pipe();
  Subprocess p({"sh", "-c", "echo ready; read x; echo got $x"}, o);
  EXPECT_EQ(p.read_line(5s), "ready");
  EXPECT_TRUE(p.write_stdin("go\n"));
  EXPECT_EQ(p.read_line(5s), "got go");
  EXPECT_EQ(p.read_line(5s), std::nullopt);  // its end
  EXPECT_EQ(p.wait(), 0);
}

TEST(Subprocess, WritesToAFile) {
  TempDir dir("egressd-subprocess-test");
  SubprocessOptions o;
  o.out = Stdio::file(dir / "out");
  Subprocess p({"echo", "in a file"}, o);
  EXPECT_EQ(p.wait(), 0);
  std::ifstream in(dir / "out");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "in a file");
}

TEST(Subprocess, DestructorKillsAndReaps) {
  pid_t pid = 0;
  {
    SubprocessOptions o;
    o.own_process_group = true;
    Subprocess p({"sh", "-c", "sleep 60 & wait"}, o);
    pid = p.pid();
    ASSERT_GT(pid, 0);
  }
  EXPECT_EQ(kill(pid, 0), -1) << "reaped: not even a zombie is left";
}

TEST(TempDir, RemovesTheTree) {
  std::string path;
  {
    TempDir dir("egressd-tempdir-test");
    path = dir.path();
    EXPECT_EQ(path.rfind("/tmp/egressd-tempdir-test-", 0), 0u) << path;
    fs::create_directories(dir / "a/b");
    std::ofstream(dir / "a/b/c") << "x";
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(TmpfsDir, MountsASizedTmpfsAndUnmountsIt) {
  if (geteuid() != 0) {
    if (bpf_required()) FAIL() << "EGRESSD_REQUIRE_BPF=1: mounting a tmpfs needs root";
    GTEST_SKIP() << "mounting a tmpfs needs root";
  }
  std::string path;
  {
    TmpfsDir dir("egressd-tmpfs-test", "16k");
    ASSERT_TRUE(dir.mounted()) << dir.error();
    path = dir.path();
    std::ofstream(dir / "big") << std::string(64 * 1024, 'x');
    EXPECT_LE(fs::file_size(dir / "big"), 16u * 1024);  // the disk is full at 16k
  }
  EXPECT_FALSE(fs::exists(path));
}

}  // namespace
}  // namespace egressd::test

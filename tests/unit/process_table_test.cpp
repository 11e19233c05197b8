#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "process_table.h"
#include "temp_dir.h"

namespace egressd {
namespace {
namespace fs = std::filesystem;

ExecRecord exec_of(uint32_t tgid, uint64_t start, const std::string& exe,
                   std::vector<std::string> argv, uint32_t ppid = 1) {
  ExecRecord r{};
  r.fixed.proc = {tgid, 0, start};
  r.fixed.parent = {ppid, 0, 5};
  r.fixed.uid = 1000;
  std::snprintf(r.fixed.comm, sizeof(r.fixed.comm), "%s", fs::path(exe).filename().c_str());
  r.exe = exe;
  r.argv = std::move(argv);
  return r;
}

TEST(ProcessTable, ForkInheritsIdentityAndExecReplacesIt) {
  ProcessTable t("/nonexistent", "host");
  t.on_exec(exec_of(100, 1000, "/usr/bin/node", {"node", "cli.js"}));
  fork_event f{};
  f.child = {101, 0, 2000};
  f.parent = {100, 0, 1000};
  std::snprintf(f.comm, sizeof(f.comm), "node");
  auto child = t.on_fork(f);
  EXPECT_EQ(child->exe, "/usr/bin/node");
  EXPECT_EQ(child->argv, (std::vector<std::string>{"node", "cli.js"}));
  EXPECT_EQ(child->parent.tgid, 100u);
  EXPECT_EQ(child->entity_id, "host-101-2000");

  auto before = t.find({101, 2000});
  t.on_exec(exec_of(101, 2000, "/usr/bin/git", {"git", "fetch"}, 100));
  auto after = t.find({101, 2000});
  EXPECT_EQ(after->exe, "/usr/bin/git");
  EXPECT_EQ(before->exe, "/usr/bin/node");  // flows opened before exec keep theirs
  EXPECT_EQ(after->entity_id, before->entity_id);  // same process lifetime
}

TEST(ProcessTable, BytesFindTheImageThatSentThemByExecId) {
  ProcessTable t("/nonexistent", "host");
  for (uint32_t k = 1; k <= 6; ++k) {
    ExecRecord r = exec_of(300, 1000, "/usr/bin/image" + std::to_string(k), {"image"});
    r.fixed.proc.exec_id = 10 + k;
    t.on_exec(r);
  }
  EXPECT_EQ(t.resolve({300, 1000}, 16)->exe, "/usr/bin/image6");  // the current image
  EXPECT_EQ(t.resolve({300, 1000}, 15)->exe, "/usr/bin/image5");
  EXPECT_EQ(t.resolve({300, 1000}, 12)->exe, "/usr/bin/image2");  // the oldest of the four kept
  EXPECT_EQ(t.resolve({300, 1000}, 11)->exe, "/usr/bin/image6");  // forgotten: the current one
  EXPECT_EQ(t.resolve({300, 1000}, 99)->exe, "/usr/bin/image6");  // not seen yet: the current one
  EXPECT_EQ(t.size(), 1u);
}

TEST(ProcessTable, FileLessImageIsFlaggedAndAChildInheritsItsExecId) {
  ProcessTable t("/nonexistent", "host");
  ExecRecord r = exec_of(310, 1000, "/memfd:payload (deleted)", {"x"});
  r.fixed.flags = EXEC_F_FILELESS;
  r.fixed.proc.exec_id = 7;
  EXPECT_TRUE(t.on_exec(r)->fileless);
  fork_event f{};
  f.child = {311, 7, 2000};
  f.parent = {310, 7, 1000};
  auto child = t.on_fork(f);
  EXPECT_TRUE(child->fileless);
  EXPECT_EQ(child->exec_id, 7u);
  EXPECT_FALSE(t.on_exec(exec_of(312, 1000, "/usr/bin/true", {"true"}))->fileless);
}

TEST(ProcessTable, PidReuseIsANewProcess) {
  ProcessTable t("/nonexistent", "h");
  t.on_exec(exec_of(200, 1000, "/usr/bin/curl", {"curl"}));
  t.on_exec(exec_of(200, 9000, "/usr/bin/wget", {"wget"}));
  EXPECT_EQ(t.find({200, 1000})->exe, "/usr/bin/curl");
  EXPECT_EQ(t.find({200, 9000})->exe, "/usr/bin/wget");
  EXPECT_NE(t.find({200, 1000})->entity_id, t.find({200, 9000})->entity_id);
}

TEST(ProcessTable, ExitedProcessesExpireAfterTheGracePeriod) {
  ProcessTable t("/nonexistent", "h");
  t.on_exec(exec_of(300, 1, "/bin/true", {"true"}));
  t.on_exit({300, 1}, 5'000);
  t.expire(6'000, 10'000);
  EXPECT_NE(t.find({300, 1}), nullptr);
  t.expire(20'000, 10'000);
  EXPECT_EQ(t.find({300, 1}), nullptr);
}

class FakeProc : public ::testing::Test {
 protected:
  void add(uint32_t pid, uint64_t start_ticks, const std::string& exe, const std::string& cmdline) {
    fs::path dir = fs::path(root_) / std::to_string(pid);
    fs::create_directories(dir);
    std::ofstream(dir / "stat") << pid << " (my (odd) name) S 77 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 "
                                << start_ticks << " 0 0\n";
    std::ofstream(dir / "cmdline", std::ios::binary) << cmdline;
    std::ofstream(dir / "comm") << "name\n";
    fs::create_symlink(exe, dir / "exe");
  }
  test::TempDir tmp_{"egressd-proc"};
  const std::string root_ = tmp_.path();
};

TEST_F(FakeProc, UnknownProcessIsReadFromProcWhenStartTimeMatches) {
  const uint64_t ns_per_tick = 1'000'000'000ULL / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
  add(400, 1234, "/opt/tool/bin/tool", std::string("tool\0--flag\0", 12));
  ProcessTable t(root_, "h");
  auto p = t.resolve({400, 1234 * ns_per_tick + 5});
  EXPECT_TRUE(p->known);
  EXPECT_EQ(p->exe, "/opt/tool/bin/tool");
  EXPECT_EQ(p->argv, (std::vector<std::string>{"tool", "--flag"}));
  EXPECT_EQ(p->parent.tgid, 77u);
  EXPECT_EQ(p->comm, "name");
}

TEST_F(FakeProc, ReusedPidInProcIsNotMistakenForTheProcess) {
  add(401, 99999, "/usr/bin/other", std::string("other\0", 6));
  ProcessTable t(root_, "h");
  auto p = t.resolve({401, 5});
  EXPECT_FALSE(p->known);
  EXPECT_EQ(p->exe, "");
  EXPECT_EQ(p->key.tgid, 401u);
}

TEST_F(FakeProc, IteratedProcessesTakeTheirCommandLineFromProc) {
  add(402, 1, "/usr/bin/python3", std::string("python3\0-m\0aider\0", 17));
  ProcessTable t(root_, "h");
  ExecRecord r = exec_of(402, 10, "/usr/bin/python3.11", {});
  r.fixed.flags = EXEC_F_FROM_ITER;
  auto p = t.on_exec(r);
  EXPECT_EQ(p->exe, "/usr/bin/python3.11");
  EXPECT_EQ(p->argv, (std::vector<std::string>{"python3", "-m", "aider"}));
}

}  // namespace
}  // namespace egressd

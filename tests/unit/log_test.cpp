// egressd's own stderr lines: one per message, with the syslog priority
// only when stderr is the journal.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "errors.h"
#include "log.h"

namespace egressd {
namespace {

TEST(Log, OneLinePerMessage) {
  unsetenv("JOURNAL_STREAM");
  testing::internal::CaptureStderr();
  log_warning("event log {}: {}", "/x", "full");
  log_line(Severity::kInfo, "following every process", "egressd trace");
  log_debug("not shown without -v");
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            "egressd: event log /x: full\negressd trace: following every process\n");
}

TEST(Log, DebugLinesOnlyWhenVerbose) {
  unsetenv("JOURNAL_STREAM");
  set_verbose(true);
  testing::internal::CaptureStderr();
  log_debug("plan {}", 1);
  const std::string err = testing::internal::GetCapturedStderr();
  set_verbose(false);
  EXPECT_EQ(err, "egressd: plan 1\n");
}

TEST(Log, JournalGetsThePriority) {
  testing::internal::CaptureStderr();  // stderr is now a file: name it as the journal's stream
  struct stat st {};
  ASSERT_EQ(fstat(STDERR_FILENO, &st), 0);
  const std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  setenv("JOURNAL_STREAM", stream.c_str(), 1);
  log_error("cannot run here: {}", "no BTF");
  log_warning("w");
  log_info("i");
  // Inherited from a parent whose stderr was the journal, but ours is not.
  setenv("JOURNAL_STREAM", "1:2", 1);
  log_info("plain");
  unsetenv("JOURNAL_STREAM");
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            "<3>egressd: cannot run here: no BTF\n<4>egressd: w\n<6>egressd: i\negressd: plain\n");
}

TEST(Errors, ErrnoTextNamesTheErrno) {
  EXPECT_EQ(errno_text(ENOENT), "ENOENT (No such file or directory)");
  EXPECT_EQ(errno_text(EACCES), "EACCES (Permission denied)");
}

}  // namespace
}  // namespace egressd

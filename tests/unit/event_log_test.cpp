#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "event_log.h"
#include "temp_dir.h"

namespace egressd {
namespace {
namespace fs = std::filesystem;

class EventLogTest : public ::testing::Test {
 protected:
  static int flap(EventLog& log, const std::string& path) {
    log.write(nlohmann::json{{"pad", std::string(900, 'a')}});  // fits: ~912 of 1000 bytes
    log.flush();
    for (int i = 0; i < 5; ++i) {
      log.write(nlohmann::json{{"pad", std::string(200, 'b')}});  // does not fit
      log.write(nlohmann::json{{"i", i}});                          // fits
      log.flush();
    }
    return static_cast<int>(count_lines(path));
  }
  static size_t count_lines(const fs::path& p) {
    std::ifstream in(p);
    size_t n = 0;
    std::string line;
    while (std::getline(in, line)) {
      EXPECT_FALSE(nlohmann::json::parse(line, nullptr, false).is_discarded()) << line;
      ++n;
    }
    return n;
  }
  test::TempDir tmp_{"egressd-evlog"};
  const std::string dir_ = tmp_.path();
};

TEST_F(EventLogTest, FileIsPrivateAndEveryLineArrives) {
  const std::string path = dir_ + "/events.json";
  {
    std::ofstream(path) << "";  // a pre-existing world-readable file
    chmod(path.c_str(), 0644);
    auto log = EventLog::open(path);
    for (int i = 0; i < 1000; ++i) log->write(nlohmann::json{{"i", i}});
    log->flush();
    EXPECT_EQ(log->lines(), 1000u);
  }
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(count_lines(path), 1000u);
}

TEST_F(EventLogTest, APartialLineLeftByAKilledAgentIsEndedBeforeNewLines) {
  const std::string path = dir_ + "/events.json";
  std::ofstream(path) << "{\"i\":0}\n{\"i\":1,\"cut\":\"in the mid";  // SIGKILL during a write
  {
    auto log = EventLog::open(path);
    log->write(nlohmann::json{{"i", 2}});
    log->flush();
  }
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "{\"i\":0}");
  EXPECT_EQ(lines[1], "{\"i\":1,\"cut\":\"in the mid");  // left as it was: evidence, not rewritten
  EXPECT_EQ(lines[2], "{\"i\":2}");
  {
    auto log = EventLog::open(path);  // a whole last line: nothing added
    log->write(nlohmann::json{{"i", 3}});
    log->flush();
  }
  std::ifstream again(path);
  size_t n = 0;
  for (std::string line; std::getline(again, line);) ++n;
  EXPECT_EQ(n, 4u);
}

TEST_F(EventLogTest, RotatesBySizeAndKeepsMaxFiles) {
  LogOptions o;
  o.path = dir_ + "/events.json";
  o.max_bytes = 4096;
  o.max_files = 3;
  auto log = EventLog::open(o);
  const std::string pad(100, 'x');
  for (int i = 0; i < 1000; ++i) log->write(nlohmann::json{{"i", i}, {"pad", pad}});
  log->flush();
  EXPECT_GT(log->rotations(), 3u);
  EXPECT_TRUE(fs::exists(o.path + ".1"));
  EXPECT_TRUE(fs::exists(o.path + ".3"));
  EXPECT_FALSE(fs::exists(o.path + ".4"));
  for (const char* suffix : {"", ".1", ".2", ".3"}) {
    const std::string p = o.path + suffix;
    EXPECT_LE(fs::file_size(p), 4096u) << p;
    struct stat st {};
    stat(p.c_str(), &st);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << p;
  }
  // The newest line is in the live file, whole.
  std::ifstream in(o.path);
  std::string line, last;
  while (std::getline(in, line)) last = line;
  EXPECT_EQ(nlohmann::json::parse(last)["i"], 999);
}

// A log removed while egressd writes it, then its whole directory: the next
// lines go to a new file at the same path (the directory made again, 0700),
// not to a removed file nobody can read.
TEST_F(EventLogTest, RemovedFileAndDirectoryAreMadeAgainAndNoLineIsLost) {
  const std::string dir = dir_ + "/logs";
  fs::create_directory(dir);
  const std::string path = dir + "/events.json";
  auto log = EventLog::open(path);
  for (int i = 0; i < 10; ++i) log->write(nlohmann::json{{"i", i}});
  log->flush();
  fs::remove(path);
  for (int i = 0; i < 20; ++i) log->write(nlohmann::json{{"i", i}});
  log->flush();
  EXPECT_EQ(count_lines(path), 20u);
  EXPECT_EQ(log->reopens(), 1u);
  fs::remove_all(dir);
  for (int i = 0; i < 30; ++i) log->write(nlohmann::json{{"i", i}});
  log->flush();
  EXPECT_EQ(count_lines(path), 30u);
  EXPECT_EQ(log->reopens(), 2u);
  EXPECT_EQ(log->write_failures(), 0u);
  EXPECT_EQ(log->lines(), 60u);
  struct stat st {};
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// Where the log cannot be made again (a file now holds its directory's
// name), its lines are write failures, counted, and the log recovers once
// the path is usable again.
TEST_F(EventLogTest, LogThatCannotBeMadeAgainCountsItsLines) {
  const std::string dir = dir_ + "/logs";
  fs::create_directory(dir);
  const std::string path = dir + "/events.json";
  auto log = EventLog::open(path);
  fs::remove_all(dir);
  std::ofstream(dir) << "not a directory";
  for (int i = 0; i < 7; ++i) log->write(nlohmann::json{{"i", i}});
  log->flush();
  EXPECT_EQ(log->write_failures(), 7u);
  EXPECT_EQ(log->lines(), 0u);
  fs::remove(dir);
  log->write(nlohmann::json{{"i", 7}});
  log->flush();
  EXPECT_EQ(count_lines(path), 1u);
  EXPECT_EQ(log->write_failures(), 7u);
}

TEST_F(EventLogTest, UnopenablePathIsOneLine) {
  try {
    EventLog::open(dir_ + "/missing/events.json");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot open log file " + dir_ + "/missing/events.json: No such file or directory");
  }
}

TEST_F(EventLogTest, FullDiskIsCountedNotFatal) {
  // /dev/full fails every write with ENOSPC.
  LogOptions o;
  o.path = "/dev/full";
  o.max_files = 0;
  auto log = EventLog::open(o);
  for (int i = 0; i < 50; ++i) log->write(nlohmann::json{{"i", i}});
  log->flush();
  EXPECT_EQ(log->write_failures(), 50u);
  EXPECT_EQ(log->lines(), 0u);
}

// A nearly full disk, made with RLIMIT_FSIZE: lines that would pass the limit
// fail (EFBIG, after a partial write), shorter ones still fit.
class NearlyFullDisk {
 public:
  explicit NearlyFullDisk(rlim_t bytes) {
    old_handler_ = signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &old_);
    rlimit l = old_;
    l.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &l);
  }
  ~NearlyFullDisk() {
    setrlimit(RLIMIT_FSIZE, &old_);
    signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit old_{};
  sighandler_t old_handler_;
};

TEST_F(EventLogTest, FlappingDiskIsReportedOnceNotPerFlap) {
  LogOptions o;
  o.path = dir_ + "/events.json";
  o.max_files = 0;
  testing::internal::CaptureStderr();
  {
    NearlyFullDisk disk(1000);
    auto log = EventLog::open(o);
    // count_lines parses each line: the partial writes were truncated away.
    EXPECT_EQ(flap(*log, o.path), 6);
    EXPECT_EQ(log->write_failures(), 5u);
    EXPECT_EQ(log->lines(), 6u);
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "egressd: event log " + o.path +
                     ": File too large; lines are counted in egressd_log_write_failures_total until writes succeed again\n");
}

TEST_F(EventLogTest, ABatchThatFillsTheDiskKeepsEveryWholeLineAndCountsTheRest) {
  LogOptions o;
  o.path = dir_ + "/events.json";
  o.max_files = 0;
  const std::string line = nlohmann::json({{"pad", std::string(29, 'p')}}).dump() + "\n";  // 40 bytes
  ASSERT_EQ(line.size(), 40u);
  testing::internal::CaptureStderr();
  {
    NearlyFullDisk disk(1010);  // 25 lines fit, the 26th is cut at 10 bytes
    auto log = EventLog::open(o);
    for (int i = 0; i < 60; ++i) log->write(nlohmann::json{{"pad", std::string(29, 'p')}});
    log->flush();
    EXPECT_EQ(log->lines(), 25u);
    EXPECT_EQ(log->write_failures(), 35u);
  }
  (void)testing::internal::GetCapturedStderr();
  EXPECT_EQ(count_lines(o.path), 25u);  // whole JSON lines only: the cut one was truncated away
  EXPECT_EQ(fs::file_size(o.path), 1000u);
}

TEST_F(EventLogTest, RecoveryIsReportedOnceWritesHaveSettled) {
  LogOptions o;
  o.path = dir_ + "/events.json";
  o.max_files = 0;
  o.settle = std::chrono::milliseconds(0);
  testing::internal::CaptureStderr();
  {
    NearlyFullDisk disk(1000);
    auto log = EventLog::open(o);
    log->write(nlohmann::json{{"pad", std::string(900, 'a')}});
    log->write(nlohmann::json{{"pad", std::string(200, 'b')}});
    log->write(nlohmann::json{{"pad", std::string(200, 'c')}});
    log->write(nlohmann::json{{"i", 1}});
    log->flush();
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "egressd: event log " + o.path +
                     ": File too large; lines are counted in egressd_log_write_failures_total until writes succeed again\n"
                     "egressd: event log writes succeed again (2 lines lost)\n");
}

// A burst of long lines waits for the writer instead of piling up: the bytes
// held stay bounded, and a writer that keeps up loses nothing.
TEST_F(EventLogTest, LongLinesWaitForTheWriterWithinTheByteBound) {
  LogOptions o;
  o.path = dir_ + "/events.json";
  o.max_bytes = 1ULL << 30;
  o.queue_bytes = 256 << 10;
  o.queue_wait = std::chrono::milliseconds(5000);
  auto log = EventLog::open(o);
  const std::string pad(9000, 'x');
  for (int i = 0; i < 2000; ++i) log->write(nlohmann::json{{"i", i}, {"pad", pad}});
  log->flush();
  EXPECT_EQ(log->dropped(), 0u);
  EXPECT_EQ(log->lines(), 2000u);
  EXPECT_EQ(count_lines(o.path), 2000u);
}

// A writer stuck on its disk (a FIFO whose reader stopped reading): the first
// line over the bound waits queue_wait, the rest are dropped at once and
// counted, so the loop is not held longer.
TEST_F(EventLogTest, StuckWriterCostsOneWaitThenDrops) {
  const std::string fifo = dir_ + "/stuck";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(reader, 0);
  LogOptions o;
  o.path = fifo;
  o.max_files = 0;
  o.queue_bytes = 256 << 10;  // four pipe buffers
  o.queue_wait = std::chrono::milliseconds(200);
  o.queue_lines = 1'000'000;
  testing::internal::CaptureStderr();
  auto log = EventLog::open(o);
  const std::string pad(1000, 'y');
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 2000; ++i) log->write(nlohmann::json{{"pad", pad}});
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, std::chrono::milliseconds(200));
  EXPECT_LT(took, std::chrono::milliseconds(2000)) << "one wait, not one per line";
  EXPECT_GT(log->dropped(), 1000u);
  // The reader drains the pipe: everything kept arrives, nothing else.
  std::atomic<bool> done{false};
  size_t got = 0;
  std::thread drain([&] {
    char buf[65536];
    while (!done) {
      ssize_t n = ::read(reader, buf, sizeof(buf));
      if (n > 0) got += std::count(buf, buf + n, '\n');
      else std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    for (ssize_t n; (n = ::read(reader, buf, sizeof(buf))) > 0;) got += std::count(buf, buf + n, '\n');
  });
  log->flush();
  done = true;
  drain.join();
  ::close(reader);
  EXPECT_EQ(log->lines() + log->dropped(), 2000u);
  EXPECT_EQ(got, log->lines());
  EXPECT_NE(testing::internal::GetCapturedStderr().find("dropped lines are counted"), std::string::npos);
}

TEST_F(EventLogTest, FullQueueDropsAndCounts) {
  LogOptions o;
  o.path = dir_ + "/events.json";
  o.queue_lines = 10;
  auto log = EventLog::open(o);
  for (int i = 0; i < 100000; ++i) log->write(nlohmann::json{{"i", i}});
  log->flush();
  EXPECT_EQ(log->lines() + log->dropped(), 100000u);
  EXPECT_EQ(count_lines(o.path), log->lines());
}

}  // namespace
}  // namespace egressd

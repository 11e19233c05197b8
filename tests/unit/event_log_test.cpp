#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "event_log.h"
#include "temp_dir.h"

namespace egressd {
namespace {
namespace fs = std::filesystem;

class EventLogTest : public ::testing::Test {
 protected:
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
    for (int i = 0; i < 1000; ++i) log->write({{"i", i}});
    log->flush();
    EXPECT_EQ(log->lines(), 1000u);
  }
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(count_lines(path), 1000u);
}

TEST_F(EventLogTest, RotatesBySizeAndKeepsMaxFiles) {
  LogOptions o;
  o.path = dir_ + "/events.json";
  o.max_bytes = 4096;
  o.max_files = 3;
  auto log = EventLog::open(o);
  const std::string pad(100, 'x');
  for (int i = 0; i < 1000; ++i) log->write({{"i", i}, {"pad", pad}});
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
  for (int i = 0; i < 50; ++i) log->write({{"i", i}});
  log->flush();
  EXPECT_EQ(log->write_failures(), 50u);
  EXPECT_EQ(log->lines(), 0u);
}

TEST_F(EventLogTest, FullQueueDropsAndCounts) {
  LogOptions o;
  o.path = dir_ + "/events.json";
  o.queue_lines = 10;
  auto log = EventLog::open(o);
  for (int i = 0; i < 100000; ++i) log->write({{"i", i}});
  log->flush();
  EXPECT_EQ(log->lines() + log->dropped(), 100000u);
  EXPECT_EQ(count_lines(o.path), log->lines());
}

}  // namespace
}  // namespace egressd

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "event_decoder.h"

namespace egressd {
namespace {

std::vector<uint8_t> exec_bytes(const std::string& exe, const std::string& filename,
                                const std::string& args) {
  std::vector<uint8_t> buf(EXEC_EVENT_FIXED_SIZE + exe.size() + filename.size() + args.size());
  exec_event e{};
  e.hdr.type = EVENT_EXEC;
  e.hdr.size = static_cast<uint16_t>(buf.size());
  e.proc.tgid = 42;
  e.proc.start_ns = 1000;
  e.exe_len = static_cast<uint16_t>(exe.size());
  e.filename_len = static_cast<uint16_t>(filename.size());
  e.args_len = static_cast<uint16_t>(args.size());
  std::memcpy(e.comm, "node", 5);
  std::memcpy(buf.data(), &e, EXEC_EVENT_FIXED_SIZE);
  std::memcpy(buf.data() + EXEC_EVENT_FIXED_SIZE, exe.data(), exe.size());
  std::memcpy(buf.data() + EXEC_EVENT_FIXED_SIZE + exe.size(), filename.data(), filename.size());
  std::memcpy(buf.data() + EXEC_EVENT_FIXED_SIZE + exe.size() + filename.size(), args.data(), args.size());
  return buf;
}

TEST(Decoder, ExecCarriesPathsAndArgv) {
  static const char kArgs[] = "node\0/usr/lib/node_modules/x/cli.js\0--print\0";
  const std::string args(kArgs, sizeof(kArgs) - 1);
  auto buf = exec_bytes("/usr/bin/node", "/usr/local/bin/x", args);
  auto out = decode_event(buf.data(), buf.size());
  ASSERT_TRUE(std::holds_alternative<Event>(out));
  const auto& rec = std::get<ExecRecord>(std::get<Event>(out));
  EXPECT_EQ(rec.exe, "/usr/bin/node");
  EXPECT_EQ(rec.filename, "/usr/local/bin/x");
  ASSERT_EQ(rec.argv.size(), 3u);
  EXPECT_EQ(rec.argv[1], "/usr/lib/node_modules/x/cli.js");
  EXPECT_EQ(rec.argv[2], "--print");
  EXPECT_STREQ(rec.fixed.comm, "node");
}

TEST(Decoder, RejectsShortUnknownAndInconsistentRecords) {
  uint8_t tiny[8] = {};
  EXPECT_EQ(std::get<DecodeError>(decode_event(tiny, sizeof(tiny))), DecodeError::kShort);

  event_header h{99, sizeof(event_header), 0, 0};
  EXPECT_EQ(std::get<DecodeError>(decode_event(&h, sizeof(h))), DecodeError::kUnknownType);

  fork_event f{};
  f.hdr = {EVENT_FORK, sizeof(fork_event) - 1, 0, 0};
  EXPECT_EQ(std::get<DecodeError>(decode_event(&f, sizeof(f))), DecodeError::kBadSize);

  f.hdr.size = sizeof(fork_event) + 100;  // claims more than was handed over
  EXPECT_EQ(std::get<DecodeError>(decode_event(&f, sizeof(f))), DecodeError::kBadSize);

  auto buf = exec_bytes("/bin/sh", "", "");
  exec_event e;
  std::memcpy(&e, buf.data(), EXEC_EVENT_FIXED_SIZE);
  e.args_len = 500;  // lengths beyond the record
  std::memcpy(buf.data(), &e, EXEC_EVENT_FIXED_SIZE);
  EXPECT_EQ(std::get<DecodeError>(decode_event(buf.data(), buf.size())), DecodeError::kBadLengths);
}

TEST(Decoder, FixedRecordsRoundTrip) {
  sock_close_event c{};
  c.hdr = {EVENT_SOCK_CLOSE, sizeof(c), 1, 5};
  c.flow.cookie = 77;
  c.flow.bytes = 12345;
  auto out = decode_event(&c, sizeof(c));
  ASSERT_TRUE(std::holds_alternative<Event>(out));
  EXPECT_EQ(std::get<sock_close_event>(std::get<Event>(out)).flow.bytes, 12345u);
}

TEST(Decoder, GarbageNeverCrashes) {
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(9000);
  for (int round = 0; round < 20000; ++round) {
    size_t len = rng() % buf.size();
    for (size_t i = 0; i < len; ++i) buf[i] = static_cast<uint8_t>(rng());
    if (len >= 2) buf[0] = static_cast<uint8_t>(rng() % 8);  // mostly known types
    if (len >= 4) buf[1] = 0;
    (void)decode_event(buf.data(), len);
  }
}

TEST(Decoder, SplitArgs) {
  EXPECT_EQ(split_args("a\0b\0", 4), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(split_args("a\0b", 3), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(split_args("a\0\0c\0", 5), (std::vector<std::string>{"a", "", "c"}));
  EXPECT_TRUE(split_args("", 0).empty());
}

}  // namespace
}  // namespace egressd

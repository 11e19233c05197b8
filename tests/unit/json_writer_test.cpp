#include "json_writer.h"

#include <gtest/gtest.h>

#include <random>

#include <nlohmann/json.hpp>

namespace egressd {
namespace {

std::string reference(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string written(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

TEST(JsonWriter, EscapesAsNlohmannDoes) {
  for (const std::string s : {std::string(""), std::string("plain"), std::string("quote \" back \\ slash"),
                              std::string("tab\tnl\ncr\rbs\bff\f"), std::string("\x01\x1f\x7f", 3),
                              std::string("nul\0in", 6), std::string("é ü 日本 😀"), std::string("/path/to/x")})
    EXPECT_EQ(written(s), reference(s)) << s;
}

TEST(JsonWriter, InvalidUtf8IsReplacedAsNlohmannDoes) {
  for (const std::string s : {std::string("\xff"), std::string("a\xc3"), std::string("\xc0\xaf"),  // overlong
                              std::string("\xed\xa0\x80"),                                         // surrogate
                              std::string("\xf4\x90\x80\x80"),                                     // > U+10FFFF
                              std::string("\xe2\x82"), std::string("ok\x80ok")}) {
    EXPECT_EQ(written(s), reference(s));
    EXPECT_TRUE(nlohmann::json::accept(written(s)));
  }
}

// Random bytes, biased towards the edges of UTF-8: the writer and nlohmann
// agree on every one of them.
TEST(JsonWriter, RandomBytesMatchNlohmann) {
  std::mt19937 rng(1234);
  const unsigned char edges[] = {0x00, 0x1f, 0x20, 0x22, 0x5c, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf,
                                 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0x9f, 0xa0, 0x8f, 0x90};
  for (int n = 0; n < 20000; ++n) {
    std::string s(rng() % 12, '\0');
    for (char& c : s) c = static_cast<char>(rng() % 2 ? edges[rng() % sizeof(edges)] : rng() % 256);
    std::string hex;
    for (unsigned char c : s) hex += "0123456789abcdef"[c >> 4], hex += "0123456789abcdef"[c & 15];
    ASSERT_EQ(written(s), reference(s)) << hex;
  }
}

TEST(JsonWriter, ObjectsMembersAndCommas) {
  std::string line;
  JsonWriter w(line);
  std::string pre;
  JsonWriter(pre).str("k", "v").num("n", -3);
  w.open()
      .str("a", "x")
      .open("b")
      .num("u", uint64_t{18446744073709551615ULL})
      .num("i", int64_t{-9223372036854775807LL - 1})
      .boolean("t", true)
      .null("z")
      .close()
      .strings("c", {"p", "q"})
      .strings("d", std::vector<std::string>{})
      .members("")
      .members(pre)
      .open("e")
      .close()
      .close();
  EXPECT_EQ(line,
            R"({"a":"x","b":{"u":18446744073709551615,"i":-9223372036854775808,"t":true,"z":null},)"
            R"("c":["p","q"],"d":[],"k":"v","n":-3,"e":{}})");
  EXPECT_TRUE(nlohmann::json::accept(line));
}

}  // namespace
}  // namespace egressd

// A JSON text written straight into a string, member by member: the event log
// writes a line per connection, and building a document (a map per object, a
// node per value) only to serialize and free it cost more than everything
// else the agent does per connection (docs/BENCHMARKS.md, issue 15).
//
// The caller writes each object's members once and in the order it wants
// them; keys are trusted literals and are not escaped. String values are
// escaped as nlohmann::json's dump() does (ensure_ascii off), invalid UTF-8
// included: each invalid sequence becomes U+FFFD. So a line written here is
// the one dump() would write for the same members in the same order.
#pragma once

#include <fmt/format.h>

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace egressd {

// Appends s as a JSON string literal, quotes included.
void append_json_string(std::string& out, std::string_view s);

class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}

  JsonWriter& open();                      // {   (the top level)
  JsonWriter& open(std::string_view key);  // "key":{
  JsonWriter& close();                     // }

  JsonWriter& str(std::string_view key, std::string_view value);
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  JsonWriter& num(std::string_view key, T value) {
    const fmt::format_int text(value);
    return literal(key, std::string_view(text.data(), text.size()));
  }
  JsonWriter& boolean(std::string_view key, bool value);
  JsonWriter& null(std::string_view key);
  JsonWriter& strings(std::string_view key, const std::vector<std::string>& values) {
    return string_array(key, values);
  }
  JsonWriter& strings(std::string_view key, std::initializer_list<std::string_view> values) {
    return string_array(key, values);
  }
  // Members serialized earlier ("a":1,"b":"x"), written as they are; empty
  // writes nothing.
  JsonWriter& members(std::string_view text);

 private:
  void key(std::string_view k);
  JsonWriter& literal(std::string_view key, std::string_view text);  // a number, true, false, null
  template <typename Range>
  JsonWriter& string_array(std::string_view k, const Range& values) {
    key(k);
    out_ += '[';
    bool first = true;
    for (const auto& v : values) {
      if (!first) out_ += ',';
      first = false;
      append_json_string(out_, v);
    }
    out_ += ']';
    return *this;
  }

  std::string& out_;
  bool first_ = true;  // no member yet in the object being written
};

}  // namespace egressd

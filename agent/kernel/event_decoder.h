// Validates and decodes ring-buffer records. Everything the kernel hands
// over is checked: unknown types and short sizes are rejected and counted.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "events.h"

namespace egressd {

struct ExecRecord {
  exec_event fixed;  // data[] not valid: use the strings below
  std::string exe;
  std::string filename;
  std::vector<std::string> argv;
};

struct PayloadRecord {
  payload_event fixed;  // data[] not valid: use data below
  std::vector<uint8_t> data;
};

using Event = std::variant<ExecRecord, fork_event, exit_event, connect_event, connect_result_event,
                           sock_close_event, PayloadRecord>;

enum class DecodeError { kShort, kUnknownType, kBadSize, kBadLengths };
const char* decode_error_name(DecodeError e);

// Decodes one record of len bytes. Never reads past data + len.
std::variant<Event, DecodeError> decode_event(const void* data, size_t len);

// Splits NUL-separated argv bytes; a trailing NUL does not add an element.
std::vector<std::string> split_args(const char* data, size_t len);

}  // namespace egressd

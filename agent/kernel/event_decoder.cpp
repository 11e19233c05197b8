#include "event_decoder.h"

#include <cstring>

namespace egressd {
namespace {

template <typename T>
std::variant<Event, DecodeError> fixed_record(const void* data, size_t len, uint16_t size) {
  if (size != sizeof(T) || len < sizeof(T)) return DecodeError::kBadSize;
  T out;
  std::memcpy(&out, data, sizeof(T));
  return Event{out};
}

std::variant<Event, DecodeError> decode_exec(const uint8_t* p, size_t len, uint16_t size) {
  if (size < EXEC_EVENT_FIXED_SIZE || len < size) return DecodeError::kBadSize;
  ExecRecord rec;
  std::memcpy(&rec.fixed, p, EXEC_EVENT_FIXED_SIZE);
  const exec_event& e = rec.fixed;
  const size_t var = size_t(e.exe_len) + e.filename_len + e.args_len;
  if (e.exe_len >= EGRESSD_PATH_MAX || e.filename_len >= EGRESSD_FILENAME_MAX ||
      e.args_len >= EGRESSD_ARGS_MAX || EXEC_EVENT_FIXED_SIZE + var > size)
    return DecodeError::kBadLengths;
  const char* d = reinterpret_cast<const char*>(p) + EXEC_EVENT_FIXED_SIZE;
  rec.exe.assign(d, e.exe_len);
  rec.filename.assign(d + e.exe_len, e.filename_len);
  rec.argv = split_args(d + e.exe_len + e.filename_len, e.args_len);
  rec.fixed.comm[EGRESSD_COMM_LEN - 1] = '\0';
  return Event{std::move(rec)};
}

std::variant<Event, DecodeError> decode_payload(const uint8_t* p, size_t len, uint16_t size) {
  if (size < PAYLOAD_EVENT_FIXED_SIZE || len < size) return DecodeError::kBadSize;
  PayloadRecord rec;
  std::memcpy(&rec.fixed, p, PAYLOAD_EVENT_FIXED_SIZE);
  if (rec.fixed.len > EGRESSD_PAYLOAD_MAX || PAYLOAD_EVENT_FIXED_SIZE + size_t(rec.fixed.len) > size)
    return DecodeError::kBadLengths;
  rec.data.assign(p + PAYLOAD_EVENT_FIXED_SIZE, p + PAYLOAD_EVENT_FIXED_SIZE + rec.fixed.len);
  return Event{std::move(rec)};
}

}  // namespace

const char* decode_error_name(DecodeError e) {
  switch (e) {
    case DecodeError::kShort: return "short";
    case DecodeError::kUnknownType: return "unknown_type";
    case DecodeError::kBadSize: return "bad_size";
    case DecodeError::kBadLengths: return "bad_lengths";
  }
  return "unknown";
}

std::vector<std::string> split_args(const char* data, size_t len) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i < len; ++i) {
    if (data[i] == '\0') {
      out.emplace_back(data + start, i - start);
      start = i + 1;
    }
  }
  if (start < len) out.emplace_back(data + start, len - start);
  return out;
}

std::variant<Event, DecodeError> decode_event(const void* data, size_t len) {
  if (len < sizeof(event_header)) return DecodeError::kShort;
  event_header h;
  std::memcpy(&h, data, sizeof(h));
  if (h.size < sizeof(event_header) || h.size > len) return DecodeError::kBadSize;
  switch (h.type) {
    case EVENT_EXEC: return decode_exec(static_cast<const uint8_t*>(data), len, h.size);
    case EVENT_FORK: return fixed_record<fork_event>(data, len, h.size);
    case EVENT_EXIT: return fixed_record<exit_event>(data, len, h.size);
    case EVENT_CONNECT: return fixed_record<connect_event>(data, len, h.size);
    case EVENT_CONNECT_RESULT: return fixed_record<connect_result_event>(data, len, h.size);
    case EVENT_SOCK_CLOSE: return fixed_record<sock_close_event>(data, len, h.size);
    case EVENT_PAYLOAD: return decode_payload(static_cast<const uint8_t*>(data), len, h.size);
    default: return DecodeError::kUnknownType;
  }
}

}  // namespace egressd

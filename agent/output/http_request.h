// The head of an HTTP/1.x request, parsed as its bytes arrive: the metrics
// server feeds each read and learns whether the head is complete, still
// coming, or something it must refuse. Pure logic, no sockets.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace egressd {

// A request head longer than this is refused with 431: a scrape's head is
// a few hundred bytes.
inline constexpr size_t kMaxRequestHeadBytes = 8192;

struct RequestHead {
  std::string method;
  std::string path;           // the target without query or fragment
  std::string authorization;  // the Authorization header's value, "" if none
};

enum class HeadStatus {
  kIncomplete,  // feed more
  kComplete,    // head() is filled
  kBadRequest,  // not an HTTP/1.x request head (400)
  kTooLarge,    // no end of head within the limit (431)
};

class RequestHeadParser {
 public:
  explicit RequestHeadParser(size_t max_bytes = kMaxRequestHeadBytes) : max_bytes_(max_bytes) {}
  // Adds bytes; once the status is final, further bytes change nothing.
  HeadStatus feed(std::string_view bytes);
  HeadStatus status() const { return status_; }
  const RequestHead& head() const { return head_; }

 private:
  HeadStatus parse_line(std::string_view line);

  size_t max_bytes_;
  std::string line_;  // the line being received, without its end
  size_t head_bytes_ = 0;
  bool request_line_done_ = false;
  HeadStatus status_ = HeadStatus::kIncomplete;
  RequestHead head_;
};

}  // namespace egressd

#include "http_request.h"

#include <strings.h>

namespace egressd {
namespace {

// RFC 9110 token characters (method and header names).
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool all_tchars(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

// Control characters other than HTAB, and DEL.
bool is_ctl(char c) { return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// origin-form "/p?q" or absolute-form "http://host/p?q" -> "/p"; "" if neither.
std::string path_of(std::string_view target) {
  if (target.substr(0, 7) == "http://" || target.substr(0, 8) == "https://") {
    const size_t slash = target.find('/', target.find("//") + 2);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  if (target.empty() || target.front() != '/') return "";
  return std::string(target.substr(0, target.find_first_of("?#")));
}

}  // namespace

HeadStatus RequestHeadParser::feed(std::string_view bytes) {
  for (char c : bytes) {
    if (status_ != HeadStatus::kIncomplete) break;
    if (++head_bytes_ > max_bytes_) {
      status_ = HeadStatus::kTooLarge;
      break;
    }
    if (c == '\n') {
      std::string_view line(line_);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      status_ = parse_line(line);
      line_.clear();
      continue;
    }
    // Refuse garbage at its first byte instead of waiting for a line end:
    // a request line starts with a method, and no line carries controls.
    if ((is_ctl(c) && c != '\r') ||
        (!request_line_done_ && line_.find(' ') == std::string::npos && c != ' ' && c != '\r' && !is_tchar(c))) {
      status_ = HeadStatus::kBadRequest;
      break;
    }
    line_.push_back(c);
  }
  return status_;
}

HeadStatus RequestHeadParser::parse_line(std::string_view line) {
  if (!request_line_done_) {
    if (line.empty()) return HeadStatus::kIncomplete;  // CRLF before a request line is allowed
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return HeadStatus::kBadRequest;
    const std::string_view method = line.substr(0, sp1);
    const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string_view version = line.substr(sp2 + 1);
    if (!all_tchars(method) || version.size() != 8 || version.substr(0, 7) != "HTTP/1." || version[7] < '0' ||
        version[7] > '9')
      return HeadStatus::kBadRequest;
    head_.method = std::string(method);
    head_.path = path_of(target);
    if (head_.path.empty()) return HeadStatus::kBadRequest;
    request_line_done_ = true;
    return HeadStatus::kIncomplete;
  }
  if (line.empty()) return HeadStatus::kComplete;
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos || !all_tchars(line.substr(0, colon))) return HeadStatus::kBadRequest;
  if (colon == 13 && strncasecmp(line.data(), "Authorization", 13) == 0)
    head_.authorization = std::string(trim(line.substr(colon + 1)));
  return HeadStatus::kIncomplete;
}

}  // namespace egressd

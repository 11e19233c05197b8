#include "http_parser.h"

#include <algorithm>

namespace egressd {
namespace {

// Longer than any registered method ("UPDATEREDIRECTREF" has 17 characters).
constexpr size_t kMaxMethodSize = 32;
// Common server limits (nginx's large_client_header_buffers, Apache's
// LimitRequestLine and LimitRequestFields) sit at or below these.
constexpr size_t kMaxLineSize = 8192;
constexpr int kMaxHeaderCount = 128;
constexpr size_t kMaxHostSize = 255;

bool is_tchar(char c) {  // RFC 9110 5.6.2
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_visible(char c) {  // VCHAR: printable ASCII other than space
  return static_cast<unsigned char>(c) > ' ' && static_cast<unsigned char>(c) < 0x7f;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

char to_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return to_lower(x) == to_lower(y); });
}

struct Authority {
  std::string host;
  std::optional<uint16_t> port;
};

std::optional<uint16_t> parse_port(std::string_view digits) {
  if (digits.empty() || digits.size() > 5 || !std::all_of(digits.begin(), digits.end(), is_digit)) {
    return std::nullopt;
  }
  uint32_t value = 0;
  for (char c : digits) value = value * 10 + static_cast<uint32_t>(c - '0');
  if (value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

// host [":" port] as in RFC 3986 3.2.2, where host is an IP literal in
// brackets or a registered name. An empty port counts as none, as the URI
// grammar allows.
std::optional<Authority> parse_authority(std::string_view text) {
  Authority out;
  std::string_view host;
  std::string_view rest;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    rest = text.substr(close + 1);
    const bool literal = !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
      return is_digit(c) || (to_lower(c) >= 'a' && to_lower(c) <= 'f') || c == ':' || c == '.';
    });
    if (!literal) return std::nullopt;
  } else {
    const size_t colon = text.find(':');
    host = text.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view() : text.substr(colon);
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    const bool name = !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
      return is_digit(c) || (to_lower(c) >= 'a' && to_lower(c) <= 'z') || c == '-' || c == '.' ||
             c == '_' || c == '~';
    });
    if (!name || host.front() == '.' || host.back() == '.' || host.find("..") != std::string_view::npos) {
      return std::nullopt;
    }
  }
  if (host.size() > kMaxHostSize) return std::nullopt;
  if (!rest.empty()) {
    if (rest.front() != ':') return std::nullopt;
    if (rest.size() > 1) {
      out.port = parse_port(rest.substr(1));
      if (!out.port) return std::nullopt;
    }
  }
  for (char c : host) out.host += to_lower(c);
  return out;
}

// The authority of an absolute-form target ("http://user@host:port/path"),
// or nullopt when the target is not in absolute form.
std::optional<std::string_view> absolute_form_authority(std::string_view target) {
  const size_t separator = target.find("://");
  if (separator == std::string_view::npos || separator == 0) return std::nullopt;
  const std::string_view scheme = target.substr(0, separator);
  const bool is_scheme = std::all_of(scheme.begin(), scheme.end(), [](char c) {
    return is_digit(c) || (to_lower(c) >= 'a' && to_lower(c) <= 'z') || c == '+' || c == '-' || c == '.';
  });
  if (!is_scheme || is_digit(scheme.front())) return std::nullopt;
  std::string_view authority = target.substr(separator + 3);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  const size_t at = authority.rfind('@');
  return at == std::string_view::npos ? authority : authority.substr(at + 1);
}

struct RequestLine {
  HttpStatus status = HttpStatus::kOk;
  std::string_view method;
  std::string_view target;
  size_t end = 0;  // just past the line's LF
};

// method SP request-target SP "HTTP/1." DIGIT, then CRLF or LF (RFC 9112 3).
// Checked byte by byte so a stream that is not HTTP is told apart early,
// without waiting for a line end that may never come.
RequestLine read_request_line(std::string_view s) {
  RequestLine line;
  auto stop = [&line](HttpStatus status) {
    line.status = status;
    return line;
  };
  size_t pos = 0;
  while (pos < s.size() && is_tchar(s[pos])) {
    if (++pos > kMaxMethodSize) return stop(HttpStatus::kNotHttp);
  }
  if (pos == s.size()) return stop(HttpStatus::kNeedMoreBytes);
  if (pos == 0 || s[pos] != ' ') return stop(HttpStatus::kNotHttp);
  line.method = s.substr(0, pos);

  const size_t target_start = ++pos;
  while (pos < s.size() && is_visible(s[pos])) {
    if (++pos - target_start > kMaxLineSize) return stop(HttpStatus::kMalformed);
  }
  if (pos == s.size()) return stop(HttpStatus::kNeedMoreBytes);
  if (pos == target_start || s[pos] != ' ') return stop(HttpStatus::kNotHttp);
  line.target = s.substr(target_start, pos - target_start);
  ++pos;

  for (char expected : std::string_view("HTTP/1.")) {
    if (pos == s.size()) return stop(HttpStatus::kNeedMoreBytes);
    if (s[pos++] != expected) return stop(HttpStatus::kNotHttp);
  }
  if (pos == s.size()) return stop(HttpStatus::kNeedMoreBytes);
  if (!is_digit(s[pos++])) return stop(HttpStatus::kNotHttp);
  if (pos < s.size() && s[pos] == '\r') ++pos;
  if (pos == s.size()) return stop(HttpStatus::kNeedMoreBytes);
  if (s[pos] != '\n') return stop(HttpStatus::kMalformed);
  line.end = pos + 1;
  return line;
}

struct Line {
  HttpStatus status = HttpStatus::kOk;
  std::string_view text;  // without its CRLF or LF
};

Line read_line(std::string_view s, size_t& pos) {
  const std::string_view window = s.substr(pos, kMaxLineSize + 1);
  const size_t lf = window.find('\n');
  if (lf == std::string_view::npos) {
    return {window.size() > kMaxLineSize ? HttpStatus::kMalformed : HttpStatus::kNeedMoreBytes, {}};
  }
  std::string_view text = window.substr(0, lf);
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  pos += lf + 1;
  return {HttpStatus::kOk, text};
}

std::string_view trim_whitespace(std::string_view s) {
  const size_t first = s.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

void set_destination(HttpRequestInfo& info, Authority authority) {
  info.host = std::move(authority.host);
  info.port = authority.port;
}

}  // namespace

const char* http_status_name(HttpStatus s) {
  switch (s) {
    case HttpStatus::kOk: return "ok";
    case HttpStatus::kNeedMoreBytes: return "need_more_bytes";
    case HttpStatus::kNotHttp: return "not_http";
    case HttpStatus::kMalformed: return "malformed";
  }
  return "unknown";
}

HttpRequestInfo parse_http_request(std::string_view stream) {
  HttpRequestInfo info;
  auto fail = [](HttpStatus status) {
    HttpRequestInfo failed;
    failed.status = status;
    return failed;
  };
  const RequestLine request = read_request_line(stream);
  if (request.status != HttpStatus::kOk) return fail(request.status);
  info.method = request.method;

  // CONNECT's authority-form and a proxy request's absolute-form name the
  // destination in the request line, and then Host is not consulted.
  const std::optional<std::string_view> in_target =
      request.method == "CONNECT" ? std::optional(request.target) : absolute_form_authority(request.target);
  if (in_target) {
    std::optional<Authority> authority = parse_authority(*in_target);
    if (!authority) return fail(HttpStatus::kMalformed);
    set_destination(info, std::move(*authority));
    return info;
  }

  size_t pos = request.end;
  bool saw_host = false;
  bool last_was_host = false;
  for (int count = 0;; ++count) {
    const Line line = read_line(stream, pos);
    if (line.status == HttpStatus::kMalformed) return fail(line.status);
    if (line.status == HttpStatus::kNeedMoreBytes) {
      info.status = line.status;
      return info;
    }
    if (line.text.empty()) return info;
    if (count == kMaxHeaderCount) return fail(HttpStatus::kMalformed);
    // A line folded onto the one before it (obsolete, RFC 9112 5.2) only
    // matters if it would continue Host.
    if (line.text.front() == ' ' || line.text.front() == '\t') {
      if (count == 0 || last_was_host) return fail(HttpStatus::kMalformed);
      continue;
    }
    const size_t colon = line.text.find(':');
    if (colon == std::string_view::npos || colon == 0) return fail(HttpStatus::kMalformed);
    const std::string_view name = line.text.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), is_tchar)) return fail(HttpStatus::kMalformed);
    last_was_host = iequals(name, "host");
    if (!last_was_host) continue;
    // RFC 9112 3.2: a second Host, or one that is not a valid authority,
    // makes the request invalid; an empty one names no host.
    if (saw_host) return fail(HttpStatus::kMalformed);
    saw_host = true;
    const std::string_view value = trim_whitespace(line.text.substr(colon + 1));
    if (value.empty()) continue;
    std::optional<Authority> authority = parse_authority(value);
    if (!authority) return fail(HttpStatus::kMalformed);
    set_destination(info, std::move(*authority));
  }
}

}  // namespace egressd

// egressd's own messages on stderr, one line each: "egressd: ...".
//
// Under systemd (stderr is the journal, JOURNAL_STREAM names it) each line
// carries its syslog priority as a "<N>" prefix, which journald strips and
// records, so `journalctl -p warning -u egressd` finds the warnings. Debug
// lines appear only with -v.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace egressd {

enum class Severity { kError = 3, kWarning = 4, kInfo = 6, kDebug = 7 };

// -v: debug lines (and libbpf's messages) are printed.
void set_verbose(bool verbose);
bool verbose();

// One line, who + ": " + message (the message has no newline). who is
// "egressd", or "egressd trace" for a trace's status lines.
void log_line(Severity s, std::string_view message, std::string_view who = "egressd");

template <typename... Args>
void log_error(fmt::format_string<Args...> f, Args&&... args) {
  log_line(Severity::kError, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_warning(fmt::format_string<Args...> f, Args&&... args) {
  log_line(Severity::kWarning, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
  log_line(Severity::kInfo, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... args) {
  if (verbose()) log_line(Severity::kDebug, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace egressd

#include "log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace egressd {
namespace {

std::atomic<bool> g_verbose{false};

// JOURNAL_STREAM is "device:inode" of the journal's stream; it is inherited
// by children whose stderr may point elsewhere, so it counts only when it
// names our stderr.
bool stderr_is_journal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (!js) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  return dev == static_cast<unsigned long long>(st.st_dev) && ino == static_cast<unsigned long long>(st.st_ino);
}

}  // namespace

void set_verbose(bool verbose) { g_verbose.store(verbose); }
bool verbose() { return g_verbose.load(); }

void log_line(Severity s, std::string_view message, std::string_view who) {
  std::string line;
  if (stderr_is_journal()) line = fmt::format("<{}>", static_cast<int>(s));
  line += who;
  line += ": ";
  line += message;
  line += '\n';
  // One write per line: lines from several threads do not interleave.
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace egressd

#include "event_log.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace egressd {

std::unique_ptr<EventLog> EventLog::open(const std::string& path) {
  if (path == "-") return std::unique_ptr<EventLog>(new EventLog(stdout, false));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0)
    throw std::runtime_error(fmt::format("cannot open log file {}: {}", path, strerror(errno)));
  FILE* f = fdopen(fd, "a");
  if (!f) {
    ::close(fd);
    throw std::runtime_error(fmt::format("cannot open log file {}: {}", path, strerror(errno)));
  }
  return std::unique_ptr<EventLog>(new EventLog(f, true));
}

EventLog::~EventLog() {
  flush();
  if (owned_) fclose(file_);
}

void EventLog::write(const nlohmann::json& event) {
  std::string line = event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line += '\n';
  if (fwrite(line.data(), 1, line.size(), file_) != line.size()) {
    ++failures_;
    clearerr(file_);
    return;
  }
  ++lines_;
}

void EventLog::flush() {
  if (fflush(file_) != 0) {
    ++failures_;
    clearerr(file_);
  }
}

}  // namespace egressd

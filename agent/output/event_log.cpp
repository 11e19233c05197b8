#include "event_log.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "log.h"

namespace egressd {
namespace {

int open_log(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

}  // namespace

std::unique_ptr<EventLog> EventLog::open(const LogOptions& opts) {
  int fd = STDOUT_FILENO;
  if (opts.path != "-") {
    fd = open_log(opts.path);
    if (fd < 0)
      throw std::runtime_error(fmt::format("cannot open log file {}: {}", opts.path, strerror(errno)));
    // An existing file keeps its mode otherwise: the log may name secrets' owners.
    fchmod(fd, 0600);
  }
  return std::unique_ptr<EventLog>(new EventLog(opts, fd));
}

EventLog::EventLog(LogOptions opts, int fd) : opts_(std::move(opts)), fd_(fd) {
  struct stat st {};
  if (opts_.path != "-" && fstat(fd_, &st) == 0) size_ = static_cast<uint64_t>(st.st_size);
  writer_ = std::thread([this] { run(); });
}

EventLog::~EventLog() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_one();
  writer_.join();
  if (opts_.path != "-") ::close(fd_);
}

void EventLog::write(const nlohmann::json& event) {
  std::string line = event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line += '\n';
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= opts_.queue_lines) {
      if (dropped_++ == 0)
        log_warning("event log {} is slower than the events; dropped lines are counted in egressd_log_dropped_total",
                    opts_.path == "-" ? "stdout" : opts_.path);
      return;
    }
    queue_.push_back(std::move(line));
    ++enqueued_;
  }
  wake_.notify_one();
}

void EventLog::flush() {
  std::unique_lock lock(mu_);
  const uint64_t target = enqueued_;
  wake_.notify_one();
  drained_.wait(lock, [&] { return done_ >= target; });
}

void EventLog::run() {
  std::deque<std::string> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty() && stop_) return;
      batch.swap(queue_);
    }
    const uint64_t n = batch.size();
    write_batch(batch);
    batch.clear();
    {
      std::lock_guard lock(mu_);
      done_ += n;
    }
    drained_.notify_all();
  }
}

bool EventLog::rotate() {
  for (unsigned i = opts_.max_files; i >= 1; --i) {
    const std::string from = i == 1 ? opts_.path : fmt::format("{}.{}", opts_.path, i - 1);
    const std::string to = fmt::format("{}.{}", opts_.path, i);
    if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) return false;
  }
  int fd = open_log(opts_.path);
  if (fd < 0) return false;
  ::close(fd_);
  fd_ = fd;
  size_ = 0;
  ++rotations_;
  return true;
}

void EventLog::write_batch(std::deque<std::string>& batch) {
  for (const std::string& line : batch) {
    if (opts_.path != "-" && size_ > 0 && size_ + line.size() > opts_.max_bytes && opts_.max_files > 0)
      rotate();
    size_t off = 0;
    int err = 0;
    while (off < line.size()) {
      ssize_t n = ::write(fd_, line.data() + off, line.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        err = n < 0 ? errno : EIO;
        break;
      }
      off += static_cast<size_t>(n);
    }
    if (err) {
      ++failures_;
      if (disk_ == DiskState::ok) {
        failures_reported_ = failures_ - 1;
        log_error("event log {}: {}; lines are counted in egressd_log_write_failures_total until writes succeed again",
                  opts_.path == "-" ? "stdout" : opts_.path, strerror(err));
      }
      disk_ = DiskState::failing;
      // A partial line would corrupt the next one: truncate back to it.
      if (off > 0 && opts_.path != "-") (void)!ftruncate(fd_, static_cast<off_t>(size_));
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (disk_ == DiskState::failing) {
      disk_ = DiskState::settling;
      settling_since_ = now;
    }
    if (disk_ == DiskState::settling && now - settling_since_ >= opts_.settle) {
      disk_ = DiskState::ok;
      log_info("event log writes succeed again ({} lines lost)", failures_ - failures_reported_);
    }
    size_ += line.size();
    ++lines_;
  }
}

}  // namespace egressd

#include "event_log.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "log.h"

namespace egressd {
namespace {

int open_log(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

// An egressd killed in the middle of a write (SIGKILL, the OOM killer, a
// power cut) leaves a line without its end. The lines appended after it start
// on a line of their own, so only that one line is broken. Returns whether the
// file ended that way.
bool end_partial_line(int fd, const std::string& path) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) return false;
  char last = '\n';
  const int rd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (rd < 0) return false;
  const bool read_ok = pread(rd, &last, 1, st.st_size - 1) == 1;
  ::close(rd);
  if (!read_ok || last == '\n') return false;
  if (::write(fd, "\n", 1) != 1) return false;
  log_warning("event log {} ended in a partial line (an earlier egressd stopped in the middle of a write); "
              "it is ended there and new lines follow it",
              path);
  return true;
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
    end_partial_line(fd, opts.path);
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

void EventLog::write(LogEvent event) {
  std::string line = std::move(event).take_line();
  line += '\n';
  bool wake = false;
  {
    std::unique_lock lock(mu_);
    const auto room = [&] { return held_bytes_ + line.size() <= opts_.queue_bytes || held_bytes_ == 0; };
    if (shedding_ && held_bytes_ <= opts_.queue_bytes / 2) shedding_ = false;
    if (!room() && !shedding_) {
      wake_.notify_one();
      if (!drained_.wait_for(lock, opts_.queue_wait, room)) shedding_ = true;
    }
    if (queue_.size() >= opts_.queue_lines || !room()) {
      if (dropped_++ == 0)
        log_warning("event log {} is slower than the events; dropped lines are counted in egressd_log_dropped_total",
                    opts_.path == "-" ? "stdout" : opts_.path);
      return;
    }
    const bool half = held_bytes_ < opts_.queue_bytes / 2 && held_bytes_ + line.size() >= opts_.queue_bytes / 2;
    held_bytes_ += line.size();
    queue_.push_back(std::move(line));
    ++enqueued_;
    // The writer waits for a first line, then gathers: wake it for the first,
    // for a full batch and when half the bytes are held.
    wake = queue_.size() == 1 || queue_.size() == gather_lines() || half;
  }
  if (wake) wake_.notify_one();
}

void EventLog::flush() {
  std::unique_lock lock(mu_);
  const uint64_t target = enqueued_;
  ++flushing_;
  wake_.notify_one();
  drained_.wait(lock, [&] { return done_ >= target; });
  --flushing_;
}

void EventLog::run() {
  std::deque<std::string> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty() && stop_) return;
      // Let a burst gather (a few ms at most): one wakeup and one writev for
      // many lines, not a thread switch and a write per line.
      wake_.wait_for(lock, opts_.gather, [&] {
        return stop_ || flushing_ > 0 || queue_.size() >= gather_lines() || held_bytes_ >= opts_.queue_bytes / 2;
      });
      batch.swap(queue_);
    }
    const uint64_t n = batch.size();
    size_t bytes = 0;
    for (const std::string& line : batch) bytes += line.size();
    write_batch(batch);
    batch.clear();
    {
      std::lock_guard lock(mu_);
      done_ += n;
      held_bytes_ -= bytes;
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

// The file written is the one the path names. A log removed while the agent
// runs (by hand, by a rotation tool, with its directory) is made again, with
// its directory when that went too: lines written to the removed file would be
// lost to every reader without a trace. When it cannot be made, the lines
// count as write failures.
bool EventLog::ensure_file() {
  struct stat by_path {}, by_fd {};
  if (::stat(opts_.path.c_str(), &by_path) == 0 && fstat(fd_, &by_fd) == 0 && by_path.st_dev == by_fd.st_dev &&
      by_path.st_ino == by_fd.st_ino)
    return true;
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(opts_.path).parent_path();
  std::error_code ec;
  if (!dir.empty() && !fs::exists(dir, ec) && fs::create_directories(dir, ec))
    fs::permissions(dir, fs::perms::owner_all, ec);
  const int fd = open_log(opts_.path);
  if (fd < 0) return false;
  fchmod(fd, 0600);
  ::close(fd_);
  fd_ = fd;
  size_ = 0;
  ++reopens_;
  log_warning("event log {} was removed while egressd wrote it; writing to a new one there", opts_.path);
  return true;
}

bool EventLog::rotation_due(uint64_t pending, size_t next) const {
  return opts_.path != "-" && opts_.max_files > 0 && size_ + pending > 0 &&
         size_ + pending + next > opts_.max_bytes;
}

void EventLog::note_written(size_t bytes) {
  size_ += bytes;
  ++lines_;
  const auto now = std::chrono::steady_clock::now();
  if (disk_ == DiskState::failing) {
    disk_ = DiskState::settling;
    settling_since_ = now;
  }
  if (disk_ == DiskState::settling && now - settling_since_ >= opts_.settle) {
    disk_ = DiskState::ok;
    log_info("event log writes succeed again ({} lines lost)", failures_ - failures_reported_);
  }
}

void EventLog::note_failed(int err) {
  ++failures_;
  if (disk_ == DiskState::ok) {
    failures_reported_ = failures_ - 1;
    log_error("event log {}: {}; lines are counted in egressd_log_write_failures_total until writes succeed again",
              opts_.path == "-" ? "stdout" : opts_.path, strerror(err));
  }
  disk_ = DiskState::failing;
}

void EventLog::write_line(const std::string& line) {
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
  if (!err) return note_written(line.size());
  note_failed(err);
  // A partial line would corrupt the next one: truncate back to it.
  if (off > 0 && opts_.path != "-") (void)!ftruncate(fd_, static_cast<off_t>(size_));
}

// The lines of a batch go to the disk in as few writev() calls as the kernel
// takes (one per IOV_MAX lines, or per rotation), not one write() per line.
// When a chunk fails, the lines it wrote whole count, the line it failed on
// (cut back if partly written) counts as one failure, and the lines after it
// are tried one by one, so each line that did not reach the disk is counted
// once.
void EventLog::write_batch(std::deque<std::string>& batch) {
  constexpr size_t kMaxIov = 1024;  // IOV_MAX on Linux
  std::vector<iovec> iov;
  iov.reserve(std::min(batch.size(), kMaxIov));
  if (opts_.path != "-" && !ensure_file()) {
    const int err = errno;
    for (size_t k = 0; k < batch.size(); ++k) note_failed(err);
    return;
  }
  size_t i = 0;
  while (i < batch.size()) {
    if (rotation_due(0, batch[i].size())) rotate();
    iov.clear();
    uint64_t chunk = 0;
    size_t end = i;
    while (end < batch.size() && iov.size() < kMaxIov && (end == i || !rotation_due(chunk, batch[end].size()))) {
      iov.push_back({const_cast<char*>(batch[end].data()), batch[end].size()});
      chunk += batch[end].size();
      ++end;
    }
    uint64_t written = 0;
    int err = 0;
    size_t first = 0;  // the iovec the next writev starts at
    while (written < chunk) {
      ssize_t n = ::writev(fd_, iov.data() + first, static_cast<int>(iov.size() - first));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        err = n < 0 ? errno : EIO;
        break;
      }
      written += static_cast<uint64_t>(n);
      // Step past what was written: whole iovecs, then into a partial one.
      size_t left = static_cast<size_t>(n);
      while (left && left >= iov[first].iov_len) left -= iov[first++].iov_len;
      if (left) {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
      }
    }
    if (!err) {
      for (size_t k = i; k < end; ++k) note_written(batch[k].size());
      i = end;
      continue;
    }
    // The lines written whole stay; a partial one is cut; the rest, one by one.
    size_t k = i;
    uint64_t whole = 0;
    while (k < end && whole + batch[k].size() <= written) whole += batch[k++].size();
    for (size_t m = i; m < k; ++m) note_written(batch[m].size());
    if (written > whole && opts_.path != "-") (void)!ftruncate(fd_, static_cast<off_t>(size_));
    note_failed(err);
    for (size_t m = k + 1; m < end; ++m) write_line(batch[m]);
    i = end;
  }
}

}  // namespace egressd

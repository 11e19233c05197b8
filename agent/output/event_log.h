// The JSON event log: one ECS event per line, to stdout or a file (0600)
// rotated by size. Lines are serialized by the caller and handed to a writer
// thread through a bounded queue, so a slow or full disk never stalls the
// event loop: when the queue is full a line is dropped and counted, and a
// failing disk is reported once on stderr until it recovers.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "event_sink.h"

namespace egressd {

struct LogOptions {
  std::string path = "-";              // "-" is stdout (never rotated)
  uint64_t max_bytes = 100ULL << 20;   // rotate when the file would exceed this
  unsigned max_files = 5;              // rotated files kept: path.1 .. path.N
  size_t queue_lines = 65536;          // lines waiting for the disk before drops
  // Bytes of lines held (queued, or being written) before a writer waits. A
  // burst of long lines (long command lines) fills this long before the
  // line limit: the event loop then waits up to queue_wait for the writer,
  // which writes at the page cache's speed; if the disk cannot keep up even
  // so, lines are dropped and counted until half of it has drained, without
  // waiting again.
  size_t queue_bytes = 8ULL << 20;
  std::chrono::milliseconds queue_wait{50};
  // A nearly full disk flaps: a short line fits where a long one failed. The
  // recovery is reported only once writes have gone this long without failing,
  // so a flapping disk costs one stderr line, not one per flap.
  std::chrono::milliseconds settle{10000};
  // How long the writer lets lines gather before writing them (a flush, a
  // stop or a full batch writes at once).
  std::chrono::milliseconds gather{5};
};

class EventLog : public EventSink {
 public:
  // Throws std::runtime_error with a one-line reason.
  static std::unique_ptr<EventLog> open(const LogOptions& opts);
  static std::unique_ptr<EventLog> open(const std::string& path) {
    LogOptions o;
    o.path = path;
    return open(o);
  }
  ~EventLog() override;  // writes everything still queued
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  void write(LogEvent event) override;
  // Returns once every line handed over so far has been written (or failed).
  void flush();

  uint64_t lines() const { return lines_.load(); }
  uint64_t write_failures() const { return failures_.load(); }
  uint64_t dropped() const { return dropped_.load(); }
  uint64_t rotations() const { return rotations_.load(); }
  // Times the log file (or its directory) was found removed and made again.
  uint64_t reopens() const { return reopens_.load(); }

 private:
  EventLog(LogOptions opts, int fd);
  void run();
  void write_batch(std::deque<std::string>& batch);
  void write_line(const std::string& line);
  // Whether the next line (after pending bytes not yet written) rotates first.
  bool rotation_due(uint64_t pending, size_t next) const;
  void note_written(size_t bytes);
  void note_failed(int err);
  bool rotate();
  bool ensure_file();

  LogOptions opts_;
  int fd_;
  uint64_t size_ = 0;
  std::mutex mu_;
  std::condition_variable wake_, drained_;
  std::deque<std::string> queue_;
  uint64_t enqueued_ = 0, done_ = 0;
  bool stop_ = false;
  unsigned flushing_ = 0;  // callers waiting in flush()
  size_t held_bytes_ = 0;  // queued or in the batch being written
  bool shedding_ = false;  // a wait for room timed out: drop until half drained
  static constexpr size_t kGatherLines = 1024;
  size_t gather_lines() const { return std::min(kGatherLines, std::max<size_t>(opts_.queue_lines / 2, 1)); }
  // ok -> failing (reported) -> settling (writes succeed again) -> ok (reported
  // once settle has passed without a failure); a failure while settling goes
  // back to failing silently.
  enum class DiskState { ok, failing, settling } disk_ = DiskState::ok;
  std::chrono::steady_clock::time_point settling_since_{};
  uint64_t failures_reported_ = 0;  // failures_ when the failure was reported
  std::atomic<uint64_t> lines_{0}, failures_{0}, dropped_{0}, rotations_{0}, reopens_{0};
  std::thread writer_;
};

}  // namespace egressd

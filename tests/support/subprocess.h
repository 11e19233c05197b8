// A child process owned by the test: fork and exec with argv (and extra
// environment), each standard stream inherited, on /dev/null, in a file or
// on a pipe, and killed and reaped when the object goes away, so a failed
// ASSERT never leaves a process behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace egressd::test {

// Where one standard stream of the child goes. A pipe on stdin is written
// with write_stdin(); a pipe on stdout or stderr is captured (out(), err()).
struct Stdio {
  enum class Kind { kInherit, kNull, kFile, kPipe };
  Kind kind = Kind::kInherit;
  std::string path;  // kFile: created 0600, truncated

  static Stdio inherit() { return {}; }
  static Stdio null() { return {Kind::kNull, {}}; }
  static Stdio file(std::string p) { return {Kind::kFile, std::move(p)}; }
  static Stdio pipe() { return {Kind::kPipe, {}}; }
};

struct SubprocessOptions {
  Stdio in, out, err;
  std::vector<std::string> env;  // NAME=VALUE, over the parent's environment
  bool own_process_group = false;  // setpgid(0, 0): the destructor kills the group
};

class Subprocess {
 public:
  // argv[0] without a slash is looked up in PATH. An exec that fails exits 127.
  explicit Subprocess(std::vector<std::string> argv, SubprocessOptions opts = {});
  ~Subprocess();  // SIGKILL (the group, with own_process_group) and reap if still running
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  bool started() const { return pid_ > 0; }
  bool running();  // reaps it if it has exited

  // The exit status once it has ended: the exit code, or 128 + the signal.
  // wait(timeout) returns nullopt while it still runs. Captured streams are
  // read to their end (or to the timeout) before wait returns.
  int wait();
  std::optional<int> wait(std::chrono::milliseconds timeout);
  std::optional<int> status() const { return status_; }
  bool signaled() const { return signaled_; }

  void kill(int sig = SIGKILL);        // the process
  void kill_group(int sig = SIGKILL);  // its process group

  bool write_stdin(std::string_view data);
  void close_stdin();

  // Captured stdout and stderr so far.
  std::string out() const;
  std::string err() const;
  // The next line of captured stdout (without '\n'); nullopt at its end or
  // on timeout.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout = std::chrono::seconds(30));

 private:
  void pump();
  bool reap(bool block);
  void stop_pump();

  pid_t pid_ = -1;
  int pidfd_ = -1;
  bool group_ = false;
  std::optional<int> status_;
  bool signaled_ = false;
  int in_ = -1, out_ = -1, err_ = -1;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string out_text_, err_text_;
  size_t line_pos_ = 0;
  bool out_open_ = false, err_open_ = false, stop_ = false;
  std::thread pump_;
};

}  // namespace egressd::test

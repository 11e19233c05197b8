#include "subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

extern char** environ;

namespace egressd::test {
namespace {

// argv[0] as execvp would find it, resolved before fork: the child only
// calls async-signal-safe functions (the test process has threads).
std::string resolve(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* env = std::getenv("PATH");
  std::string path = env && *env ? env : "/usr/local/bin:/usr/bin:/bin";
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    struct stat st {};
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(candidate.c_str(), X_OK) == 0)
      return candidate;
    start = end + 1;
  }
  return name;  // execve fails, the child exits 127
}

std::vector<std::string> environment(const std::vector<std::string>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& x : extra) replaced |= x.compare(0, name.size() + 1, name + "=") == 0;
    if (!replaced) out.push_back(entry);
  }
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// In the child: the stream `target` as `how` says; child_end is its end of a pipe.
bool redirect(const Stdio& how, int target, int child_end) {
  int fd = -1;
  switch (how.kind) {
    case Stdio::Kind::kInherit:
      return true;
    case Stdio::Kind::kNull:
      fd = open("/dev/null", target == 0 ? O_RDONLY : O_WRONLY);
      break;
    case Stdio::Kind::kFile:
      fd = open(how.path.c_str(), target == 0 ? O_RDONLY : (O_WRONLY | O_CREAT | O_TRUNC), 0600);
      break;
    case Stdio::Kind::kPipe:
      fd = child_end;
      break;
  }
  if (fd < 0) return false;
  if (fd == target) return fcntl(fd, F_SETFD, 0) == 0;  // dup2 would keep O_CLOEXEC
  return dup2(fd, target) == target;
}

int status_of(int st, bool* signaled) {
  *signaled = WIFSIGNALED(st);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace

Subprocess::Subprocess(std::vector<std::string> argv, SubprocessOptions opts) : group_(opts.own_process_group) {
  if (argv.empty()) return;
  std::string path = resolve(argv[0]);
  std::vector<std::string> env = environment(opts.env);
  std::vector<char*> argp = pointers(argv), envp = pointers(env);

  // [0] read end, [1] write end; the child's ends are closed at exec.
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  if ((opts.in.kind == Stdio::Kind::kPipe && pipe2(in, O_CLOEXEC) != 0) ||
      (opts.out.kind == Stdio::Kind::kPipe && pipe2(out, O_CLOEXEC) != 0) ||
      (opts.err.kind == Stdio::Kind::kPipe && pipe2(err, O_CLOEXEC) != 0)) {
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]})
      if (fd >= 0) close(fd);
    return;
  }
  pid_ = fork();
  if (pid_ == 0) {
    if (group_) setpgid(0, 0);
    if (!redirect(opts.in, 0, in[0]) || !redirect(opts.out, 1, out[1]) || !redirect(opts.err, 2, err[1]))
      _exit(127);
    execve(path.c_str(), argp.data(), envp.data());
    _exit(127);
  }
  for (int fd : {in[0], out[1], err[1]})
    if (fd >= 0) close(fd);
  if (pid_ < 0) {
    for (int fd : {in[1], out[0], err[0]})
      if (fd >= 0) close(fd);
    return;
  }
  // A group of its own from the parent's side as well, so kill_group()
  // cannot race the child's setpgid.
  if (group_) setpgid(pid_, pid_);
  pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));  // -1 before 5.3: wait() polls
  in_ = in[1];
  out_ = out[0];
  err_ = err[0];
  out_open_ = out_ >= 0;
  err_open_ = err_ >= 0;
  if (out_open_ || err_open_) pump_ = std::thread([this] { pump(); });
}

Subprocess::~Subprocess() {
  close_stdin();
  if (pid_ > 0 && !status_) {
    if (group_) kill_group(SIGKILL);
    kill(SIGKILL);
    reap(true);
  }
  stop_pump();
  if (pidfd_ >= 0) close(pidfd_);
}

// Reads the captured streams until both end, or until the destructor stops it.
void Subprocess::pump() {
  for (;;) {
    pollfd fds[2];
    int n = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) break;
      if (out_open_) fds[n++] = {out_, POLLIN, 0};
      if (err_open_) fds[n++] = {err_, POLLIN, 0};
    }
    if (n == 0) break;
    if (poll(fds, static_cast<nfds_t>(n), 100) <= 0) continue;
    for (int i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      char buf[65536];
      const ssize_t got = read(fds[i].fd, buf, sizeof(buf));
      if (got < 0 && errno == EINTR) continue;
      std::lock_guard<std::mutex> lock(mu_);
      const bool is_out = fds[i].fd == out_;
      if (got <= 0) {
        close(fds[i].fd);
        (is_out ? out_open_ : err_open_) = false;
      } else {
        (is_out ? out_text_ : err_text_).append(buf, static_cast<size_t>(got));
      }
      cv_.notify_all();
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (out_open_) close(out_);
  if (err_open_) close(err_);
  out_open_ = err_open_ = false;
  cv_.notify_all();
}

void Subprocess::stop_pump() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  if (pump_.joinable()) pump_.join();
}

bool Subprocess::reap(bool block) {
  if (status_) return true;
  if (pid_ <= 0) return true;
  int st = 0;
  pid_t r;
  do r = waitpid(pid_, &st, block ? 0 : WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  status_ = r == pid_ ? status_of(st, &signaled_) : -1;
  if (pidfd_ >= 0) {
    close(pidfd_);
    pidfd_ = -1;
  }
  return true;
}

bool Subprocess::running() { return pid_ > 0 && !reap(false); }

int Subprocess::wait() {
  if (pid_ <= 0) return -1;
  reap(true);
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !out_open_ && !err_open_; });
  }
  if (pump_.joinable()) pump_.join();
  return *status_;
}

std::optional<int> Subprocess::wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left_ms = [&] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<int64_t>(0, left.count()));
  };
  while (!reap(false)) {
    if (left_ms() == 0) return std::nullopt;
    if (pidfd_ >= 0) {
      pollfd p{pidfd_, POLLIN, 0};
      poll(&p, 1, left_ms());
    } else {
      const timespec step{0, 10'000'000};
      nanosleep(&step, nullptr);
    }
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (cv_.wait_until(lock, deadline, [&] { return !out_open_ && !err_open_; })) {
    lock.unlock();
    if (pump_.joinable()) pump_.join();
  }
  return status_;
}

void Subprocess::kill(int sig) {
  if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

void Subprocess::kill_group(int sig) {
  if (pid_ > 0 && !status_) ::kill(-pid_, sig);
}

bool Subprocess::write_stdin(std::string_view data) {
  if (in_ < 0) return false;
  // A child that has gone raises SIGPIPE: blocked here and consumed, so the
  // write fails with EPIPE instead of ending the test process.
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  bool ok = true;
  while (!data.empty()) {
    const ssize_t n = ::write(in_, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ok = false;
      break;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (!ok && errno == EPIPE) {
    const timespec zero{0, 0};
    sigtimedwait(&pipe_set, nullptr, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return ok;
}

void Subprocess::close_stdin() {
  if (in_ >= 0) close(in_);
  in_ = -1;
}

std::string Subprocess::out() const {
  std::lock_guard<std::mutex> lock(mu_);
  return out_text_;
}

std::string Subprocess::err() const {
  std::lock_guard<std::mutex> lock(mu_);
  return err_text_;
}

std::optional<std::string> Subprocess::read_line(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  auto newline = [&] { return out_text_.find('\n', line_pos_); };
  cv_.wait_for(lock, timeout, [&] { return newline() != std::string::npos || !out_open_; });
  size_t end = newline();
  if (end == std::string::npos) {
    if (out_open_ || line_pos_ >= out_text_.size()) return std::nullopt;  // timeout, or nothing left
    end = out_text_.size();
  }
  std::string line = out_text_.substr(line_pos_, end - line_pos_);
  line_pos_ = std::min(end + 1, out_text_.size());
  return line;
}

}  // namespace egressd::test

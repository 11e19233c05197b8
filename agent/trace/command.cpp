#include "command.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "errors.h"

namespace egressd {

std::optional<SudoUser> sudo_user() {
  const char* uid = getenv("SUDO_UID");
  const char* gid = getenv("SUDO_GID");
  if (getuid() != 0 || !uid || !gid) return std::nullopt;
  SudoUser u;
  try {
    u.uid = static_cast<uid_t>(std::stoul(uid));
    u.gid = static_cast<gid_t>(std::stoul(gid));
  } catch (const std::exception&) {
    throw UsageError("SUDO_UID or SUDO_GID is not a number");
  }
  if (u.uid == 0) return std::nullopt;
  u.groups.push_back(u.gid);
  if (const char* name = getenv("SUDO_USER")) {
    int n = 64;
    std::vector<gid_t> groups(static_cast<size_t>(n));
    if (getgrouplist(name, u.gid, groups.data(), &n) < 0) {
      groups.resize(static_cast<size_t>(n));
      getgrouplist(name, u.gid, groups.data(), &n);
    }
    groups.resize(static_cast<size_t>(std::max(n, 0)));
    if (!groups.empty()) u.groups = groups;
  }
  return u;
}

LaunchedCommand::LaunchedCommand(const std::vector<std::string>& argv, const std::optional<SudoUser>& user) {
  int go[2], err[2];
  if (pipe2(go, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
    throw std::runtime_error(fmt::format("start command: pipe: {}", strerror(errno)));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error(fmt::format("start command: fork: {}", strerror(errno)));
  if (pid_ == 0) {
    close(go[1]);
    close(err[0]);
    char c;
    while (read(go[0], &c, 1) < 0 && errno == EINTR) {
    }
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGHUP}) sigaction(sig, &dfl, nullptr);
    int e = 0;
    if (user) {
      if (setgroups(user->groups.size(), user->groups.data()) != 0 || setgid(user->gid) != 0 ||
          setuid(user->uid) != 0)
        e = errno;
    }
    if (!e) {
      execvp(args[0], args.data());
      e = errno;
    }
    (void)!write(err[1], &e, sizeof(e));
    _exit(127);
  }
  close(go[0]);
  close(err[1]);
  go_fd_ = go[1];
  err_fd_ = err[0];
}

LaunchedCommand::~LaunchedCommand() {
  if (err_fd_ >= 0) close(err_fd_);
  if (go_fd_ >= 0) {
    close(go_fd_);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void LaunchedCommand::release(const std::string& name) {
  (void)!write(go_fd_, "x", 1);
  close(go_fd_);
  go_fd_ = -1;
  int e = 0;
  ssize_t n;
  while ((n = read(err_fd_, &e, sizeof(e))) < 0 && errno == EINTR) {
  }
  close(err_fd_);
  err_fd_ = -1;
  if (n == sizeof(e)) {
    waitpid(pid_, nullptr, 0);
    exited_ = true;
    throw std::runtime_error(fmt::format("cannot run {}: {}", name, strerror(e)));
  }
}

std::optional<int> LaunchedCommand::poll_exit() {
  if (exited_) return status_;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r != pid_) return std::nullopt;
  exited_ = true;
  status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return status_;
}

}  // namespace egressd

// The command `egressd trace -- CMD ARGS` starts: held on a pipe until it is
// followed, run as the user who ran sudo.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace egressd {

struct SudoUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

// The user who ran sudo, when we are root through sudo: the command runs as
// them. Resolved before fork (the child may only make raw system calls).
std::optional<SudoUser> sudo_user();
// A started command that waits on a pipe until it is followed, so not even
// its first instruction runs unobserved.
class LaunchedCommand {
 public:
  // Forks; the child waits for release(). Throws std::runtime_error.
  LaunchedCommand(const std::vector<std::string>& argv, const std::optional<SudoUser>& user);
  // A command that was never let go is killed; one that runs is left to run
  // (Ctrl-C reaches it through the terminal, as it reaches the trace).
  ~LaunchedCommand();
  LaunchedCommand(const LaunchedCommand&) = delete;
  LaunchedCommand& operator=(const LaunchedCommand&) = delete;
  pid_t pid() const { return pid_; }

  // Lets it exec. Throws with the reason when the exec (or the change of
  // user) failed.
  void release(const std::string& name);
  // The exit status as a shell reports it, once the command has ended.
  std::optional<int> poll_exit();

 private:
  pid_t pid_ = -1;
  int go_fd_ = -1, err_fd_ = -1;
  bool exited_ = false;
  int status_ = 0;
};

}  // namespace egressd

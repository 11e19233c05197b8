// The running agent: loads the kernel side, then loops draining events,
// polling live counters, logging and serving metrics until asked to stop.
#pragma once

#include <atomic>
#include <memory>

#include "config.h"

namespace egressd {

class Agent {
 public:
  explicit Agent(Config cfg);
  ~Agent();
  // Starts everything; throws LoaderError / std::runtime_error with a
  // one-line reason when the agent cannot work here.
  void start();
  // Runs until stop is set, then flushes every open flow. Returns 0.
  // Until stop. On the way out the kernel state stays pinned for the next
  // agent (a service restart, an upgrade), unless *unpin is true then (a
  // person pressed Ctrl-C: SIGINT), which detaches the programs.
  int run(const std::atomic<bool>& stop, const std::atomic<bool>* unpin = nullptr);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace egressd

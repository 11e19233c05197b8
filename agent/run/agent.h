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
  int run(const std::atomic<bool>& stop);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace egressd

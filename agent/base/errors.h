// What went wrong, by kind. The command line maps each kind to its exit code
// (docs/CLI.md), so a message can be reworded without changing what a
// script sees.
#pragma once

#include <stdexcept>
#include <string>

namespace egressd {

// Bad flags, configuration or policy: the user can fix the input (exit 2).
class UsageError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// This kernel or these privileges cannot run egressd: a missing feature, a
// program the verifier refused with no fallback left, a capability not held
// (exit 1).
class UnusableHere : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "ENOENT (No such file or directory)": the errno's name, then its text.
std::string errno_text(int err);

// Anything else is a std::runtime_error: egressd could run here but failed
// while starting or running (a port in use, a log file it cannot open; exit 3).

}  // namespace egressd

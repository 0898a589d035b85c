#pragma once

// Child processes of the real binary: started with fork and exec, their stdout read
// line by line through a pipe, their stderr appended to a file. Used by `bench` (a
// restart timed in a new process) and by the tests that run `convergence` itself.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace conv::util {

// Forks and execs `argv` (argv[0] is a path) with its stdout on `out_fd`, its stderr
// on `err_fd` and no signal blocked; returns the child's pid.
Result<pid_t> Spawn(const std::vector<std::string>& argv, int out_fd, int err_fd);

// Milliseconds until `deadline`, 0 once it has passed.
int MillisLeft(std::chrono::steady_clock::time_point deadline);

// A running child. Its stdout comes through a pipe (read with WaitForLine); its
// stderr is appended to `stderr_path` so that a chatty child never blocks on a full
// pipe. The destructor kills (SIGKILL) and reaps a child that is still running.
class ChildProcess {
 public:
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  static Result<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv,
                                                     const std::string& stderr_path);

  pid_t pid() const { return pid_; }
  // Reads stdout until a whole line starting with `prefix` arrives and returns it
  // (without the newline). Fails on timeout or when stdout closes first.
  Result<std::string> WaitForLine(std::string_view prefix, std::chrono::milliseconds timeout);
  // Sends `sig` to a child that has not been reaped yet.
  void Signal(int sig);
  // Waits for the child to end and reaps it. Returns its wait status, or nothing
  // when it is still running after `timeout`.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  bool running() const { return pid_ > 0 && !reaped_; }

 private:
  ChildProcess() = default;

  pid_t pid_ = -1;
  int out_fd_ = -1;
  bool reaped_ = false;
  std::string out_;  // stdout read and not yet returned as a line
};

}  // namespace conv::util

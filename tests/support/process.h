#pragma once

// Child processes and scratch directories for tests that run the real binary or
// need a data dir of their own.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace conv::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it when the
// object goes away.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "conv-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

struct ProcessResult {
  int exit_code = -1;  // -1: killed by a signal or timed out
  int signal = 0;      // the signal that ended it, if any
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs `argv` (argv[0] is a path) to completion, collecting stdout and stderr. A
// child still running after `timeout` is killed and reported as timed out.
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A port on loopback that nothing listens on: bound, then released.
uint16_t ClosedPort();

// A running child. Its stdout comes through a pipe (read with WaitForLine); its
// stderr is appended to `stderr_path` so that a chatty child never blocks on a full
// pipe. The destructor kills (SIGKILL) and reaps a child that is still running.
class ChildProcess {
 public:
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  static util::Result<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv,
                                                           const std::string& stderr_path);

  pid_t pid() const { return pid_; }
  // Reads stdout until a whole line starting with `prefix` arrives and returns it
  // (without the newline). Fails on timeout or when stdout closes first.
  util::Result<std::string> WaitForLine(std::string_view prefix, std::chrono::milliseconds timeout);
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

// The whole content of `path` (empty when it cannot be read).
std::string ReadFileOrEmpty(const std::string& path);

// An environment variable parsed as an unsigned number, or `fallback` when unset or
// not a number.
uint64_t EnvNumber(const char* name, uint64_t fallback);

}  // namespace conv::testing

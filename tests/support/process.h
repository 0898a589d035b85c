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

#include "util/child_process.h"
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

using util::ChildProcess;

// The whole content of `path` (empty when it cannot be read).
std::string ReadFileOrEmpty(const std::string& path);

// An environment variable parsed as an unsigned number, or `fallback` when unset or
// not a number.
uint64_t EnvNumber(const char* name, uint64_t fallback);

}  // namespace conv::testing

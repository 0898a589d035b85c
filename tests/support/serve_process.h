#pragma once

// A `convergence serve` child on loopback with a data dir of the test's, for tests
// that kill, restart or attack the real binary from outside.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/process.h"

namespace conv::testing {

struct ServeProcess {
  std::unique_ptr<ChildProcess> process;
  std::string address;   // HOST:PORT, from its "listening on" line
  std::string log_path;  // its stderr: shown when it does not stop cleanly

  uint16_t port() const;
  pid_t pid() const { return process->pid(); }
  // Its resident set size now, in KiB (VmRSS); 0 once it is gone.
  uint64_t RssKiB() const;
  // SIGTERM, then checks that it stops (exit 0) within `timeout`.
  void Stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));
};

// Starts `convergence serve --listen LISTEN --data-dir DIR --log-level warn` followed
// by `extra`, its stderr appended to `log_path`; fails the test when it does not
// print its address within 30 s.
ServeProcess StartServe(const std::string& data_dir, const std::string& log_path,
                        const std::vector<std::string>& extra = {},
                        const std::string& listen = "127.0.0.1:0");

// The resident set size of process `pid` in KiB (VmRSS of /proc/PID/status); 0 when
// it cannot be read.
uint64_t RssKiBOf(pid_t pid);

}  // namespace conv::testing

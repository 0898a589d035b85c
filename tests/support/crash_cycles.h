#pragma once

// The durability promise (SPEC §3) under SIGKILL: a `convergence serve` child under
// pipelined writes from several sources is killed at random moments and restarted.
// After every restart each source's acknowledged ops must be there, the state must be
// exactly each source's ops 1..last_applied_seq applied in order, and resent ops must
// be skipped as duplicates. Failures are reported as doctest checks; the totals say
// what was seen.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "support/serve_process.h"

namespace conv::testing {

struct CrashRun {
  uint64_t cycles = 20;
  uint64_t seed = 0;
  bool verbose = false;  // prints each cycle's figures on stderr
  // Called in each cycle while the writers write, in place of waiting `load`: it
  // must return after about `load`, and then the server is killed. None: wait.
  std::function<void(const ServeProcess&, std::chrono::milliseconds load)> during_load;
  // More `serve` arguments, e.g. --replicate.
  std::vector<std::string> serve_args;
  // Called after each kill, once the server is gone, with each source's name and
  // highest acknowledged seq.
  std::function<void(uint64_t cycle, const std::vector<std::pair<std::string, uint64_t>>& acked)>
      after_kill;
  // Called after the last restart's graceful stop, with the data dir.
  std::function<void(const std::string& data_dir)> at_end;
};

struct CrashTotals {
  uint64_t acked_ops = 0;     // acknowledged while writing
  uint64_t applied_ops = 0;   // recovered after the last restart
  uint64_t lost = 0;          // acknowledged, and missing after a restart
  uint64_t mismatches = 0;    // restarts whose state was not the sources' ops in order
  uint64_t resent = 0;        // duplicates resent after restarts
  uint64_t torn_tails = 0;    // torn tails the restarts cut
  double seconds = 0;         // in all
  double start_seconds = 0;   // starting servers
  double verify_seconds = 0;  // checking them
};

// Runs `run.cycles` kills and restarts on a fresh data dir, then a last restart that
// is checked once more and stopped gracefully.
CrashTotals RunCrashCycles(const CrashRun& run);

}  // namespace conv::testing

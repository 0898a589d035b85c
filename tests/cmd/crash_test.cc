// The durability promise (SPEC §3) under SIGKILL (support/crash_cycles.h): a
// `convergence serve` child under pipelined writes from several sources is killed at
// random moments and restarted; no acknowledged op may be lost.
//
// CONV_CRASH_CYCLES (default 20) sets the number of kills, CONV_CRASH_SEED the seed;
// CONV_CRASH_VERBOSE=1 prints each cycle's figures.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "support/crash_cycles.h"
#include "support/op_model.h"
#include "support/process.h"

using namespace conv;

TEST_CASE("crash: no acknowledged op is lost when the server is killed with SIGKILL") {
  testing::CrashRun run;
  run.cycles = testing::EnvNumber("CONV_CRASH_CYCLES", 20);
  run.seed = testing::TestSeed("CONV_CRASH_SEED", 20250101);
  run.verbose = testing::EnvNumber("CONV_CRASH_VERBOSE", 0) != 0;
  MESSAGE("crash test: ", run.cycles, " cycles, seed ", run.seed,
          " (CONV_CRASH_CYCLES, CONV_CRASH_SEED)");
  testing::CrashTotals t = testing::RunCrashCycles(run);
  MESSAGE(fmt::format(
      "crash test: {} cycles, {} acked ops, {} ops lost, {} ops recovered, {} resent duplicates, "
      "{} torn tails cut, {} state mismatches; {:.1f} s ({:.1f} s starting, {:.1f} s checking)",
      run.cycles, t.acked_ops, t.lost, t.applied_ops, t.resent, t.torn_tails, t.mismatches,
      t.seconds, t.start_seconds, t.verify_seconds));
  CHECK(t.lost == 0);
  CHECK(t.mismatches == 0);
  CHECK(t.acked_ops > 0);
}

#pragma once

#include "cmd/load.h"
#include "cmd/load_result.h"
#include "util/status.h"

namespace conv::cmd {

// Runs the load described by `options` against options.server, in phases:
//   subscribe  every subscriber connects and receives its SNAPSHOT_END;
//   write      writers and readers run for --duration (counts sampled every
//              kSampleIntervalS into LoadReport::timeline);
//   drain      the writers wait for their last ACKs;
//   sentinel   one more source asserts a fresh entity; every subscriber that
//              receives it holds the final state.
// Fails before the run starts, with `*exit_code` set, when the flags are invalid or
// the server cannot be reached or does not know the schema.
util::Result<LoadReport> RunLoadGenerator(const LoadOptions& options, int* exit_code);

}  // namespace conv::cmd

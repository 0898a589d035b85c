#pragma once

// Reads a cluster's replicated log back: the newest complete checkpoint, then every
// later window in window order. What a replica rebuilds from, and what the tests
// check the owner's acknowledgements against.

#include <cstdint>
#include <string>

#include "repl/jetstream.h"
#include "util/status.h"
#include "wal/records.h"

namespace conv::repl {

struct StreamReadReport {
  uint64_t first_seq = 0;  // stream sequences read
  uint64_t last_seq = 0;
  uint64_t messages = 0;
  bool used_checkpoint = false;
  uint64_t checkpoint_window = 0;
  uint64_t checkpoint_records = 0;
  uint64_t windows = 0;      // windows replayed after the checkpoint
  uint64_t last_window = 0;  // newest window replayed (or the checkpoint's)
  uint64_t records = 0;
  // The first window with a chunk missing (0: none): it and every later window were
  // not replayed (a torn tail: never acknowledged).
  uint64_t torn_window = 0;
};

// Replays the stream of `options.cluster_name` as it is now into `visitor`: the
// newest checkpoint whose chunks are all there, then every later window up to the
// first one with a chunk missing (report->torn_window).
util::Status ReadReplicatedLog(const ReplicationOptions& options, wal::RecordVisitor& visitor,
                               StreamReadReport* report);

}  // namespace conv::repl

#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "util/status.h"
#include "wal/writer.h"

namespace conv::wal {

// A copy of the log kept off this machine (src/repl implements it on NATS
// JetStream). The WAL thread hands it each window's blocks, framed exactly as they
// went into the local segment, right after writing them, in window order; after
// the round's fdatasync the confirm thread calls Confirm for the round (while the
// WAL thread goes on with the next), and only when both succeeded is the round
// durable (acknowledged). The checkpoint thread hands it each final checkpoint file.
class LogReplica {
 public:
  virtual ~LogReplica() = default;
  // WAL thread: starts copying `blocks` (one window's WINDOW_PART and WINDOW blocks).
  virtual void Publish(uint64_t window, std::string_view blocks) = 0;
  // Confirm thread: waits until every window published up to `through` is held by
  // the replica. Fails (kIo) when that cannot be had: nothing of the round, nor of
  // any later one, may be acknowledged.
  virtual WriteOutcome Confirm(uint64_t through) = 0;
  // Checkpoint thread: copies the final checkpoint file `path` (start window
  // `window`), then drops every copied window it makes unnecessary (those up to
  // `window`) and older checkpoints.
  virtual util::Status PublishCheckpoint(uint64_t window, const std::string& path) = 0;
};

}  // namespace conv::wal

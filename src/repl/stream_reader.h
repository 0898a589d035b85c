#pragma once

// Reads a cluster's replicated log back: the newest complete checkpoint, then every
// later window in window order. What a replica rebuilds from, and what the tests
// check the owner's acknowledgements against.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
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
  // Where a reader following the stream goes on: the first sequence of the torn
  // window's chunks, else last_seq + 1.
  uint64_t resume_seq = 1;
  // The newest epoch marker read (0: none): chunks of older epochs after it were
  // skipped, and a follower of the stream goes on from it.
  uint64_t epoch = 0;
  // Reads begun again because the owner purged the stream below sequences not read
  // yet (after a checkpoint it replicated meanwhile).
  uint64_t restarts = 0;
};

// Replays the stream of `options.cluster_name` as it is now into `visitor`: the
// newest checkpoint whose chunks are all there, then every later window up to the
// first one with a chunk missing (report->torn_window). A read the owner's purge
// overtakes begins again (report->restarts), for up to the confirm timeout.
// `before_messages`, when given, is called after each read of where the stream
// begins and ends and before its messages are read (tests purge it there).
util::Status ReadReplicatedLog(const ReplicationOptions& options, wal::RecordVisitor& visitor,
                               StreamReadReport* report,
                               const std::function<void()>& before_messages = {});

// A standby's takeover (docs/replication.md, "Standby"): the state the stream
// replays to (ReadReplicatedLog) written into `dir` as one checkpoint at the last
// complete window, with the schemas, every claim, each source's seq mark and lease.
// `dir` must hold no log and no checkpoint. Nothing is written when the stream
// holds no window.
util::Status WriteStreamCheckpoint(const ReplicationOptions& options, const std::string& dir,
                                   StreamReadReport* report);

// Follows the log of `options.cluster_name` (a read replica): an ordered JetStream
// consumer of its log subject (and the epoch markers) from a stream sequence on,
// handing out every window after a given one whole and in window order, skipping
// chunks of a deposed owner. Checkpoints are not read, only checked: one at or
// after the window wanted next means that window was purged before it was read.
class StreamTail {
 public:
  // More complete windows than this held past a missing one: the missing one is
  // gone (purged before it was read), and Next fails.
  static constexpr size_t kMaxHeldWindows = 256;

  // `epoch`: the newest marker's before from_seq (StreamReadReport::epoch).
  static util::Result<std::unique_ptr<StreamTail>> Open(const ReplicationOptions& options,
                                                        uint64_t from_seq, uint64_t after_window,
                                                        uint64_t epoch);
  ~StreamTail();
  StreamTail(const StreamTail&) = delete;
  StreamTail& operator=(const StreamTail&) = delete;

  // Waits up to `wait` for the next window (the one after the last handed out).
  // True with `window` and `blocks` set when it is complete; false when it did
  // not come in time. Fails on a malformed chunk or a window gone missing (a
  // checkpoint replaced it, or more than kMaxHeldWindows later windows came).
  util::Result<bool> Next(std::chrono::milliseconds wait, uint64_t* window, std::string* blocks);
  // The newest window number seen in a chunk so far (complete or not).
  uint64_t newest_seen() const { return newest_seen_; }

 private:
  struct State;
  explicit StreamTail(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
  uint64_t newest_seen_ = 0;
};

}  // namespace conv::repl

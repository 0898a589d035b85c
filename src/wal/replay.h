#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/status.h"
#include "wal/format.h"
#include "wal/records.h"

namespace conv::wal {

struct SchemaDef {
  uint32_t id = 0;
  std::string name;
  std::vector<std::pair<std::string, uint8_t>> fields;  // name, type code
};

// Keeps the SCHEMA records it is shown, one definition per id (the last one read),
// ignores every other record.
class SchemaCollector : public RecordVisitor {
 public:
  void OnClaim(const ClaimRecord&) override {}
  void OnRetract(const RetractRecord&) override {}
  void OnSource(const SourceRecord&) override {}
  void OnLease(const LeaseRecord&) override {}
  void OnSchema(const SchemaRecord& r) override;
  std::vector<SchemaDef> defs;
};

// The schemas the log was last written with: those at the head of the newest
// readable segment, else of the newest checkpoint. Empty for a new data dir.
util::Result<std::vector<SchemaDef>> ReadLatestSchemas(const std::string& dir);

struct RecoveryReport {
  bool used_checkpoint = false;
  uint64_t checkpoint_window = 0;
  uint64_t checkpoint_records = 0;
  uint64_t last_window = 0;  // newest window recovered (0: none)
  uint64_t segments = 0;
  uint64_t blocks = 0;
  uint64_t records = 0;
  // A torn tail cut off the last segment.
  std::string torn_file;
  uint64_t torn_offset = 0;
  uint64_t torn_bytes = 0;
  std::string torn_saved_as;
  std::vector<std::string> warnings;
};

struct ReadOptions {
  // Blocks with a larger payload are not trusted; at least the writers' limit.
  uint32_t max_block_payload = kMaxBlockPayload;
  // Threads that check a checkpoint's blocks before it is replayed (0: one per core).
  unsigned check_threads = 0;
};

// Replays the newest valid checkpoint, then every window after it, in order, into
// `visitor`. A torn tail of the last segment is cut off (its bytes kept in a side
// file) and reported: damage with nothing valid after it, or with only blocks of
// the same group commit after it (format.h: none of them can have been
// acknowledged), and a split window whose WINDOW block is missing, cut off whole. Corruption
// anywhere else fails with the file and offset, unless `salvage`: then replay stops at the
// corruption, the damaged rest is moved aside, and the report says what was dropped.
util::Status Recover(const std::string& dir, RecordVisitor& visitor, bool salvage,
                     RecoveryReport* report, ReadOptions options = {});

// Checks a checkpoint held in memory (a checkpoint file's bytes, `name` in errors)
// whole, then replays it into `visitor`: the replicated log's checkpoints.
util::Status ReplayCheckpointImage(const std::string& data, const std::string& name,
                                   RecordVisitor& visitor, uint64_t* window, uint64_t* records);
// Checks one window's blocks held in memory (SegmentWriter::last_blocks(): its
// WINDOW_PART blocks, then its WINDOW block) whole, then replays it: OnWindow, then
// every record. Fails, delivering nothing, on damage or a block of another window.
util::Status ReplayWindowImage(std::string_view blocks, uint64_t window, RecordVisitor& visitor,
                               uint64_t* records);

// After Recover: calls `f` with each window of the log in `dir` after `after`, in
// order, as its blocks are framed in the segment (ReplayWindowImage reads them back).
// Stops at the first error `f` returns, and fails on a damaged block.
util::Status ForEachWindowImage(
    const std::string& dir, uint64_t after,
    const std::function<util::Status(uint64_t window, std::string_view blocks)>& f);

}  // namespace conv::wal

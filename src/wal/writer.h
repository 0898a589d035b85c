#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/high_water.h"
#include "wal/format.h"

namespace conv::wal {

enum class WriteErrc {
  kOk,
  kNoSpace,  // the disk is full: nothing was added; the same call may be retried later
  kIo,       // anything else: the log can no longer be trusted
};
struct WriteOutcome {
  WriteErrc errc = WriteErrc::kOk;
  std::string message;
  bool ok() const { return errc == WriteErrc::kOk; }
};

// Upper bounds (inclusive, in microseconds) of the fdatasync latency buckets; one
// more bucket counts everything slower.
inline constexpr std::array<uint64_t, 14> kFsyncBucketBoundsUs = {
    100,    250,    500,     1'000,   2'500,   5'000,     10'000,
    25'000, 50'000, 100'000, 250'000, 500'000, 1'000'000, 2'500'000};

struct WriterStats {
  uint64_t blocks = 0;
  uint64_t bytes = 0;
  uint64_t fsyncs = 0;
  uint64_t fsync_ns = 0;
  uint64_t fsync_max_ns = 0;
  uint64_t segments = 0;  // segments created
  // fdatasyncs by latency: [i] counts those above bound i-1 and at most bound i
  // (kFsyncBucketBoundsUs); the last counts those above every bound. Not cumulative.
  std::array<uint64_t, kFsyncBucketBoundsUs.size() + 1> fsync_buckets{};
};

struct WriterOptions {
  bool fsync = true;  // false: written to the OS only (survives a process crash)
  uint64_t segment_bytes = 64ull << 20;
  // Largest block payload written (at most kMaxBlockPayload, which is also the
  // default); a window larger than this is split (format.h, WINDOW_PART). Readers
  // must be given the same or a larger limit.
  uint32_t max_block_payload = kMaxBlockPayload;
};

// Appends WINDOW blocks to segment files. Segments are preallocated (segment_bytes,
// or less when the file system has no room for that: halved until it fits, down to
// the window being appended), created with fsync of the file and its directory,
// and rotated when full; the first block of each segment carries the schema
// records. One thread at a time.
class SegmentWriter {
 public:
  SegmentWriter(std::string dir, WriterOptions options);
  ~SegmentWriter();
  SegmentWriter(const SegmentWriter&) = delete;
  SegmentWriter& operator=(const SegmentWriter&) = delete;

  // Records put at the head of every new segment.
  void SetSchemaRecords(std::string records, uint64_t count);
  // The blocks of `window` holding `fragments` (n_records records in all), written
  // with one write: one WINDOW block, or, when the window is over the block limit,
  // WINDOW_PART blocks then a WINDOW block, all in one segment. Nothing is durable
  // until Sync().
  WriteOutcome AppendWindow(uint64_t window, uint64_t ops, uint64_t n_records,
                            const std::vector<std::string_view>& fragments);
  WriteOutcome Sync();
  // Closes the current segment, so that the next append starts a new one.
  void Close();

  const WriterStats& stats() const { return stats_; }
  // The blocks the last successful AppendWindow wrote, framed as in the segment.
  std::string_view last_blocks() const { return block_; }
  // First window of the segment being written (0: none open).
  uint64_t current_first_window() const { return first_window_; }

 private:
  WriteOutcome Open(uint64_t first_window, uint64_t min_bytes);
  // Frames the window into block_: one WINDOW block, or WINDOW_PART blocks and a
  // WINDOW block when it is over the block limit. Fails (kIo) on a record that no
  // block can hold or that is malformed.
  WriteOutcome BuildBlocks(uint64_t window, uint64_t ops, uint64_t n_records,
                           const std::vector<std::string_view>& fragments, bool with_schemas);

  const std::string dir_;
  const WriterOptions options_;
  std::string schema_records_;
  uint64_t schema_count_ = 0;
  int fd_ = -1;
  uint64_t first_window_ = 0;
  uint64_t offset_ = 0;
  uint64_t capacity_ = 0;
  bool dirty_ = false;  // written since the last Sync
  std::string payload_;
  std::string block_;                         // the window's blocks, framed
  util::HighWater block_high_{256, 1 << 20};  // payload_ and block_ give back what a burst grew
  uint64_t block_count_ = 0;                  // blocks in block_
  WriterStats stats_;
};

}  // namespace conv::wal

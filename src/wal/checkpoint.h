#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "util/status.h"
#include "wal/format.h"

namespace conv::wal {

// Writes one checkpoint file: header, the schema records, CKPT_DATA blocks as they
// are added, and CKPT_END. The file is named *.tmp until Finish() has fsynced it,
// renamed it to its final name and fsynced the directory, so a checkpoint file that
// exists under its final name is complete.
struct CheckpointOptions {
  // Largest block payload written (at most kMaxBlockPayload, the default): records
  // added in one call are split over as many CKPT_DATA blocks as needed.
  uint32_t max_block_payload = kMaxBlockPayload;
};

class CheckpointWriter {
 public:
  ~CheckpointWriter();
  static util::Result<std::unique_ptr<CheckpointWriter>> Begin(const std::string& dir,
                                                               uint64_t window,
                                                               std::string_view schema_records,
                                                               uint64_t schema_count,
                                                               CheckpointOptions options = {});
  util::Status Add(std::string_view records, uint64_t count);
  util::Status Finish();
  uint64_t records() const { return records_; }
  uint64_t bytes() const { return bytes_; }
  const std::string& path() const { return final_path_; }

 private:
  CheckpointWriter() = default;
  util::Status Flush();
  // Keeps the file's dirty pages few (8 to 16 MiB): starts writing
  // back what was written since the last start, and waits for the range before.
  void WriteBack();

  int fd_ = -1;
  uint64_t window_ = 0;
  CheckpointOptions options_;
  std::string dir_;
  std::string tmp_path_;
  std::string final_path_;
  std::string buf_;
  uint64_t records_ = 0;
  uint64_t bytes_ = 0;
  uint64_t writeback_started_ = 0;  // bytes of the file whose writeback was started
  uint64_t written_back_ = 0;       // bytes of the file waited for on disk
  bool finished_ = false;
};

// After a checkpoint at `window` is final: deletes older checkpoints, and segments
// all of whose windows are at or below `window` (never the newest segment).
util::Status RetireBefore(const std::string& dir, uint64_t window, uint64_t* segments_deleted);

}  // namespace conv::wal

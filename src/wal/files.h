#pragma once

// File-system helpers of the log: names, listing, whole-file reads, fsync of
// directories. Errors carry the path and the system's reason.

#include <cstdint>
#include <string>
#include <vector>

#include "util/status.h"

namespace conv::wal {

std::string SegmentName(uint64_t first_window);
std::string CheckpointName(uint64_t window);

struct NamedFile {
  uint64_t window;
  std::string path;
};
struct DirListing {
  std::vector<NamedFile> segments;             // ascending window
  std::vector<NamedFile> checkpoints;          // ascending window
  std::vector<std::string> stale_checkpoints;  // *.ckpt.tmp left by an interrupted checkpoint
};
util::Result<DirListing> ListDir(const std::string& dir);

util::Result<std::string> ReadWholeFile(const std::string& path);
util::Status WriteNewFile(const std::string& path, std::string_view data);
util::Status FsyncDir(const std::string& dir);

}  // namespace conv::wal

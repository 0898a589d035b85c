#pragma once

// File-system helpers of the log: names, listing, whole-file reads, fsync of
// directories. Errors carry the path and the system's reason.

#include <cstdint>
#include <string>
#include <string_view>
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
// Creates (or replaces) `path` with `data` and fsyncs it (not its directory).
util::Status WriteNewFile(const std::string& path, std::string_view data);
util::Status FsyncDir(const std::string& dir);
// Cuts `path` to `size` bytes and fsyncs it, so the cut survives a crash.
util::Status TruncateFile(const std::string& path, uint64_t size);

// Called with the path of every file or directory fsynced through this module,
// after the fsync succeeded (nullptr: none). Lets tests check what was made durable
// and in which order; set it only while no other thread uses the log.
using SyncObserver = void (*)(const std::string& path, void* arg);
void SetSyncObserver(SyncObserver observer, void* arg);

}  // namespace conv::wal

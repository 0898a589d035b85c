#include "wal/writer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "util/clock.h"
#include "util/coding.h"
#include "wal/block.h"
#include "wal/files.h"
#include "wal/records.h"

namespace conv::wal {

SegmentWriter::SegmentWriter(std::string dir, WriterOptions options)
    : dir_(std::move(dir)), options_(options) {}

SegmentWriter::~SegmentWriter() {
  Close();
}

void SegmentWriter::SetSchemaRecords(std::string records, uint64_t count) {
  schema_records_ = std::move(records);
  schema_count_ = count;
}

void SegmentWriter::Close() {
  if (fd_ < 0) return;
  if (dirty_) (void)Sync();
  // Give back the preallocated space the segment did not use.
  if (::ftruncate(fd_, static_cast<off_t>(offset_)) == 0 && options_.fsync) ::fdatasync(fd_);
  ::close(fd_);
  fd_ = -1;
  first_window_ = 0;
}

WriteOutcome SegmentWriter::Open(uint64_t first_window, uint64_t min_bytes) {
  std::string path = dir_ + "/" + SegmentName(first_window);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    return {err == ENOSPC ? WriteErrc::kNoSpace : WriteErrc::kIo,
            fmt::format("cannot create segment '{}': {}", path, std::strerror(err))};
  }
  // The full size when the file system has room, else the largest halving of it
  // that fits, down to what the pending window needs: a small file system still
  // takes windows, in smaller segments.
  const uint64_t need = min_bytes + kFileHeaderSize;
  uint64_t capacity = std::max(options_.segment_bytes, need);
  int rc;
  while ((rc = ::posix_fallocate(fd, 0, static_cast<off_t>(capacity))) == ENOSPC &&
         capacity > need) {
    (void)!::ftruncate(fd, 0);  // give back whatever the failed attempt allocated
    capacity = std::max(need, capacity / 2);
  }
  if (rc != 0) {
    ::close(fd);
    ::unlink(path.c_str());
    return {rc == ENOSPC ? WriteErrc::kNoSpace : WriteErrc::kIo,
            fmt::format("cannot allocate {} bytes for segment '{}': {}", capacity, path,
                        std::strerror(rc))};
  }
  std::string header;
  AppendFileHeader(header, kSegmentMagic, first_window);
  if (::pwrite(fd, header.data(), header.size(), 0) != static_cast<ssize_t>(header.size())) {
    int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return {err == ENOSPC ? WriteErrc::kNoSpace : WriteErrc::kIo,
            fmt::format("cannot write the header of '{}': {}", path, std::strerror(err))};
  }
  if (options_.fsync) {
    if (::fsync(fd) != 0) {
      int err = errno;
      ::close(fd);
      return {WriteErrc::kIo,
              fmt::format("cannot fsync new segment '{}': {}", path, std::strerror(err))};
    }
    if (auto st = FsyncDir(dir_); !st.ok()) {
      ::close(fd);
      return {WriteErrc::kIo, st.message()};
    }
  }
  fd_ = fd;
  first_window_ = first_window;
  offset_ = kFileHeaderSize;
  capacity_ = capacity;
  ++stats_.segments;
  return {};
}

WriteOutcome SegmentWriter::BuildBlocks(uint64_t window, uint64_t ops, uint64_t n_records,
                                        const std::vector<std::string_view>& fragments,
                                        bool with_schemas) {
  const uint64_t limit = std::min(options_.max_block_payload, kMaxBlockPayload);
  if (size_t keep = block_high_.Note(block_.size(), block_.capacity()); keep != 0) {
    std::string().swap(payload_);
    std::string().swap(block_);
    block_.reserve(keep);
  }
  block_.clear();
  payload_.clear();
  AppendWindowHead(payload_, window, ops, n_records + (with_schemas ? schema_count_ : 0));
  uint64_t size = payload_.size() + (with_schemas ? schema_records_.size() : 0);
  for (std::string_view f : fragments)
    size += f.size();
  if (size <= limit) {
    if (with_schemas) payload_.append(schema_records_);
    for (std::string_view f : fragments)
      payload_.append(f);
    AppendBlock(block_, BlockType::kWindow, payload_, dirty_);
    block_count_ = 1;
    return {};
  }
  // Too large for one block: cut it by record. Each block's head (three varints)
  // takes at most 30 bytes.
  constexpr uint64_t kHead = 30;
  std::vector<std::string_view> runs;
  if (with_schemas) runs.push_back(schema_records_);
  runs.insert(runs.end(), fragments.begin(), fragments.end());
  std::vector<RecordPiece> pieces;
  std::string err = SplitRecords(runs, limit > kHead ? limit - kHead : 0, &pieces);
  if (!err.empty()) {
    return {WriteErrc::kIo,
            fmt::format("cannot write window {} ({} bytes): {}", window, size, err)};
  }
  for (size_t i = 0; i < pieces.size(); ++i) {
    bool last = i + 1 == pieces.size();
    payload_.clear();
    AppendWindowHead(payload_, window, last ? ops : 0, pieces[i].count);
    payload_.append(pieces[i].bytes);
    AppendBlock(block_, last ? BlockType::kWindow : BlockType::kWindowPart, payload_,
                dirty_ || i > 0);
  }
  block_count_ = pieces.size();
  return {};
}

WriteOutcome SegmentWriter::AppendWindow(uint64_t window, uint64_t ops, uint64_t n_records,
                                         const std::vector<std::string_view>& fragments) {
  bool fresh = fd_ < 0 || offset_ == kFileHeaderSize;
  if (auto b = BuildBlocks(window, ops, n_records, fragments, fresh); !b.ok()) return b;
  if (fd_ >= 0 && offset_ + block_.size() > capacity_) {
    // Close() cannot report a failed fdatasync, and this round's acks depend on it.
    if (auto s = Sync(); !s.ok()) return s;
    Close();
    fresh = true;
    if (auto b = BuildBlocks(window, ops, n_records, fragments, true); !b.ok()) return b;
  }
  if (fd_ < 0) {
    if (auto o = Open(window, block_.size()); !o.ok()) return o;
  }
  size_t done = 0;
  while (done < block_.size()) {
    ssize_t n = ::pwrite(fd_, block_.data() + done, block_.size() - done,
                         static_cast<off_t>(offset_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      if (done > 0) {
        // Put back zeros so that a reader sees the end of the data here.
        std::string zeros(done, '\0');
        (void)!::pwrite(fd_, zeros.data(), zeros.size(), static_cast<off_t>(offset_));
      }
      return {err == ENOSPC ? WriteErrc::kNoSpace : WriteErrc::kIo,
              fmt::format("cannot write window {} to segment {}: {}", window,
                          SegmentName(first_window_), std::strerror(err))};
    }
    done += static_cast<size_t>(n);
  }
  offset_ += block_.size();
  dirty_ = true;
  stats_.blocks += block_count_;
  stats_.bytes += block_.size();
  return {};
}

WriteOutcome SegmentWriter::Sync() {
  if (fd_ < 0 || !dirty_) return {};
  dirty_ = false;
  if (!options_.fsync) return {};
  uint64_t t0 = util::MonoNanos();
  if (::fdatasync(fd_) != 0) {
    int err = errno;
    return {WriteErrc::kIo, fmt::format("fdatasync of segment {} failed: {}",
                                        SegmentName(first_window_), std::strerror(err))};
  }
  uint64_t dt = util::MonoNanos() - t0;
  ++stats_.fsyncs;
  stats_.fsync_ns += dt;
  if (dt > stats_.fsync_max_ns) stats_.fsync_max_ns = dt;
  size_t bucket = 0;
  while (bucket < kFsyncBucketBoundsUs.size() && dt > kFsyncBucketBoundsUs[bucket] * 1000) {
    ++bucket;
  }
  ++stats_.fsync_buckets[bucket];
  return {};
}

}  // namespace conv::wal

#include "wal/checkpoint.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "util/coding.h"
#include "wal/block.h"
#include "wal/files.h"
#include "wal/format.h"
#include "wal/records.h"

namespace conv::wal {

namespace {

// How much of a checkpoint file is written before its writeback is started.
constexpr uint64_t kWritebackBytes = 8u << 20;

}  // namespace

CheckpointWriter::~CheckpointWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_ && !tmp_path_.empty()) ::unlink(tmp_path_.c_str());
}

util::Result<std::unique_ptr<CheckpointWriter>> CheckpointWriter::Begin(
    const std::string& dir, uint64_t window, std::string_view schema_records, uint64_t schema_count,
    CheckpointOptions options) {
  std::unique_ptr<CheckpointWriter> w(new CheckpointWriter());
  w->options_ = options;
  w->dir_ = dir;
  w->window_ = window;
  w->final_path_ = dir + "/" + CheckpointName(window);
  w->tmp_path_ = w->final_path_ + ".tmp";
  w->fd_ = ::open(w->tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (w->fd_ < 0) {
    return util::Status::Error(
        fmt::format("cannot create '{}': {}", w->tmp_path_, std::strerror(errno)));
  }
  AppendFileHeader(w->buf_, kCheckpointMagic, window);
  if (auto st = w->Add(schema_records, schema_count); !st.ok()) return st;
  return w;
}

util::Status CheckpointWriter::Add(std::string_view records, uint64_t count) {
  if (count == 0) return util::Status::Ok();
  const uint64_t limit = std::min(options_.max_block_payload, kMaxBlockPayload);
  std::string payload;
  util::PutVarint(payload, count);
  if (payload.size() + records.size() <= limit) {
    payload.append(records);
    AppendBlock(buf_, BlockType::kCheckpointData, payload);
    records_ += count;
    if (buf_.size() >= (1u << 20)) return Flush();
    return util::Status::Ok();
  }
  // Too large for one block: as many CKPT_DATA blocks as it takes, cut by record
  // (a block's count takes at most 10 bytes).
  std::vector<RecordPiece> pieces;
  std::string err = SplitRecords({records}, limit > 10 ? limit - 10 : 0, &pieces);
  if (!err.empty()) {
    return util::Status::Error(fmt::format("checkpoint '{}': cannot add {} bytes of records: {}",
                                           tmp_path_, records.size(), err));
  }
  for (const RecordPiece& p : pieces) {
    payload.clear();
    util::PutVarint(payload, p.count);
    payload.append(p.bytes);
    AppendBlock(buf_, BlockType::kCheckpointData, payload);
    records_ += p.count;
    if (buf_.size() >= (1u << 20)) {
      if (auto st = Flush(); !st.ok()) return st;
    }
  }
  return util::Status::Ok();
}

util::Status CheckpointWriter::Flush() {
  size_t done = 0;
  while (done < buf_.size()) {
    ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return util::Status::Error(
          fmt::format("cannot write '{}': {}", tmp_path_, std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  bytes_ += buf_.size();
  buf_.clear();
  if (bytes_ - writeback_started_ >= kWritebackBytes) WriteBack();
  return util::Status::Ok();
}

void CheckpointWriter::WriteBack() {
  // A checkpoint of a large state is gigabytes written as fast as the encoding goes.
  // Left to the kernel, they pile up as dirty pages, and the log's next fdatasync
  // (the ACKs of a window) waits behind their writeback (ext4 commits a file's
  // ordered data with the journal). Only hints: errors are ignored, Finish() fsyncs.
  ::sync_file_range(fd_, static_cast<off_t>(writeback_started_),
                    static_cast<off_t>(bytes_ - writeback_started_), SYNC_FILE_RANGE_WRITE);
  if (writeback_started_ > written_back_) {
    ::sync_file_range(
        fd_, static_cast<off_t>(written_back_),
        static_cast<off_t>(writeback_started_ - written_back_),
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
    written_back_ = writeback_started_;
  }
  writeback_started_ = bytes_;
}

util::Status CheckpointWriter::Finish() {
  std::string payload;
  util::PutVarint(payload, window_);
  util::PutVarint(payload, records_);
  AppendBlock(buf_, BlockType::kCheckpointEnd, payload);
  if (auto st = Flush(); !st.ok()) return st;
  if (::fsync(fd_) != 0) {
    return util::Status::Error(
        fmt::format("cannot fsync '{}': {}", tmp_path_, std::strerror(errno)));
  }
  ::close(fd_);
  fd_ = -1;
  if (::rename(tmp_path_.c_str(), final_path_.c_str()) != 0) {
    return util::Status::Error(fmt::format("cannot rename '{}' to '{}': {}", tmp_path_, final_path_,
                                           std::strerror(errno)));
  }
  finished_ = true;
  return FsyncDir(dir_);
}

util::Status RetireBefore(const std::string& dir, uint64_t window, uint64_t* segments_deleted) {
  *segments_deleted = 0;
  auto listing = ListDir(dir);
  if (!listing.ok()) return listing.status();
  for (const auto& c : listing->checkpoints) {
    if (c.window < window) ::unlink(c.path.c_str());
  }
  const auto& segs = listing->segments;
  for (size_t i = 0; i + 1 < segs.size(); ++i) {
    // Segment i holds windows [segs[i].window, segs[i + 1].window - 1].
    if (segs[i + 1].window - 1 <= window) {
      if (::unlink(segs[i].path.c_str()) == 0) ++*segments_deleted;
    }
  }
  return FsyncDir(dir);
}

}  // namespace conv::wal

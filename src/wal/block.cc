#include "wal/block.h"

#include <fmt/format.h>

#include <cstring>

#include "util/coding.h"
#include "util/crc32c.h"

namespace conv::wal {

namespace crc = util::crc32c;

void AppendFileHeader(std::string& out, std::string_view magic, uint64_t window) {
  out.append(magic);
  util::PutFixed32(out, kFormatVersion);
  util::PutFixed32(out, 0);
  util::PutFixed64(out, window);
}

void AppendBlock(std::string& out, BlockType type, std::string_view payload) {
  auto t = static_cast<char>(type);
  uint32_t c = crc::Extend(crc::Value(&t, 1), payload.data(), payload.size());
  util::PutFixed32(out, static_cast<uint32_t>(payload.size()));
  util::PutFixed32(out, crc::Mask(c));
  out.push_back(t);
  out.append(payload);
}

BlockReader::BlockReader(std::string_view data, std::string_view magic, uint32_t max_payload)
    : data_(data), max_payload_(max_payload) {
  if (data.size() < kFileHeaderSize) {
    error_ = fmt::format("file is {} bytes, shorter than its {}-byte header", data.size(),
                         kFileHeaderSize);
    return;
  }
  if (data.substr(0, magic.size()) != magic) {
    error_ = "bad magic: not a file of this kind";
    return;
  }
  uint32_t version;
  std::memcpy(&version, data.data() + 8, 4);
  if (version != kFormatVersion) {
    error_ = fmt::format("format version {} is not supported (this build reads {})", version,
                         kFormatVersion);
    return;
  }
  uint32_t reserved;
  std::memcpy(&reserved, data.data() + 12, 4);
  if (reserved != 0) {
    error_ = fmt::format(
        "reserved header field is {:#x}, not 0: damaged, or written by a newer format", reserved);
    return;
  }
  std::memcpy(&header_window_, data.data() + 16, 8);
  header_ok_ = true;
  pos_ = valid_end_ = kFileHeaderSize;
}

bool BlockReader::ValidBlockAt(uint64_t pos) const {
  if (pos + kBlockHeaderSize > data_.size()) return false;
  uint32_t len, masked;
  std::memcpy(&len, data_.data() + pos, 4);
  std::memcpy(&masked, data_.data() + pos + 4, 4);
  if (len == 0 || len > max_payload_ || len > data_.size() - pos - kBlockHeaderSize) {
    return false;
  }
  uint8_t type = static_cast<uint8_t>(data_[pos + 8]);
  if (type < 1 || type > 4) return false;
  uint32_t c = crc::Value(data_.data() + pos + 8, 1 + static_cast<size_t>(len));
  return crc::Unmask(masked) == c;
}

uint64_t BlockReader::data_end() const {
  uint64_t end = data_.size();
  while (end > valid_end_ && data_[end - 1] == '\0')
    --end;
  return end;
}

ReadStatus BlockReader::Next(Block* block) {
  if (!header_ok_) return ReadStatus::kCorrupt;
  if (pos_ == data_.size()) return ReadStatus::kEnd;
  uint64_t remaining = data_.size() - pos_;
  uint32_t len = 0;
  if (remaining >= 4) std::memcpy(&len, data_.data() + pos_, 4);
  if (remaining >= 4 && len == 0) {
    // Preallocated space: everything after must be zero, or something was damaged.
    if (data_end() == pos_) return ReadStatus::kEnd;
  }
  if (ValidBlockAt(pos_)) {
    block->type = static_cast<BlockType>(data_[pos_ + 8]);
    block->payload = data_.substr(pos_ + kBlockHeaderSize, len);
    block->offset = pos_;
    pos_ += kBlockHeaderSize + len;
    valid_end_ = pos_;
    return ReadStatus::kBlock;
  }
  error_offset_ = pos_;
  std::string what;
  if (remaining < kBlockHeaderSize) {
    what = fmt::format("{} bytes, less than a block header", remaining);
  } else if (len == 0 || len > remaining - kBlockHeaderSize) {
    what = fmt::format("block declares {} payload bytes, {} remain", len,
                       remaining - kBlockHeaderSize);
  } else {
    what = "checksum mismatch";
  }
  uint64_t end = data_end();
  for (uint64_t p = pos_ + 1; p < end; ++p) {
    if (ValidBlockAt(p)) {
      error_ = fmt::format("corrupt block at offset {} ({}); a valid block follows at offset {}",
                           pos_, what, p);
      return ReadStatus::kCorrupt;
    }
  }
  error_ = fmt::format("torn tail at offset {} ({}): {} bytes up to the end of the data", pos_,
                       what, end > pos_ ? end - pos_ : 0);
  return ReadStatus::kTorn;
}

}  // namespace conv::wal

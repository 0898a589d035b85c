#include "wal/block.h"

#include <fmt/format.h>

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

void AppendBlock(std::string& out, BlockType type, std::string_view payload, bool continues_group) {
  auto t = static_cast<char>(static_cast<uint8_t>(type) | (continues_group ? kContinuesGroup : 0));
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
  // Fields in header order (format.h): magic, version, reserved, window.
  util::Reader r(data.substr(magic.size()));
  uint32_t version = 0, reserved = 0;
  r.Fixed32(&version);
  r.Fixed32(&reserved);
  r.Fixed64(&header_window_);
  if (version < kOldestFormatVersion || version > kFormatVersion) {
    error_ = fmt::format("format version {} is not supported (this build reads {} to {})", version,
                         kOldestFormatVersion, kFormatVersion);
    return;
  }
  if (reserved != 0) {
    error_ = fmt::format(
        "reserved header field is {:#x}, not 0: damaged, or written by a newer format", reserved);
    return;
  }
  header_ok_ = true;
  pos_ = valid_end_ = kFileHeaderSize;
}

bool BlockReader::ValidBlockAt(uint64_t pos) const {
  if (pos + kBlockHeaderSize > data_.size()) return false;
  // Fields in block header order (format.h): length, crc, type.
  uint32_t len = LengthAt(pos);
  uint32_t masked = util::DecodeFixed32(Bytes(pos + 4));
  if (len == 0 || len > max_payload_ || len > data_.size() - pos - kBlockHeaderSize) {
    return false;
  }
  uint8_t type = TypeByteAt(pos) & ~kContinuesGroup;
  if (type < 1 || type > 4) return false;
  uint32_t c = crc::Value(data_.data() + pos + kBlockTypeOffset, 1 + static_cast<size_t>(len));
  return crc::Unmask(masked) == c;
}

uint32_t BlockReader::LengthAt(uint64_t pos) const {
  return util::DecodeFixed32(Bytes(pos));
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
  if (remaining >= 4) len = LengthAt(pos_);
  if (remaining >= 4 && len == 0) {
    // Preallocated space: everything after must be zero, or something was damaged.
    if (data_end() == pos_) return ReadStatus::kEnd;
  }
  if (ValidBlockAt(pos_)) {
    uint8_t t = TypeByteAt(pos_);
    block->type = static_cast<BlockType>(t & ~kContinuesGroup);
    block->continues_group = (t & kContinuesGroup) != 0;
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
  // Valid blocks after the damage that continue its group commit were written with
  // it under one fdatasync and were not acknowledged unless it was: the damage is a
  // torn tail. A valid block that starts a group commit was written after the
  // damaged block's fdatasync returned: the damage is corruption.
  uint64_t end = data_end();
  uint64_t continuing = 0;
  for (uint64_t p = pos_ + 1; p < end;) {
    if (!ValidBlockAt(p)) {
      ++p;
      continue;
    }
    if ((TypeByteAt(p) & kContinuesGroup) == 0) {
      error_ = fmt::format("corrupt block at offset {} ({}); a valid block follows at offset {}",
                           pos_, what, p);
      return ReadStatus::kCorrupt;
    }
    ++continuing;
    p += kBlockHeaderSize + LengthAt(p);
  }
  error_ = fmt::format("torn tail at offset {} ({}): {} bytes up to the end of the data", pos_,
                       what, end > pos_ ? end - pos_ : 0);
  if (continuing > 0) {
    error_ += fmt::format(", {} intact blocks of the same group commit among them", continuing);
  }
  return ReadStatus::kTorn;
}

void AppendWindowHead(std::string& out, uint64_t window, uint64_t ops, uint64_t n_records) {
  util::PutVarint(out, window);
  util::PutVarint(out, ops);
  util::PutVarint(out, n_records);
}

bool ParseWindowHead(std::string_view payload, WindowHead* h) {
  util::Reader r(payload);
  if (!r.Varint(&h->window) || !r.Varint(&h->ops) || !r.Varint(&h->n_records)) return false;
  h->records = r.rest();
  return true;
}

}  // namespace conv::wal

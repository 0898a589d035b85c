#pragma once

// Block framing shared by segments and checkpoints (format.h), and the reader that
// tells a clean end from a torn tail from corruption.

#include <cstdint>
#include <string>
#include <string_view>

#include "wal/format.h"

namespace conv::wal {

void AppendFileHeader(std::string& out, std::string_view magic, uint64_t window);
// Frames `payload` as one block and appends it; `continues_group` marks a block
// written in the same group commit as the block before it (format.h).
void AppendBlock(std::string& out, BlockType type, std::string_view payload,
                 bool continues_group = false);

// The head of a WINDOW or WINDOW_PART block's payload (format.h): the one encoder
// and the one decoder, for the writer, recovery and wal-dump.
struct WindowHead {
  uint64_t window = 0;
  uint64_t ops = 0;        // 0 in a WINDOW_PART block
  uint64_t n_records = 0;  // records in this block
  std::string_view records;
};
void AppendWindowHead(std::string& out, uint64_t window, uint64_t ops, uint64_t n_records);
// False when the three varints do not decode; `h->records` is the rest of `payload`.
bool ParseWindowHead(std::string_view payload, WindowHead* h);

struct Block {
  BlockType type;
  std::string_view payload;
  uint64_t offset;  // of the block header in the file
  // Written in the same group commit (one fdatasync) as the block before it.
  bool continues_group = false;
};

enum class ReadStatus {
  kBlock,    // *block is set
  kEnd,      // clean end: end of file, or a zero length (preallocated space)
  kTorn,     // an incomplete or damaged block with nothing valid after it but blocks
             // of the same group commit (none of which was acknowledged)
  kCorrupt,  // a damaged block followed by a valid block of a later group commit
};

// Reads the blocks of one file held in memory. Never reads past `data`.
class BlockReader {
 public:
  // Blocks whose payload is over `max_payload` bytes are not trusted (read as damage).
  BlockReader(std::string_view data, std::string_view magic,
              uint32_t max_payload = kMaxBlockPayload);

  // Whether the header is intact; when not, `error()` says why.
  bool header_ok() const { return header_ok_; }
  uint64_t header_window() const { return header_window_; }

  ReadStatus Next(Block* block);
  // After kTorn/kCorrupt: what is wrong and where.
  const std::string& error() const { return error_; }
  uint64_t error_offset() const { return error_offset_; }
  // End of the last good block (where a torn tail is cut).
  uint64_t valid_end() const { return valid_end_; }
  // End of the non-zero bytes after valid_end() (the extent of a torn tail).
  uint64_t data_end() const;

 private:
  // Whether a well-formed block starts at `pos`.
  bool ValidBlockAt(uint64_t pos) const;
  uint32_t LengthAt(uint64_t pos) const;
  uint8_t TypeByteAt(uint64_t pos) const {
    return static_cast<uint8_t>(data_[pos + kBlockTypeOffset]);
  }
  const uint8_t* Bytes(uint64_t pos) const {
    return reinterpret_cast<const uint8_t*>(data_.data()) + pos;
  }

  std::string_view data_;
  uint32_t max_payload_;
  bool header_ok_ = false;
  uint64_t header_window_ = 0;
  uint64_t pos_ = 0;
  uint64_t valid_end_ = 0;
  uint64_t error_offset_ = 0;
  std::string error_;
};

}  // namespace conv::wal

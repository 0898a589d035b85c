// Block framing: what BlockReader makes of whole, cut, zeroed and damaged files.

#include "wal/block.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <random>
#include <string>
#include <vector>

#include "support/op_model.h"
#include "util/coding.h"
#include "wal/format.h"

using namespace conv;
using wal::Block;
using wal::BlockReader;
using wal::BlockType;
using wal::ReadStatus;

namespace {

struct Image {
  std::string bytes;
  std::vector<uint64_t> offsets;  // of each block
  std::vector<std::string> payloads;
};

// A segment image: header, then `n` WINDOW blocks of random payloads whose first
// byte is never zero (so a cut inside a block never looks like preallocated space).
Image MakeImage(std::mt19937_64& rng, size_t n, size_t max_payload = 40) {
  Image img;
  wal::AppendFileHeader(img.bytes, wal::kSegmentMagic, 7);
  for (size_t i = 0; i < n; ++i) {
    std::string payload(1 + rng() % max_payload, '\0');
    // A length that is a multiple of 256 starts with a zero byte; avoid it.
    if (payload.size() % 256 == 0) payload.push_back('\0');
    for (auto& c : payload)
      c = static_cast<char>(rng());
    img.offsets.push_back(img.bytes.size());
    img.payloads.push_back(payload);
    wal::AppendBlock(img.bytes, BlockType::kWindow, payload);
  }
  return img;
}

// Reads blocks until something other than a block; returns that status.
ReadStatus ReadAllBlocks(BlockReader& r, std::vector<Block>* blocks) {
  Block b;
  for (;;) {
    ReadStatus st = r.Next(&b);
    if (st != ReadStatus::kBlock) return st;
    blocks->push_back(b);
  }
}

}  // namespace

TEST_CASE("wal: blocks read back with their type, payload and offset") {
  std::string img;
  wal::AppendFileHeader(img, wal::kCheckpointMagic, 42);
  wal::AppendBlock(img, BlockType::kCheckpointData, "first");
  wal::AppendBlock(img, BlockType::kCheckpointData, std::string(1000, 'x'));
  wal::AppendBlock(img, BlockType::kCheckpointEnd, "z");
  REQUIRE(img.size() == wal::kFileHeaderSize + 3 * wal::kBlockHeaderSize + 5 + 1000 + 1);

  BlockReader r(img, wal::kCheckpointMagic);
  REQUIRE(r.header_ok());
  CHECK(r.header_window() == 42);
  std::vector<Block> blocks;
  CHECK(ReadAllBlocks(r, &blocks) == ReadStatus::kEnd);
  REQUIRE(blocks.size() == 3);
  CHECK(blocks[0].type == BlockType::kCheckpointData);
  CHECK(blocks[0].payload == "first");
  CHECK(blocks[0].offset == wal::kFileHeaderSize);
  CHECK(blocks[1].payload == std::string(1000, 'x'));
  CHECK(blocks[1].offset == wal::kFileHeaderSize + wal::kBlockHeaderSize + 5);
  CHECK(blocks[2].type == BlockType::kCheckpointEnd);
  CHECK(r.valid_end() == img.size());
  // A clean end stays a clean end.
  Block b;
  CHECK(r.Next(&b) == ReadStatus::kEnd);
}

TEST_CASE("wal: zeros after the last block read as a clean end") {
  std::mt19937_64 rng(1);
  Image img = MakeImage(rng, 3);
  size_t end = img.bytes.size();
  for (size_t zeros : {size_t{1}, size_t{3}, size_t{4}, size_t{9}, size_t{4096}}) {
    CAPTURE(zeros);
    std::string data = img.bytes + std::string(zeros, '\0');
    BlockReader r(data, wal::kSegmentMagic);
    std::vector<Block> blocks;
    ReadStatus st = ReadAllBlocks(r, &blocks);
    CHECK(blocks.size() == 3);
    CHECK(r.valid_end() == end);
    CHECK(r.data_end() == end);
    // Fewer than 4 zero bytes cannot even hold a length: a clean end or a torn tail
    // of no data, either way nothing to keep.
    if (zeros < 4) {
      CHECK((st == ReadStatus::kEnd || st == ReadStatus::kTorn));
    } else {
      CHECK(st == ReadStatus::kEnd);
    }
  }
}

TEST_CASE("wal: a file header that is short, of another kind or of another version is refused") {
  std::string good;
  wal::AppendFileHeader(good, wal::kSegmentMagic, 1);
  wal::AppendBlock(good, BlockType::kWindow, "payload");

  for (size_t n = 0; n < wal::kFileHeaderSize; ++n) {
    BlockReader r(std::string_view(good).substr(0, n), wal::kSegmentMagic);
    CHECK_FALSE(r.header_ok());
    CHECK(r.error().find("shorter than its 24-byte header") != std::string::npos);
    Block b;
    CHECK(r.Next(&b) == ReadStatus::kCorrupt);
  }
  {
    BlockReader r(good, wal::kCheckpointMagic);
    CHECK_FALSE(r.header_ok());
    CHECK(r.error().find("bad magic") != std::string::npos);
  }
  {
    for (uint8_t version : {0, 3}) {
      std::string other = good;
      other[8] = static_cast<char>(version);
      BlockReader r(other, wal::kSegmentMagic);
      CHECK_FALSE(r.header_ok());
      CHECK(r.error().find(fmt::format("format version {} is not supported", version)) !=
            std::string::npos);
    }
    std::string v1 = good;  // the previous version is read
    v1[8] = 1;
    CHECK(BlockReader(v1, wal::kSegmentMagic).header_ok());
  }
}

TEST_CASE("wal: a last block cut at any byte reads as a torn tail at its offset") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 20240611);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  Image img = MakeImage(rng, 4, 300);
  uint64_t last = img.offsets.back();
  for (size_t cut = last; cut < img.bytes.size(); ++cut) {
    CAPTURE(cut);
    for (int mode = 0; mode < 3; ++mode) {  // truncated, zero-filled, garbage-filled
      CAPTURE(mode);
      std::string data = img.bytes;
      if (mode == 0) {
        data.resize(cut);
      } else {
        for (size_t i = cut; i < data.size(); ++i) {
          data[i] = mode == 1 ? '\0' : static_cast<char>(rng() | 1);
        }
      }
      BlockReader r(data, wal::kSegmentMagic);
      std::vector<Block> blocks;
      ReadStatus st = ReadAllBlocks(r, &blocks);
      REQUIRE(blocks.size() == 3);
      for (size_t i = 0; i < 3; ++i)
        CHECK(blocks[i].payload == img.payloads[i]);
      CHECK(r.valid_end() == last);
      if (cut == last && mode != 2) {
        CHECK(st == ReadStatus::kEnd);  // nothing of the block was written
        continue;
      }
      REQUIRE(st == ReadStatus::kTorn);
      CHECK(r.error_offset() == last);
      CHECK(r.error().find(fmt::format("torn tail at offset {}", last)) != std::string::npos);
      // The torn tail's extent: up to its last non-zero byte.
      uint64_t expected_end = mode == 0 ? cut : data.size();
      while (expected_end > last && data[expected_end - 1] == '\0')
        --expected_end;
      CHECK(r.data_end() == expected_end);
      CHECK(r.data_end() > last);
    }
  }
}

TEST_CASE("wal: a flipped bit reads as corruption before a valid block and as torn in the last") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 77);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  Image img = MakeImage(rng, 4);
  uint64_t last = img.offsets.back();
  for (size_t byte = img.offsets[0]; byte < img.bytes.size(); ++byte) {
    // The block holding the byte.
    size_t k = 0;
    while (k + 1 < img.offsets.size() && img.offsets[k + 1] <= byte)
      ++k;
    for (int bit = 0; bit < 8; ++bit) {
      CAPTURE(byte);
      CAPTURE(bit);
      std::string data = img.bytes;
      data[byte] = static_cast<char>(data[byte] ^ (1 << bit));
      BlockReader r(data, wal::kSegmentMagic);
      std::vector<Block> blocks;
      ReadStatus st = ReadAllBlocks(r, &blocks);
      CHECK(blocks.size() == k);
      CHECK(r.error_offset() == img.offsets[k]);
      CHECK(r.valid_end() == img.offsets[k]);
      if (img.offsets[k] == last) {
        CHECK(st == ReadStatus::kTorn);
      } else {
        REQUIRE(st == ReadStatus::kCorrupt);
        CHECK(r.error().find(fmt::format("corrupt block at offset {}", img.offsets[k])) !=
              std::string::npos);
        CHECK(r.error().find("a valid block follows") != std::string::npos);
      }
    }
  }
}

TEST_CASE("wal: a block length past the limit or past the file is never trusted") {
  std::mt19937_64 rng(5);
  Image img = MakeImage(rng, 2);
  for (uint32_t len : {wal::kMaxBlockPayload + 1, 0xffffffffu, 1u << 29}) {
    CAPTURE(len);
    std::string data = img.bytes;
    std::string field;
    util::PutFixed32(field, len);
    data.replace(img.offsets[1], 4, field);
    BlockReader r(data, wal::kSegmentMagic);
    std::vector<Block> blocks;
    CHECK(ReadAllBlocks(r, &blocks) == ReadStatus::kTorn);
    CHECK(blocks.size() == 1);
    CHECK(r.error().find(fmt::format("block declares {} payload bytes", len)) != std::string::npos);
  }
}

TEST_CASE("wal: a block of an unknown type is not a block") {
  std::string img;
  wal::AppendFileHeader(img, wal::kSegmentMagic, 1);
  wal::AppendBlock(img, BlockType::kWindow, "a");
  uint64_t off = img.size();
  wal::AppendBlock(img, static_cast<BlockType>(9), "b");
  BlockReader r(img, wal::kSegmentMagic);
  std::vector<Block> blocks;
  CHECK(ReadAllBlocks(r, &blocks) == ReadStatus::kTorn);
  CHECK(blocks.size() == 1);
  CHECK(r.error_offset() == off);
}

#pragma once

// On-disk formats of the write-ahead log and of checkpoints. Every field is spelled
// out with its size; integers are little-endian.
//
// A data dir holds
//   wal-<first window, 16 hex digits>.log         log segments, in window order
//   checkpoint-<window, 16 hex digits>.ckpt       checkpoints (the newest valid one is used)
//   LOCK                                          held by the running server
//   torn-<segment>-<offset>.bin                   bytes cut off a torn tail, kept for study
//
// Both file kinds start with a 24-byte header, then a sequence of blocks:
//
//   header   +----------+-------------+--------------+--------------------+
//            | magic 8  | version u32 | reserved u32 | window u64         |
//            +----------+-------------+--------------+--------------------+
//              segments: "CONVWAL\n", window = first window it may hold
//              checkpoints: "CONVCKP\n", window = the checkpoint's start window
//              reserved is written 0; a reader refuses a file where it is not
//
//   block    +------------+-----------+---------+------------------------+
//            | length u32 | crc u32   | type u8 | payload (length bytes) |
//            +------------+-----------+---------+------------------------+
//              crc = masked CRC-32C of the type byte and the payload.
//              type: the low 7 bits are the block type; the high bit (0x80,
//              segments only, since version 2) is set on a block written in the
//              same group commit (under the same fdatasync) as the block before
//              it in the segment, and clear on the first block of each group
//              commit and of each segment.
//              length 0 ends the data: segments are preallocated, so zeros
//              follow the last block.
//
// Torn tail or corruption: a block that is incomplete or fails its CRC is a torn
// tail when no valid block follows it, or when every valid block after it has the
// group-commit bit: those were written with it under one fdatasync (the last
// one), and an ack follows only a completed fdatasync, so nothing from the damaged
// block on was acknowledged unless the damage came after the sync (which no
// reader can tell from a torn write, as for a damaged last block). A valid block
// after it without the bit was written after its fdatasync returned: corruption.
//
// Block types and payloads:
//   1 WINDOW      varint window, varint ops (ops applied in the window, for the
//                 coalescing ratio), varint n_records, n_records records
//                 (the coalesced changes of one window; the first block of every
//                 segment also carries every SCHEMA record)
//   2 CKPT_DATA   varint n_records, n_records records
//   3 CKPT_END    varint window, varint total_records (last block of a checkpoint)
//   4 WINDOW_PART as WINDOW, with ops 0: a leading part of a window too large for
//                 one block (see below)
//
// Block size: a payload is at most kMaxBlockPayload bytes (writers may be set to a
// smaller limit; a reader must be given at least the writer's, and distrusts any
// larger length). A window over the limit is cut by record into WINDOW_PART blocks
// followed by one WINDOW block, all of the same window number, back to back in one
// segment and written together; only the WINDOW block carries the window's ops, and
// n_records counts the records of its own block. A window exists once its WINDOW
// block is read: replay delivers it whole then, and parts without their WINDOW
// block (the end of the data, or a torn block, comes first) are a torn tail cut off
// from the first part when in the newest segment, and corruption anywhere else, as
// is a block of another window among them. Records added to a checkpoint over the
// limit go into several CKPT_DATA blocks (a checkpoint is all or nothing anyway).
//
// Records (u8 kind first):
//   1 CLAIM    varint schema_id, str entity_id, str source, varint mask,
//              u8 uniform, varint ts_max, [uniform = 0: varint ts per present
//              field, in field order], str values (record values, see
//              docs/protocol.md)
//   2 RETRACT  varint schema_id, str entity_id, str source
//   3 SOURCE   str source, varint seq: every op of the source up to seq is in
//              this window or an earlier one
//   4 SCHEMA   varint schema_id, str name, varint n_fields,
//              per field: str name, u8 type (0 bool, 1 i64, 2 f64, 3 string, 4 bytes)
//   5 LEASE    str source, varint lease_ms: the source's lease from this window on
//              (0: none); a checkpoint holds one per source with a lease

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace conv::wal {

constexpr std::string_view kSegmentMagic = "CONVWAL\n";
constexpr std::string_view kCheckpointMagic = "CONVCKP\n";
// Version written; readers take every version from the oldest on (version 1 has no
// group-commit bit and no WINDOW_PART blocks).
constexpr uint32_t kFormatVersion = 2;
constexpr uint32_t kOldestFormatVersion = 1;
// High bit of a block's type byte: the block continues the group commit of the
// block before it.
constexpr uint8_t kContinuesGroup = 0x80;
constexpr size_t kFileHeaderSize = 8 + 4 + 4 + 8;
constexpr size_t kBlockHeaderSize = 4 + 4 + 1;
constexpr size_t kBlockTypeOffset = 4 + 4;  // after length and crc
// Largest block payload written or accepted; larger windows and checkpoint chunks
// are split (above).
constexpr uint32_t kMaxBlockPayload = 1u << 30;
// Bytes preallocated per segment; a larger window gets a segment of its own size.
constexpr uint64_t kSegmentBytes = 64ull << 20;

enum class BlockType : uint8_t {
  kWindow = 1,
  kCheckpointData = 2,
  kCheckpointEnd = 3,
  kWindowPart = 4,
};
enum class RecordKind : uint8_t { kClaim = 1, kRetract = 2, kSource = 3, kSchema = 4, kLease = 5 };

}  // namespace conv::wal

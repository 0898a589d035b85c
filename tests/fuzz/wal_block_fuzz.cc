// WAL blocks and records: the input is a whole segment file (or a checkpoint, when
// it starts with the checkpoint magic), read with BlockReader; the records of every
// block are decoded with DecodeRecords. It is read as it is, then once more with
// the checksums of its blocks made to match (FixChecksums).
//
// Properties: blocks follow one another from the header on and re-frame
// (AppendBlock) to exactly the bytes read; the reader stops at valid_end() and says
// why; records that decode re-encode to records that decode to the same encoding,
// and SplitRecords cuts them into pieces that put back together give them again.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "check.h"
#include "util/coding.h"
#include "wal/block.h"
#include "wal/records.h"
#include "wal_support.h"

namespace conv::wal {
namespace {

using fuzz::Reencoder;

void CheckRecords(std::string_view records, uint64_t n) {
  util::Reader r(records);
  Reencoder first;
  if (!DecodeRecords(r, n, first)) return;
  FUZZ_CHECK(first.count == n, "%llu of %llu records delivered", (unsigned long long)first.count,
             (unsigned long long)n);
  util::Reader again(first.out);
  Reencoder second;
  FUZZ_CHECK(DecodeRecords(again, n, second) && again.done(), "re-encoded records do not decode");
  FUZZ_CHECK(second.out == first.out, "re-encoding differs");

  constexpr size_t kMaxPiece = 256;
  std::vector<RecordPiece> pieces;
  std::string err = SplitRecords({first.out}, kMaxPiece, &pieces);
  if (!err.empty()) {
    FUZZ_CHECK(err.find("larger than a block can hold") != std::string::npos, "%s", err.c_str());
    return;
  }
  std::string joined;
  uint64_t count = 0;
  for (const auto& p : pieces) {
    FUZZ_CHECK(p.bytes.size() <= kMaxPiece, "a piece of %zu bytes", p.bytes.size());
    joined += p.bytes;
    count += p.count;
  }
  FUZZ_CHECK(joined == first.out && count == n, "pieces do not add up");
}

void CheckPayload(const Block& b) {
  util::Reader r(b.payload);
  switch (b.type) {
    case BlockType::kWindow:
    case BlockType::kWindowPart: {
      WindowHead h;
      if (ParseWindowHead(b.payload, &h)) CheckRecords(h.records, h.n_records);
      break;
    }
    case BlockType::kCheckpointData: {
      uint64_t n;
      if (r.Varint(&n)) CheckRecords(r.rest(), n);
      break;
    }
    case BlockType::kCheckpointEnd: {
      uint64_t window, total;
      (void)(r.Varint(&window) && r.Varint(&total));
      break;
    }
  }
}

}  // namespace
}  // namespace conv::wal

namespace conv::wal {
namespace {

void CheckFile(std::string_view file) {
  const size_t size = file.size();
  std::string_view magic = file.substr(0, kCheckpointMagic.size()) == kCheckpointMagic
                               ? kCheckpointMagic
                               : kSegmentMagic;
  BlockReader reader(file, magic);
  if (!reader.header_ok()) {
    FUZZ_CHECK(!reader.error().empty(), "a refused header without a reason");
    Block b;
    FUZZ_CHECK(reader.Next(&b) == ReadStatus::kCorrupt, "blocks after a refused header");
    return;
  }
  std::string reframed(file.substr(0, kFileHeaderSize));
  Block b;
  ReadStatus st;
  while ((st = reader.Next(&b)) == ReadStatus::kBlock) {
    FUZZ_CHECK(b.offset == reframed.size(), "block at %llu, expected %zu",
               (unsigned long long)b.offset, reframed.size());
    AppendBlock(reframed, b.type, b.payload, b.continues_group);
    FUZZ_CHECK(reader.valid_end() == reframed.size(), "valid_end behind the block");
    CheckPayload(b);
  }
  FUZZ_CHECK(file.substr(0, reframed.size()) == reframed, "re-framed blocks differ");
  FUZZ_CHECK(reader.valid_end() <= reader.data_end() && reader.data_end() <= size,
             "valid_end %llu, data_end %llu, size %zu", (unsigned long long)reader.valid_end(),
             (unsigned long long)reader.data_end(), size);
  if (st == ReadStatus::kEnd) {
    FUZZ_CHECK(reader.data_end() == reader.valid_end(), "non-zero bytes after a clean end");
  } else {
    FUZZ_CHECK(!reader.error().empty() && reader.error_offset() == reader.valid_end(),
               "damage without a reason or at the wrong offset");
  }
}

}  // namespace
}  // namespace conv::wal

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string file(reinterpret_cast<const char*>(data), size);
  conv::wal::CheckFile(file);
  // Again with every block's checksum made to match, so that mutated payloads reach
  // the record decoders.
  std::string fixed = file;
  conv::fuzz::FixChecksums(fixed);
  if (fixed != file) conv::wal::CheckFile(fixed);
  return 0;
}

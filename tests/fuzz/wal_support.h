#pragma once

// What the WAL targets share: a visitor that writes back what it is given, and the
// fix-up of block checksums that lets mutated blocks reach the record decoders.

#include <cstdint>
#include <cstring>
#include <string>

#include "util/coding.h"
#include "util/crc32c.h"
#include "wal/format.h"
#include "wal/records.h"

namespace conv::fuzz {

// Rewrites the CRC of every block of a segment or checkpoint image whose length
// fits in it, from the first block on up to the first that does not: nearly every
// mutation of a block's payload would otherwise only reach the checksum test.
inline void FixChecksums(std::string& file) {
  size_t pos = wal::kFileHeaderSize;
  while (pos + wal::kBlockHeaderSize <= file.size()) {
    uint32_t len = 0;
    std::memcpy(&len, file.data() + pos, 4);
    if (len == 0 || len > file.size() - pos - wal::kBlockHeaderSize) return;
    uint32_t masked = util::crc32c::Mask(
        util::crc32c::Value(file.data() + pos + wal::kBlockTypeOffset, 1 + size_t{len}));
    std::memcpy(file.data() + pos + 4, &masked, 4);
    pos += wal::kBlockHeaderSize + len;
  }
}

// A RecordVisitor that writes back every record it is given (and a mark for every
// window), so that what two decodings delivered compares as bytes.
class Reencoder : public wal::RecordVisitor {
 public:
  void OnClaim(const wal::ClaimRecord& r) override {
    wal::PutClaim(out, r.schema, r.id, r.source, r.mask, r.uniform, r.ts_max, r.ts, r.values);
    ++count;
  }
  void OnRetract(const wal::RetractRecord& r) override {
    wal::PutRetract(out, r.schema, r.id, r.source);
    ++count;
  }
  void OnSource(const wal::SourceRecord& r) override {
    wal::PutSource(out, r.source, r.seq);
    ++count;
  }
  void OnSchema(const wal::SchemaRecord& r) override {
    wal::PutSchema(out, r.id, r.name, r.n_fields, r.field_names, r.field_types);
    ++count;
  }
  void OnLease(const wal::LeaseRecord& r) override {
    wal::PutLease(out, r.source, r.lease_ms);
    ++count;
  }
  void OnWindow(uint64_t window) override {
    out += "\xffwindow";
    util::PutVarint(out, window);
  }

  std::string out;
  uint64_t count = 0;
};

}  // namespace conv::fuzz

#pragma once

// A RecordVisitor that writes back every record it is given (and a mark for every
// window), so that what two decodings delivered compares as bytes.

#include <cstdint>
#include <string>

#include "util/coding.h"
#include "wal/records.h"

namespace conv::fuzz {

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
  void OnWindow(uint64_t window) override {
    out += "\xffwindow";
    util::PutVarint(out, window);
  }

  std::string out;
  uint64_t count = 0;
};

}  // namespace conv::fuzz

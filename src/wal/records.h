#pragma once

// Encoding and decoding of WAL and checkpoint records (layouts in format.h).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/coding.h"
#include "wal/format.h"

namespace conv::wal {

struct ClaimRecord {
  uint32_t schema = 0;
  std::string_view id;
  std::string_view source;
  uint64_t mask = 0;
  bool uniform = true;
  uint64_t ts_max = 0;
  // Per present field, in field order, when !uniform; entries past the claim's field
  // count are unspecified.
  uint64_t ts[64] = {};
  std::string_view values;
};

struct RetractRecord {
  uint32_t schema = 0;
  std::string_view id;
  std::string_view source;
};

struct SourceRecord {
  std::string_view source;
  uint64_t seq = 0;
};

struct LeaseRecord {
  std::string_view source;
  uint64_t lease_ms = 0;
};

struct SchemaRecord {
  uint32_t id = 0;
  std::string_view name;
  uint32_t n_fields = 0;
  std::string_view field_names[64];
  uint8_t field_types[64] = {};
};

// Appenders. `ts` is read only when !uniform (popcount(mask) entries).
void PutClaim(std::string& out, uint32_t schema, std::string_view id, std::string_view source,
              uint64_t mask, bool uniform, uint64_t ts_max, const uint64_t* ts,
              std::string_view values);
void PutRetract(std::string& out, uint32_t schema, std::string_view id, std::string_view source);
void PutSource(std::string& out, std::string_view source, uint64_t seq);
void PutLease(std::string& out, std::string_view source, uint64_t lease_ms);
void PutSchema(std::string& out, uint32_t id, std::string_view name, uint32_t n_fields,
               const std::string_view* field_names, const uint8_t* field_types);

// Receives decoded records. Views point into the block being decoded.
class RecordVisitor {
 public:
  virtual ~RecordVisitor() = default;
  virtual void OnClaim(const ClaimRecord& r) = 0;
  virtual void OnRetract(const RetractRecord& r) = 0;
  virtual void OnSource(const SourceRecord& r) = 0;
  virtual void OnSchema(const SchemaRecord& r) = 0;
  virtual void OnLease(const LeaseRecord& r) = 0;
  // Replay only: a WINDOW block's records follow.
  virtual void OnWindow(uint64_t window) {}
  // Replay only, before a checkpoint's records: it holds `entities` entities of
  // `schema` (runs of CLAIM records naming one id, as checkpoints write them), for
  // sizing what they go into.
  virtual void OnCheckpointEntities(uint32_t schema, uint64_t entities) {}
};

// Decodes `n` records from `r`, calling `v` for each. Returns false (with the
// reader's offset at the failing record) when a record is malformed; records
// before it have been delivered.
bool DecodeRecords(util::Reader& r, uint64_t n, RecordVisitor& v);

// Whole records, cut to fit blocks.
struct RecordPiece {
  std::string bytes;
  uint64_t count = 0;
};
// Cuts the records in `runs` (each run holds whole records, back to back) into
// pieces of whole records of at most `max_bytes` each, in order. Returns an empty
// string, or what is wrong: a malformed record, or one larger than `max_bytes`.
std::string SplitRecords(const std::vector<std::string_view>& runs, size_t max_bytes,
                         std::vector<RecordPiece>* pieces);

}  // namespace conv::wal

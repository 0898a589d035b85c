#include "wal/records.h"

#include <fmt/format.h>

#include <cstring>

namespace conv::wal {

using util::PutStr;
using util::PutU8;
using util::PutVarint;

void PutClaim(std::string& out, uint32_t schema, std::string_view id, std::string_view source,
              uint64_t mask, bool uniform, uint64_t ts_max, const uint64_t* ts,
              std::string_view values) {
  // The hottest encoder (every claim record of every seal and checkpoint): one
  // resize, then the fields written in place, not one append per field.
  int n_ts = uniform ? 0 : __builtin_popcountll(mask);
  size_t bound = 1 + util::kMaxVarintBytes * (6 + static_cast<size_t>(n_ts)) + 1 + id.size() +
                 source.size() + values.size();
  size_t at = out.size();
  out.resize(at + bound);
  auto* p = reinterpret_cast<uint8_t*>(out.data() + at);
  uint8_t* start = p;
  auto str = [&p](std::string_view s) {
    p += util::EncodeVarint(p, s.size());
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    p += s.size();
  };
  *p++ = static_cast<uint8_t>(RecordKind::kClaim);
  p += util::EncodeVarint(p, schema);
  str(id);
  str(source);
  p += util::EncodeVarint(p, mask);
  *p++ = uniform ? 1 : 0;
  p += util::EncodeVarint(p, ts_max);
  for (int i = 0; i < n_ts; ++i)
    p += util::EncodeVarint(p, ts[i]);
  str(values);
  out.resize(at + static_cast<size_t>(p - start));
}

void PutRetract(std::string& out, uint32_t schema, std::string_view id, std::string_view source) {
  PutU8(out, static_cast<uint8_t>(RecordKind::kRetract));
  PutVarint(out, schema);
  PutStr(out, id);
  PutStr(out, source);
}

void PutSource(std::string& out, std::string_view source, uint64_t seq) {
  PutU8(out, static_cast<uint8_t>(RecordKind::kSource));
  PutStr(out, source);
  PutVarint(out, seq);
}

void PutLease(std::string& out, std::string_view source, uint64_t lease_ms) {
  PutU8(out, static_cast<uint8_t>(RecordKind::kLease));
  PutStr(out, source);
  PutVarint(out, lease_ms);
}

void PutSchema(std::string& out, uint32_t id, std::string_view name, uint32_t n_fields,
               const std::string_view* field_names, const uint8_t* field_types) {
  PutU8(out, static_cast<uint8_t>(RecordKind::kSchema));
  PutVarint(out, id);
  PutStr(out, name);
  PutVarint(out, n_fields);
  for (uint32_t i = 0; i < n_fields; ++i) {
    PutStr(out, field_names[i]);
    PutU8(out, field_types[i]);
  }
}

namespace {

bool GetU32(util::Reader& r, uint32_t* v) {
  uint64_t x;
  if (!r.Varint(&x) || x > UINT32_MAX) return false;
  *v = static_cast<uint32_t>(x);
  return true;
}

}  // namespace

bool DecodeRecords(util::Reader& r, uint64_t n, RecordVisitor& v) {
  // One for all claims: every field is set for each, but `ts` only up to the claim's
  // field count, so the 512-byte array is not cleared per record.
  ClaimRecord c;
  for (uint64_t i = 0; i < n; ++i) {
    uint8_t kind;
    if (!r.U8(&kind)) return false;
    switch (static_cast<RecordKind>(kind)) {
      case RecordKind::kClaim: {
        uint8_t uniform;
        if (!GetU32(r, &c.schema) || !r.Str(&c.id) || !r.Str(&c.source) || !r.Varint(&c.mask) ||
            !r.U8(&uniform) || uniform > 1 || !r.Varint(&c.ts_max)) {
          return false;
        }
        c.uniform = uniform == 1;
        if (!c.uniform) {
          int count = __builtin_popcountll(c.mask);
          for (int k = 0; k < count; ++k) {
            if (!r.Varint(&c.ts[k])) return false;
          }
        }
        if (!r.Str(&c.values)) return false;
        v.OnClaim(c);
        break;
      }
      case RecordKind::kRetract: {
        RetractRecord x;
        if (!GetU32(r, &x.schema) || !r.Str(&x.id) || !r.Str(&x.source)) return false;
        v.OnRetract(x);
        break;
      }
      case RecordKind::kSource: {
        SourceRecord s;
        if (!r.Str(&s.source) || !r.Varint(&s.seq)) return false;
        v.OnSource(s);
        break;
      }
      case RecordKind::kLease: {
        LeaseRecord l;
        if (!r.Str(&l.source) || !r.Varint(&l.lease_ms)) return false;
        v.OnLease(l);
        break;
      }
      case RecordKind::kSchema: {
        SchemaRecord s;
        if (!GetU32(r, &s.id) || !r.Str(&s.name) || !GetU32(r, &s.n_fields) || s.n_fields > 64) {
          return false;
        }
        for (uint32_t k = 0; k < s.n_fields; ++k) {
          if (!r.Str(&s.field_names[k]) || !r.U8(&s.field_types[k]) || s.field_types[k] > 4) {
            return false;
          }
        }
        v.OnSchema(s);
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

namespace {

class SkipVisitor : public RecordVisitor {
 public:
  void OnClaim(const ClaimRecord&) override {}
  void OnRetract(const RetractRecord&) override {}
  void OnSource(const SourceRecord&) override {}
  void OnLease(const LeaseRecord&) override {}
  void OnSchema(const SchemaRecord&) override {}
};

}  // namespace

std::string SplitRecords(const std::vector<std::string_view>& runs, size_t max_bytes,
                         std::vector<RecordPiece>* pieces) {
  pieces->clear();
  SkipVisitor skip;
  RecordPiece piece;
  uint64_t index = 0;  // of the record, over all runs
  for (std::string_view run : runs) {
    util::Reader r(run);
    while (!r.done()) {
      size_t at = r.offset();
      if (!DecodeRecords(r, 1, skip)) {
        return fmt::format("malformed record (record {}, byte {} of its fragment)", index, at);
      }
      size_t size = r.offset() - at;
      if (size > max_bytes) {
        return fmt::format("record {} is {} bytes, larger than a block can hold ({} bytes)", index,
                           size, max_bytes);
      }
      if (piece.bytes.size() + size > max_bytes) {
        pieces->push_back(std::move(piece));
        piece = RecordPiece{};
      }
      piece.bytes.append(run.substr(at, size));
      ++piece.count;
      ++index;
    }
  }
  if (piece.count > 0 || pieces->empty()) pieces->push_back(std::move(piece));
  return {};
}

}  // namespace conv::wal

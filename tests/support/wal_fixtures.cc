#include "support/wal_fixtures.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "wal/block.h"
#include "wal/files.h"
#include "wal/format.h"

namespace conv::testing {

namespace {

std::string Hex(std::string_view s) {
  std::string h;
  for (unsigned char c : s)
    h += fmt::format("{:02x}", c);
  return h;
}

std::string ClaimLine(uint32_t schema, std::string_view id, std::string_view source, uint64_t mask,
                      bool uniform, uint64_t ts_max, const uint64_t* ts, std::string_view values) {
  std::string line = fmt::format("claim schema={} id={} source={} mask={:#x} ts_max={}", schema, id,
                                 source, mask, ts_max);
  if (!uniform) {
    line += " field_ts=";
    int n = __builtin_popcountll(mask);
    for (int i = 0; i < n; ++i)
      line += fmt::format("{}{}", i ? "," : "", ts[i]);
  }
  return line + " values=" + Hex(values);
}

std::string RetractLine(uint32_t schema, std::string_view id, std::string_view source) {
  return fmt::format("retract schema={} id={} source={}", schema, id, source);
}

std::string SourceLine(std::string_view source, uint64_t seq) {
  return fmt::format("source {} seq={}", source, seq);
}

std::string SchemaLine(uint32_t id, std::string_view name, uint32_t n,
                       const std::string_view* names, const uint8_t* types) {
  std::string line = fmt::format("schema {} {}", id, name);
  for (uint32_t i = 0; i < n; ++i)
    line += fmt::format(" {}:{}", names[i], types[i]);
  return line;
}

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s)
    c = static_cast<char>(rng());
  return s;
}

}  // namespace

void RecordingVisitor::OnClaim(const wal::ClaimRecord& r) {
  events.push_back(
      ClaimLine(r.schema, r.id, r.source, r.mask, r.uniform, r.ts_max, r.ts, r.values));
}
void RecordingVisitor::OnRetract(const wal::RetractRecord& r) {
  events.push_back(RetractLine(r.schema, r.id, r.source));
}
void RecordingVisitor::OnSource(const wal::SourceRecord& r) {
  events.push_back(SourceLine(r.source, r.seq));
}
void RecordingVisitor::OnLease(const wal::LeaseRecord& r) {
  events.push_back(fmt::format("lease {} {}", r.source, r.lease_ms));
}
void RecordingVisitor::OnSchema(const wal::SchemaRecord& r) {
  events.push_back(SchemaLine(r.id, r.name, r.n_fields, r.field_names, r.field_types));
}
void RecordingVisitor::OnWindow(uint64_t window) {
  events.push_back(fmt::format("window {}", window));
}

EncodedRecords RandomRecords(std::mt19937_64& rng, size_t n, size_t value_bytes) {
  EncodedRecords out;
  for (size_t i = 0; i < n; ++i) {
    uint32_t schema = 1 + static_cast<uint32_t>(rng() % 2);
    std::string id = fmt::format("e-{}", rng() % 1000);
    std::string source = fmt::format("src-{}", rng() % 7);
    switch (rng() % 5) {
      case 0:
      case 1: {
        uint64_t mask = rng() & 0x1ff;
        if (mask == 0) mask = 0x10;
        bool uniform = rng() % 2 == 0;
        uint64_t ts[64] = {};
        uint64_t ts_max = 0;
        int fields = __builtin_popcountll(mask);
        for (int k = 0; k < fields; ++k) {
          ts[k] = 1'700'000'000'000'000ull + rng() % 1'000'000;
          ts_max = std::max(ts_max, ts[k]);
        }
        if (uniform) ts_max = 1'700'000'000'000'000ull + rng() % 1'000'000;
        std::string values = RandomBytes(rng, rng() % (2 * value_bytes + 1));
        wal::PutClaim(out.bytes, schema, id, source, mask, uniform, ts_max, ts, values);
        out.events.push_back(ClaimLine(schema, id, source, mask, uniform, ts_max, ts, values));
        break;
      }
      case 2:
        wal::PutRetract(out.bytes, schema, id, source);
        out.events.push_back(RetractLine(schema, id, source));
        break;
      case 3: {
        uint64_t lease = 1 + rng() % 604'800'000;  // never 0: the last byte of a test block is not
                                                   // zero (torn-tail tests cut after it)
        wal::PutLease(out.bytes, source, lease);
        out.events.push_back(fmt::format("lease {} {}", source, lease));
        break;
      }
      default: {
        uint64_t seq = rng() % 100'000;
        wal::PutSource(out.bytes, source, seq);
        out.events.push_back(SourceLine(source, seq));
        break;
      }
    }
    ++out.count;
  }
  return out;
}

EncodedRecords TestSchemaRecords() {
  EncodedRecords out;
  std::string_view player_names[] = {"name", "team", "x", "health", "online"};
  uint8_t player_types[] = {3, 3, 2, 1, 0};
  std::string_view item_names[] = {"label", "blob"};
  uint8_t item_types[] = {3, 4};
  wal::PutSchema(out.bytes, 1, "player", 5, player_names, player_types);
  out.events.push_back(SchemaLine(1, "player", 5, player_names, player_types));
  wal::PutSchema(out.bytes, 2, "item", 2, item_names, item_types);
  out.events.push_back(SchemaLine(2, "item", 2, item_names, item_types));
  out.count = 2;
  return out;
}

std::vector<TestWindow> RandomWindows(std::mt19937_64& rng, uint64_t first, size_t n,
                                      size_t max_records, size_t value_bytes) {
  std::vector<TestWindow> out;
  for (size_t i = 0; i < n; ++i) {
    TestWindow w;
    w.window = first + i;
    w.ops = rng() % 500;
    w.records = RandomRecords(rng, 1 + rng() % max_records, value_bytes);
    out.push_back(std::move(w));
  }
  return out;
}

void WriteWindows(const std::string& dir, const std::vector<TestWindow>& windows,
                  const EncodedRecords& schemas, wal::WriterOptions options) {
  wal::SegmentWriter writer(dir, options);
  writer.SetSchemaRecords(schemas.bytes, schemas.count);
  for (const auto& w : windows) {
    std::vector<std::string_view> fragments = {w.records.bytes};
    auto o = writer.AppendWindow(w.window, w.ops, w.records.count, fragments);
    REQUIRE_MESSAGE(o.ok(), o.message);
    auto s = writer.Sync();
    REQUIRE_MESSAGE(s.ok(), s.message);
  }
  writer.Close();
}

std::vector<std::string> ExpectedEvents(const std::vector<TestWindow>& windows,
                                        const EncodedRecords& schemas,
                                        const std::set<uint64_t>& segment_heads) {
  std::vector<std::string> out;
  for (const auto& w : windows) {
    out.push_back(fmt::format("window {}", w.window));
    if (segment_heads.contains(w.window)) {
      out.insert(out.end(), schemas.events.begin(), schemas.events.end());
    }
    out.insert(out.end(), w.records.events.begin(), w.records.events.end());
  }
  return out;
}

std::set<uint64_t> SegmentHeads(const std::string& dir) {
  auto listing = wal::ListDir(dir);
  REQUIRE_MESSAGE(listing.ok(), (listing.ok() ? "" : listing.message()));
  std::set<uint64_t> heads;
  for (const auto& s : listing->segments)
    heads.insert(s.window);
  return heads;
}

std::string ReadAll(const std::string& path) {
  auto data = wal::ReadWholeFile(path);
  REQUIRE_MESSAGE(data.ok(), (data.ok() ? "" : data.message()));
  return std::move(data).value();
}

void WriteAll(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  REQUIRE_MESSAGE(out.good(), "cannot write ", path);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  REQUIRE_MESSAGE(out.good(), "cannot write ", path);
}

std::vector<uint64_t> BlockOffsets(std::string_view file) {
  std::string_view magic = file.substr(0, wal::kSegmentMagic.size()) == wal::kCheckpointMagic
                               ? wal::kCheckpointMagic
                               : wal::kSegmentMagic;
  wal::BlockReader reader(file, magic);
  REQUIRE_MESSAGE(reader.header_ok(), reader.error());
  std::vector<uint64_t> out;
  wal::Block b;
  while (reader.Next(&b) == wal::ReadStatus::kBlock)
    out.push_back(b.offset);
  return out;
}

std::string Head(const std::vector<std::string>& v, size_t n) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < n; ++i)
    out += v[i] + "\n";
  if (v.size() > n) out += fmt::format("... ({} lines in all)\n", v.size());
  return out;
}

}  // namespace conv::testing

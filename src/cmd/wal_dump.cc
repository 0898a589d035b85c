#include "cmd/wal_dump.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "cmd/common.h"
#include "engine/record.h"
#include "engine/schema.h"
#include "util/coding.h"
#include "util/json.h"
#include "wal/block.h"
#include "wal/files.h"
#include "wal/format.h"
#include "wal/records.h"

namespace conv::cmd {

CLI::App* RegisterWalDump(CLI::App& app, WalDumpOptions& o) {
  CLI::App* sub = app.add_subcommand(
      "wal-dump", "Inspect and verify write-ahead log segments and checkpoints, offline");
  sub->add_option("path", o.path, "A data dir, or one segment or checkpoint file")
      ->required()
      ->check(CLI::ExistingPath);
  sub->add_flag("--json", o.json, "One JSON object per record");
  sub->add_flag("--verify", o.verify,
                "Check every block's CRC and record; exit 0 clean, 1 torn tail only, 2 "
                "corruption");
  sub->add_flag("--stats", o.stats,
                "Totals: windows, records, entities, sources, ops, coalescing ratio");
  return sub;
}

namespace {

struct Stats {
  uint64_t files = 0, windows = 0, ckpt_blocks = 0, claims = 0, retracts = 0, source_records = 0,
           schema_records = 0, lease_records = 0, ops = 0, first_window = 0, last_window = 0;
  std::set<std::pair<uint32_t, std::string>> entities;
  std::set<std::string> sources;
};

// Prints (or counts) the records of one block.
class Printer : public wal::RecordVisitor {
 public:
  Printer(const WalDumpOptions& o, Stats& stats, std::map<uint32_t, engine::Schema>& schemas)
      : o_(o), stats_(stats), schemas_(schemas) {}

  void Locate(const std::string& file, uint64_t offset, uint64_t window) {
    file_ = file;
    offset_ = offset;
    window_ = window;
  }

  void OnClaim(const wal::ClaimRecord& r) override {
    ++stats_.claims;
    Count(r.schema, r.id, r.source);
    if (!Printing()) return;
    if (o_.json) {
      util::JsonWriter w = Head("claim", r.schema, r.id, r.source);
      w.Field("ts", r.ts_max).Field("mask", r.mask).Key("record");
      WriteRecord(w, r.schema, r.mask, r.values);
      if (!r.uniform) {
        w.Key("field_ts").BeginArray();
        int n = __builtin_popcountll(r.mask);
        for (int i = 0; i < n; ++i)
          w.Uint(r.ts[i]);
        w.EndArray();
      }
      Emit(w);
    } else {
      util::JsonWriter rec;
      WriteRecord(rec, r.schema, r.mask, r.values);
      Emit(fmt::format("    claim {} {} source {} ts {}{} {}", SchemaName(r.schema), Quote(r.id),
                       Quote(r.source), r.ts_max, r.uniform ? "" : " (per-field ts)", rec.str()));
    }
  }
  void OnRetract(const wal::RetractRecord& r) override {
    ++stats_.retracts;
    Count(r.schema, r.id, r.source);
    if (!Printing()) return;
    if (o_.json) {
      util::JsonWriter w = Head("retract", r.schema, r.id, r.source);
      Emit(w);
    } else {
      Emit(fmt::format("    retract {} {} source {}", SchemaName(r.schema), Quote(r.id),
                       Quote(r.source)));
    }
  }
  void OnSource(const wal::SourceRecord& r) override {
    ++stats_.source_records;
    stats_.sources.insert(std::string(r.source));
    if (!Printing()) return;
    if (o_.json) {
      util::JsonWriter w = Where("source");
      w.Key("source").Text(r.source).Field("seq", r.seq);
      Emit(w);
    } else {
      Emit(fmt::format("    source {} seq {}", Quote(r.source), r.seq));
    }
  }
  void OnLease(const wal::LeaseRecord& r) override {
    ++stats_.lease_records;
    stats_.sources.insert(std::string(r.source));
    if (!Printing()) return;
    if (o_.json) {
      util::JsonWriter w = Where("lease");
      w.Key("source").Text(r.source).Field("lease_ms", r.lease_ms);
      Emit(w);
    } else {
      Emit(fmt::format("    lease {} {} ms", Quote(r.source), r.lease_ms));
    }
  }
  void OnSchema(const wal::SchemaRecord& r) override {
    ++stats_.schema_records;
    engine::Schema s;
    s.id = r.id;
    s.name = std::string(r.name);
    for (uint32_t i = 0; i < r.n_fields; ++i) {
      s.fields.push_back(
          {std::string(r.field_names[i]), static_cast<engine::FieldType>(r.field_types[i])});
    }
    if (Printing()) {
      std::string fields;
      for (const auto& f : s.fields) {
        fields += fmt::format("{}{}:{}", fields.empty() ? "" : " ", f.name,
                              engine::FieldTypeName(f.type));
      }
      if (o_.json) {
        util::JsonWriter w = Where("schema");
        w.Field("schema_id", r.id).Field("name", s.name).Field("fields", fields);
        Emit(w);
      } else {
        Emit(fmt::format("    schema {} {} {}", r.id, s.name, fields));
      }
    }
    schemas_[r.id] = std::move(s);
  }

 private:
  bool Printing() const { return !o_.verify && !o_.stats; }
  void Emit(const std::string& line) { std::printf("%s\n", line.c_str()); }
  // Closes the object Where began and prints it as one line.
  void Emit(util::JsonWriter& w) { Emit(w.EndObject().str()); }
  void Count(uint32_t schema, std::string_view id, std::string_view source) {
    stats_.entities.emplace(schema, std::string(id));
    stats_.sources.insert(std::string(source));
  }
  // An id or source name, as in the JSON output.
  std::string Quote(std::string_view s) const {
    std::string out;
    util::AppendJsonText(out, s);
    return out;
  }
  std::string SchemaName(uint32_t id) const {
    auto it = schemas_.find(id);
    return it == schemas_.end() ? fmt::format("schema#{}", id) : it->second.name;
  }
  // A JSON line's object, open, with where the record is and its kind.
  util::JsonWriter Where(std::string_view kind) const {
    util::JsonWriter w;
    w.BeginObject()
        .Field("file", file_)
        .Field("offset", offset_)
        .Field("window", window_)
        .Field("kind", kind);
    return w;
  }
  // Where, then the entity and the source a claim or retract is about.
  util::JsonWriter Head(std::string_view kind, uint32_t schema, std::string_view id,
                        std::string_view source) const {
    util::JsonWriter w = Where(kind);
    w.Field("schema_id", schema)
        .Field("schema", SchemaName(schema))
        .Key("id")
        .Text(id)
        .Key("source")
        .Text(source);
    return w;
  }
  // The record as engine::AppendRecordJson writes it, or null when its schema is
  // unknown or it does not parse.
  void WriteRecord(util::JsonWriter& w, uint32_t schema, uint64_t mask,
                   std::string_view values) const {
    auto it = schemas_.find(schema);
    std::string rec;
    util::PutVarint(rec, mask);
    rec.append(values);
    engine::RecordView view;
    if (it == schemas_.end() || !engine::ParseRecord(it->second, rec, &view).ok()) {
      w.Null();
      return;
    }
    w.Encoded([&](std::string& out) {
      engine::AppendRecordJson(out, it->second, view.mask, view.values);
    });
  }

  const WalDumpOptions& o_;
  Stats& stats_;
  std::map<uint32_t, engine::Schema>& schemas_;
  std::string file_;
  uint64_t offset_ = 0;
  uint64_t window_ = 0;
};

enum class FileVerdict { kClean, kTorn, kCorrupt };

FileVerdict DumpFile(const std::string& path, bool last_segment, const WalDumpOptions& o,
                     Stats& stats, std::map<uint32_t, engine::Schema>& schemas) {
  auto data = wal::ReadWholeFile(path);
  if (!data.ok()) {
    std::fprintf(stderr, "%s\n", data.message().c_str());
    return FileVerdict::kCorrupt;
  }
  bool checkpoint = data->compare(0, wal::kCheckpointMagic.size(), wal::kCheckpointMagic) == 0;
  wal::BlockReader reader(*data, checkpoint ? wal::kCheckpointMagic : wal::kSegmentMagic);
  ++stats.files;
  std::string name = path.substr(path.rfind('/') + 1);
  if (!reader.header_ok()) {
    // As recovery sees it: a last segment whose header is short or all zeros was
    // being created when the server stopped.
    bool torn = last_segment && (data->size() < wal::kFileHeaderSize ||
                                 data->find_first_not_of('\0') == std::string::npos);
    std::fprintf(o.verify ? stdout : stderr, "%s: %s: %s\n", name.c_str(),
                 torn ? "torn" : "CORRUPT", reader.error().c_str());
    return torn ? FileVerdict::kTorn : FileVerdict::kCorrupt;
  }
  if (!o.json && !o.verify && !o.stats) {
    std::printf("%s: %s, %s %llu\n", name.c_str(), checkpoint ? "checkpoint" : "segment",
                checkpoint ? "start window" : "first window",
                static_cast<unsigned long long>(reader.header_window()));
  }
  Printer printer(o, stats, schemas);
  uint64_t blocks = 0;
  auto report = [&](bool torn, const std::string& what) {
    std::fprintf(o.verify ? stdout : stderr, "%s: %s: %s\n", name.c_str(),
                 torn ? "torn tail" : "CORRUPT", what.c_str());
    return torn ? FileVerdict::kTorn : FileVerdict::kCorrupt;
  };
  // A window split over several blocks (format.h): its parts so far.
  struct Split {
    uint64_t window = 0, offset = 0, blocks = 0, records = 0;
  } split;
  wal::Block b;
  for (;;) {
    wal::ReadStatus st = reader.Next(&b);
    if (st == wal::ReadStatus::kEnd) break;
    if (st != wal::ReadStatus::kBlock) {
      bool torn = st == wal::ReadStatus::kTorn && last_segment;
      std::string what = reader.error();
      if (split.blocks > 0) {
        what += fmt::format("; window {} from offset {} goes with it", split.window, split.offset);
      }
      return report(torn, what);
    }
    ++blocks;
    util::Reader r(b.payload);
    uint64_t window = 0, ops = 0, n = 0;
    bool ok;
    bool part = b.type == wal::BlockType::kWindowPart;
    if (b.type == wal::BlockType::kWindow || part) {
      wal::WindowHead h;
      ok = wal::ParseWindowHead(b.payload, &h);
      window = h.window;
      ops = h.ops;
      n = h.n_records;
      r = util::Reader(h.records);
      if (ok && split.blocks > 0 && window != split.window) {
        return report(false,
                      fmt::format("a block of window {} at offset {} inside window {} "
                                  "(from offset {}): window {} is unfinished",
                                  window, b.offset, split.window, split.offset, split.window));
      }
      if (ok && part) {
        if (split.blocks == 0) split = {window, b.offset, 0, 0};
        ++split.blocks;
        split.records += n;
        if (!o.json && !o.verify && !o.stats) {
          std::printf(
              "  @%llu window %llu (part %llu, continued): %llu records\n",
              static_cast<unsigned long long>(b.offset), static_cast<unsigned long long>(window),
              static_cast<unsigned long long>(split.blocks), static_cast<unsigned long long>(n));
        }
      } else if (ok) {
        ++stats.windows;
        stats.ops += ops;
        if (stats.first_window == 0 || window < stats.first_window) stats.first_window = window;
        if (window > stats.last_window) stats.last_window = window;
        if (!o.json && !o.verify && !o.stats) {
          std::string in_blocks =
              split.blocks == 0 ? ""
                                : fmt::format(" in {} blocks (this one: {})", split.blocks + 1, n);
          std::printf("  @%llu window %llu: %llu ops, %llu records%s\n",
                      static_cast<unsigned long long>(b.offset),
                      static_cast<unsigned long long>(window), static_cast<unsigned long long>(ops),
                      static_cast<unsigned long long>(split.records + n), in_blocks.c_str());
        }
        split = {};
      }
    } else if (b.type == wal::BlockType::kCheckpointData) {
      ++stats.ckpt_blocks;
      window = reader.header_window();
      ok = r.Varint(&n);
    } else {
      continue;  // CKPT_END
    }
    printer.Locate(name, b.offset, window);
    if (!ok || !wal::DecodeRecords(r, n, printer) || !r.done()) {
      std::fprintf(o.verify ? stdout : stderr,
                   "%s: CORRUPT: malformed records in the block at offset %llu\n", name.c_str(),
                   static_cast<unsigned long long>(b.offset));
      return FileVerdict::kCorrupt;
    }
  }
  if (split.blocks > 0) {
    // As recovery sees it: cut off whole from the last segment, corruption elsewhere.
    return report(last_segment,
                  fmt::format("window {} at offset {} is unfinished: the data ends before its "
                              "last block",
                              split.window, split.offset));
  }
  if (o.verify) {
    std::printf("%s: ok, %llu blocks\n", name.c_str(), static_cast<unsigned long long>(blocks));
  }
  return FileVerdict::kClean;
}

}  // namespace

int RunWalDump(const WalDumpOptions& o) {
  std::vector<std::pair<std::string, bool>> files;  // path, is the last segment
  struct stat st {};
  ::stat(o.path.c_str(), &st);
  if (S_ISDIR(st.st_mode)) {
    auto listing = wal::ListDir(o.path);
    if (!listing.ok()) {
      PrintError(listing.message());
      return kExitError;
    }
    for (const auto& c : listing->checkpoints)
      files.emplace_back(c.path, false);
    for (size_t i = 0; i < listing->segments.size(); ++i) {
      files.emplace_back(listing->segments[i].path, i + 1 == listing->segments.size());
    }
    if (files.empty()) {
      PrintError(fmt::format("'{}' holds no segments or checkpoints", o.path));
      return kExitError;
    }
  } else {
    files.emplace_back(o.path, true);
  }
  Stats stats;
  std::map<uint32_t, engine::Schema> schemas;
  FileVerdict worst = FileVerdict::kClean;
  for (const auto& [path, last] : files) {
    FileVerdict v = DumpFile(path, last, o, stats, schemas);
    if (static_cast<int>(v) > static_cast<int>(worst)) worst = v;
  }
  if (o.stats) {
    uint64_t changes = stats.claims + stats.retracts;
    double ratio = changes == 0 ? 0 : static_cast<double>(stats.ops) / static_cast<double>(changes);
    if (o.json) {
      util::JsonWriter w;
      w.BeginObject()
          .Field("files", stats.files)
          .Field("windows", stats.windows)
          .Field("first_window", stats.first_window)
          .Field("last_window", stats.last_window)
          .Field("records",
                 changes + stats.source_records + stats.schema_records + stats.lease_records)
          .Field("claims", stats.claims)
          .Field("retracts", stats.retracts)
          .Field("leases", stats.lease_records)
          .Field("entities", uint64_t{stats.entities.size()})
          .Field("sources", uint64_t{stats.sources.size()})
          .Field("ops", stats.ops)
          .Field("coalescing_ratio", ratio, 3)
          .EndObject();
      std::printf("%s\n", w.str().c_str());
    } else {
      std::printf("files            %llu\n", (unsigned long long)stats.files);
      std::printf("windows          %llu (%llu to %llu)\n", (unsigned long long)stats.windows,
                  (unsigned long long)stats.first_window, (unsigned long long)stats.last_window);
      std::printf(
          "records          %llu (claims %llu, retracts %llu, source marks %llu, "
          "leases %llu, schemas %llu)\n",
          (unsigned long long)(changes + stats.source_records + stats.schema_records +
                               stats.lease_records),
          (unsigned long long)stats.claims, (unsigned long long)stats.retracts,
          (unsigned long long)stats.source_records, (unsigned long long)stats.lease_records,
          (unsigned long long)stats.schema_records);
      std::printf("entities         %zu\n", stats.entities.size());
      std::printf("sources          %zu\n", stats.sources.size());
      std::printf("ops represented  %llu\n", (unsigned long long)stats.ops);
      std::printf("coalescing ratio %.2f ops per claim record\n", ratio);
    }
  }
  if (o.verify) {
    std::printf("%s\n", worst == FileVerdict::kClean  ? "verify: clean"
                        : worst == FileVerdict::kTorn ? "verify: torn tail (recovery cuts it off)"
                                                      : "verify: CORRUPT");
  }
  if (worst == FileVerdict::kCorrupt) return kVerifyCorrupt;
  if (worst == FileVerdict::kTorn) return kVerifyTornTail;
  return kVerifyClean;
}

}  // namespace conv::cmd

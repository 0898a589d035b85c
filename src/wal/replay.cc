#include "wal/replay.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

#include "util/coding.h"
#include "wal/block.h"
#include "wal/files.h"
#include "wal/format.h"

namespace conv::wal {

namespace {

class NullVisitor : public RecordVisitor {
 public:
  void OnClaim(const ClaimRecord&) override {}
  void OnRetract(const RetractRecord&) override {}
  void OnSource(const SourceRecord&) override {}
  void OnSchema(const SchemaRecord&) override {}
};

class SchemaCollector : public NullVisitor {
 public:
  void OnSchema(const SchemaRecord& r) override {
    SchemaDef d;
    d.id = r.id;
    d.name = std::string(r.name);
    for (uint32_t i = 0; i < r.n_fields; ++i) {
      d.fields.emplace_back(std::string(r.field_names[i]), r.field_types[i]);
    }
    defs.push_back(std::move(d));
  }
  std::vector<SchemaDef> defs;
};

// Decodes a WINDOW block: its window, then its records into `v`.
bool DecodeWindowBlock(std::string_view payload, RecordVisitor& v, uint64_t* window,
                       uint64_t* records) {
  util::Reader r(payload);
  uint64_t n, ops;
  if (!r.Varint(window) || !r.Varint(&ops) || !r.Varint(&n)) return false;
  v.OnWindow(*window);
  *records = n;
  return DecodeRecords(r, n, v) && r.done();
}

bool DecodeCheckpointData(std::string_view payload, RecordVisitor& v, uint64_t* records) {
  util::Reader r(payload);
  uint64_t n;
  if (!r.Varint(&n)) return false;
  *records += n;
  return DecodeRecords(r, n, v) && r.done();
}

// Checks a whole checkpoint (CRCs, records, the end block's count), then replays it
// into `v` when `v` is given.
util::Status ReadCheckpoint(const std::string& data, const std::string& path, RecordVisitor* v,
                            uint64_t* window, uint64_t* records) {
  NullVisitor null;
  for (int pass = 0; pass < (v != nullptr ? 2 : 1); ++pass) {
    RecordVisitor& sink = pass == 0 ? static_cast<RecordVisitor&>(null) : *v;
    BlockReader reader(data, kCheckpointMagic);
    if (!reader.header_ok()) {
      return util::Status::Error(fmt::format("checkpoint '{}': {}", path, reader.error()));
    }
    *window = reader.header_window();
    *records = 0;
    bool ended = false;
    Block b;
    for (;;) {
      ReadStatus st = reader.Next(&b);
      if (st == ReadStatus::kEnd) break;
      if (st != ReadStatus::kBlock) {
        return util::Status::Error(fmt::format("checkpoint '{}': {}", path, reader.error()));
      }
      if (ended) {
        return util::Status::Error(
            fmt::format("checkpoint '{}': data after the end block at offset {}", path, b.offset));
      }
      if (b.type == BlockType::kCheckpointData) {
        if (!DecodeCheckpointData(b.payload, sink, records)) {
          return util::Status::Error(fmt::format(
              "checkpoint '{}': malformed records in the block at offset {}", path, b.offset));
        }
      } else if (b.type == BlockType::kCheckpointEnd) {
        util::Reader r(b.payload);
        uint64_t w, total;
        if (!r.Varint(&w) || !r.Varint(&total) || w != *window || total != *records) {
          return util::Status::Error(fmt::format(
              "checkpoint '{}': end block does not match its content (records {} vs {})", path,
              total, *records));
        }
        ended = true;
      } else {
        return util::Status::Error(
            fmt::format("checkpoint '{}': unexpected block type {} at offset {}", path,
                        static_cast<int>(b.type), b.offset));
      }
    }
    if (!ended) {
      return util::Status::Error(fmt::format("checkpoint '{}' has no end block", path));
    }
  }
  return util::Status::Ok();
}

std::string SideFileName(const std::string& dir, std::string_view kind, const std::string& path,
                         uint64_t offset) {
  std::string base = path.substr(path.rfind('/') + 1);
  return fmt::format("{}/{}-{}-{}.bin", dir, kind, base, offset);
}

// Saves data[from, to) of `path` to a side file, then cuts the file at `from`. The
// side file and its directory entry are durable before the cut, and the cut is
// durable before this returns: a crash at any point loses no byte and never leaves
// the tail both in the segment and half-written aside.
util::Status CutFile(const std::string& dir, const std::string& path, const std::string& data,
                     uint64_t from, uint64_t to, std::string_view kind, std::string* saved_as) {
  if (to > from) {
    *saved_as = SideFileName(dir, kind, path, from);
    if (auto st = WriteNewFile(*saved_as, std::string_view(data).substr(from, to - from));
        !st.ok()) {
      return st;
    }
    if (auto st = FsyncDir(dir); !st.ok()) return st;
  }
  return TruncateFile(path, from);
}

// Removes a segment left with no block, durably.
util::Status RemoveEmptySegment(const std::string& dir, const std::string& path) {
  if (::unlink(path.c_str()) != 0) {
    return util::Status::Error(fmt::format("cannot remove '{}'", path));
  }
  return FsyncDir(dir);
}

}  // namespace

util::Result<std::vector<SchemaDef>> ReadLatestSchemas(const std::string& dir) {
  auto listing = ListDir(dir);
  if (!listing.ok()) return listing.status();
  for (auto it = listing->segments.rbegin(); it != listing->segments.rend(); ++it) {
    auto data = ReadWholeFile(it->path);
    if (!data.ok()) return data.status();
    BlockReader reader(*data, kSegmentMagic);
    Block b;
    if (reader.Next(&b) != ReadStatus::kBlock || b.type != BlockType::kWindow) continue;
    SchemaCollector c;
    uint64_t w, n;
    if (DecodeWindowBlock(b.payload, c, &w, &n)) return c.defs;
  }
  for (auto it = listing->checkpoints.rbegin(); it != listing->checkpoints.rend(); ++it) {
    auto data = ReadWholeFile(it->path);
    if (!data.ok()) return data.status();
    SchemaCollector c;
    uint64_t w, n;
    if (ReadCheckpoint(*data, it->path, &c, &w, &n).ok()) return c.defs;
  }
  return std::vector<SchemaDef>{};
}

util::Status Recover(const std::string& dir, RecordVisitor& visitor, bool salvage,
                     RecoveryReport* report) {
  *report = RecoveryReport{};
  auto listing = ListDir(dir);
  if (!listing.ok()) return listing.status();
  for (const auto& stale : listing->stale_checkpoints) {
    ::unlink(stale.c_str());  // a checkpoint that was being written when the server stopped
  }

  // The newest checkpoint that reads back whole.
  for (auto it = listing->checkpoints.rbegin(); it != listing->checkpoints.rend(); ++it) {
    auto data = ReadWholeFile(it->path);
    if (!data.ok()) return data.status();
    uint64_t w, n;
    if (auto st = ReadCheckpoint(*data, it->path, nullptr, &w, &n); !st.ok()) {
      report->warnings.push_back(fmt::format("ignoring damaged checkpoint: {}", st.message()));
      continue;
    }
    if (auto st = ReadCheckpoint(*data, it->path, &visitor, &w, &n); !st.ok()) return st;
    report->used_checkpoint = true;
    report->checkpoint_window = w;
    report->checkpoint_records = n;
    report->last_window = w;
    break;
  }

  const auto& segs = listing->segments;
  if (!segs.empty() && segs.front().window > report->last_window + 1 && !salvage) {
    return util::Status::Error(fmt::format(
        "the log starts at window {} but the newest usable checkpoint ends at window {}: "
        "segments are missing (start with --salvage to recover what is there)",
        segs.front().window, report->last_window));
  }
  for (size_t i = 0; i < segs.size(); ++i) {
    const std::string& path = segs[i].path;
    bool last = i + 1 == segs.size();
    auto data = ReadWholeFile(path);
    if (!data.ok()) return data.status();
    ++report->segments;
    BlockReader reader(*data, kSegmentMagic);
    uint64_t blocks_here = 0;
    Block b;
    ReadStatus st = ReadStatus::kEnd;
    std::string problem;
    uint64_t problem_offset = 0;
    for (;;) {
      st = reader.Next(&b);
      if (st != ReadStatus::kBlock) break;
      if (b.type != BlockType::kWindow) {
        st = ReadStatus::kCorrupt;
        problem = fmt::format("unexpected block type {} at offset {}", static_cast<int>(b.type),
                              b.offset);
        problem_offset = b.offset;
        break;
      }
      util::Reader peek(b.payload);
      uint64_t window = 0;
      (void)peek.Varint(&window);
      if (window <= report->last_window) continue;  // covered by the checkpoint
      if (report->last_window != 0 && window != report->last_window + 1 && !salvage) {
        st = ReadStatus::kCorrupt;
        problem = fmt::format("window {} at offset {} follows window {}: windows are missing",
                              window, b.offset, report->last_window);
        problem_offset = b.offset;
        break;
      }
      uint64_t n = 0;
      if (!DecodeWindowBlock(b.payload, visitor, &window, &n)) {
        st = ReadStatus::kCorrupt;
        problem = fmt::format("malformed records in window {} at offset {}", window, b.offset);
        problem_offset = b.offset;
        break;
      }
      report->last_window = window;
      report->records += n;
      ++report->blocks;
      ++blocks_here;
    }
    if (st == ReadStatus::kEnd) {
      if (last && reader.valid_end() == kFileHeaderSize) {
        // Created just before a crash, never written: the next writer needs its name.
        if (auto s = RemoveEmptySegment(dir, path); !s.ok()) return s;
      } else if (last && data->size() > reader.valid_end()) {
        // Give back the zeros preallocated after the last block (the writer that
        // would have trimmed them on close was killed); nothing appends here again.
        (void)TruncateFile(path, reader.valid_end());
      }
      continue;
    }
    if (problem.empty()) {
      problem = reader.header_ok() ? reader.error() : fmt::format("header: {}", reader.error());
      problem_offset = reader.header_ok() ? reader.error_offset() : 0;
    }
    // A last segment whose header is short or still all zeros was being created.
    bool unwritten =
        !reader.header_ok() && last &&
        (data->size() < kFileHeaderSize || data->find_first_not_of('\0') == std::string::npos);
    if (st == ReadStatus::kTorn || unwritten) {
      if (!last) {
        st = ReadStatus::kCorrupt;  // only the newest segment can have been cut short
      } else {
        report->torn_file = path;
        report->torn_offset = reader.valid_end();
        report->torn_bytes = reader.data_end() - reader.valid_end();
        if (auto s = CutFile(dir, path, *data, reader.valid_end(), reader.data_end(), "torn",
                             &report->torn_saved_as);
            !s.ok()) {
          return s;
        }
        if (blocks_here == 0) {
          if (auto s = RemoveEmptySegment(dir, path); !s.ok()) return s;
        }
        continue;
      }
    }
    if (!salvage) {
      return util::Status::Error(fmt::format(
          "corrupt write-ahead log: {}: {} (start with --salvage to recover the log up to "
          "that point; the rest is moved aside)",
          path, problem));
    }
    std::string saved;
    if (auto s = CutFile(dir, path, *data, problem_offset, data->size(), "salvaged", &saved);
        !s.ok()) {
      return s;
    }
    report->warnings.push_back(
        fmt::format("salvage: {}: {}; kept windows up to {}, moved the rest of the file to {}",
                    path, problem, report->last_window, saved));
    for (size_t k = i + 1; k < segs.size(); ++k) {
      std::string moved = segs[k].path + ".salvaged";
      ::rename(segs[k].path.c_str(), moved.c_str());
      report->warnings.push_back(fmt::format("salvage: moved {} aside to {}", segs[k].path, moved));
    }
    if (blocks_here == 0) ::unlink(path.c_str());
    if (auto s = FsyncDir(dir); !s.ok()) return s;  // the renames and the unlink
    break;
  }
  return util::Status::Ok();
}

}  // namespace conv::wal

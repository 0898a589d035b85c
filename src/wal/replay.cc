#include "wal/replay.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>
#include <vector>

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
  void OnLease(const LeaseRecord&) override {}
  void OnSchema(const SchemaRecord&) override {}
};

// The head of a WINDOW or WINDOW_PART block; `records` is the rest of the payload.
bool DecodeHeadRecords(const WindowHead& h, RecordVisitor& v) {
  util::Reader r(h.records);
  return DecodeRecords(r, h.n_records, v) && r.done();
}

// Counts a checkpoint's entities per schema: runs of CLAIM records naming one id (a
// checkpoint writes an entity's claims together). Counters of consecutive parts of
// a checkpoint add up (Add) to the count of the whole.
class EntityCounter : public NullVisitor {
 public:
  void OnClaim(const ClaimRecord& r) override {
    if (!claims_ || r.schema != last_schema_ || r.id != last_id_) {
      if (r.schema >= entities.size()) entities.resize(r.schema + 1, 0);
      ++entities[r.schema];
      if (!claims_) {
        first_schema_ = r.schema;
        first_id_ = r.id;
      }
      claims_ = true;
      last_schema_ = r.schema;
      last_id_ = r.id;  // into the checkpoint's bytes, which outlive the pass
    }
  }
  // Counts `next`, the part right after what this one counted: a run of claims that
  // spans the two is one entity.
  void Add(const EntityCounter& next) {
    if (!next.claims_) return;
    if (next.entities.size() > entities.size()) entities.resize(next.entities.size(), 0);
    for (size_t schema = 0; schema < next.entities.size(); ++schema)
      entities[schema] += next.entities[schema];
    if (claims_ && next.first_schema_ == last_schema_ && next.first_id_ == last_id_) {
      --entities[last_schema_];
    }
    claims_ = true;
    last_schema_ = next.last_schema_;
    last_id_ = next.last_id_;
  }
  std::vector<uint64_t> entities;  // by schema id

 private:
  bool claims_ = false;  // whether a claim was counted
  uint32_t first_schema_ = 0;
  std::string_view first_id_;
  uint32_t last_schema_ = 0;
  std::string_view last_id_;
};

// Delivers one window, given all its blocks (WINDOW_PART blocks, then its WINDOW
// block): OnWindow, then every record in order. The window is checked whole first,
// so that it is delivered whole or not at all: a malformed record ends recovery
// (or, with salvage, the log) before its window, never inside it.
bool DeliverWindow(const std::vector<WindowHead>& blocks, RecordVisitor& v, uint64_t* records) {
  NullVisitor null;
  for (const WindowHead& h : blocks) {
    if (!DecodeHeadRecords(h, null)) return false;
  }
  v.OnWindow(blocks.back().window);
  *records = 0;
  for (const WindowHead& h : blocks) {
    if (!DecodeHeadRecords(h, v)) return false;
    *records += h.n_records;
  }
  return true;
}

bool DecodeCheckpointData(std::string_view payload, RecordVisitor& v, uint64_t* records) {
  util::Reader r(payload);
  uint64_t n;
  if (!r.Varint(&n)) return false;
  *records += n;
  return DecodeRecords(r, n, v) && r.done();
}

// Decodes `blocks` (CKPT_DATA payloads) into `counter` on up to `threads` threads,
// each a consecutive share of them. Returns the index of the first malformed block,
// or blocks.size() when all decode.
size_t CountCheckpointBlocks(const std::vector<Block>& blocks, unsigned threads,
                             EntityCounter* counter) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  const size_t parts = std::max<size_t>(1, std::min<size_t>(threads, blocks.size()));
  std::vector<EntityCounter> counters(parts);
  std::vector<size_t> bad(parts, blocks.size());
  auto count = [&](size_t part) {
    uint64_t records = 0;
    for (size_t i = blocks.size() * part / parts; i < blocks.size() * (part + 1) / parts; ++i) {
      if (!DecodeCheckpointData(blocks[i].payload, counters[part], &records)) {
        bad[part] = i;
        return;
      }
    }
  };
  std::vector<std::thread> helpers;
  for (size_t part = 1; part < parts; ++part)
    helpers.emplace_back(count, part);
  count(0);
  for (auto& t : helpers)
    t.join();
  for (size_t part = 0; part < parts; ++part) {
    if (bad[part] != blocks.size()) return bad[part];
    counter->Add(counters[part]);
  }
  return blocks.size();
}

// A checkpoint read back whole (CheckCheckpoint), ready to replay.
struct CheckedCheckpoint {
  uint64_t window = 0;
  uint64_t records = 0;
  std::vector<Block> blocks;  // its CKPT_DATA blocks, in order (views into its bytes)
  EntityCounter counter;
};

// Checks a whole checkpoint held in `data`: CRCs, block order, every record, the end
// block's count; counts its entities. The blocks are framed in order, then their
// records decoded on several threads; the problem reported is the first in the file.
util::Status CheckCheckpoint(const std::string& data, const std::string& path,
                             const ReadOptions& options, CheckedCheckpoint* out) {
  uint64_t* window = &out->window;
  uint64_t* records = &out->records;
  std::vector<Block>& blocks = out->blocks;
  BlockReader reader(data, kCheckpointMagic, options.max_block_payload);
  if (!reader.header_ok()) {
    return util::Status::Error(fmt::format("checkpoint '{}': {}", path, reader.error()));
  }
  *window = reader.header_window();
  *records = 0;
  util::Status framing = util::Status::Ok();  // the first problem outside the records
  bool ended = false;
  Block b;
  auto malformed = [&path](uint64_t offset) {
    return util::Status::Error(
        fmt::format("checkpoint '{}': malformed records in the block at offset {}", path, offset));
  };
  for (;;) {
    ReadStatus st = reader.Next(&b);
    if (st == ReadStatus::kEnd) break;
    if (st != ReadStatus::kBlock) {
      framing = util::Status::Error(fmt::format("checkpoint '{}': {}", path, reader.error()));
      break;
    }
    if (ended) {
      framing = util::Status::Error(
          fmt::format("checkpoint '{}': data after the end block at offset {}", path, b.offset));
      break;
    }
    if (b.type == BlockType::kCheckpointData) {
      util::Reader r(b.payload);
      uint64_t n;
      if (!r.Varint(&n)) {
        framing = malformed(b.offset);
        break;
      }
      *records += n;
      blocks.push_back(b);
    } else if (b.type == BlockType::kCheckpointEnd) {
      util::Reader r(b.payload);
      uint64_t w, total;
      if (!r.Varint(&w) || !r.Varint(&total) || w != *window || total != *records) {
        framing = util::Status::Error(
            fmt::format("checkpoint '{}': end block does not match its content (records {} vs {})",
                        path, total, *records));
        break;
      }
      ended = true;
    } else {
      framing =
          util::Status::Error(fmt::format("checkpoint '{}': unexpected block type {} at offset {}",
                                          path, static_cast<int>(b.type), b.offset));
      break;
    }
  }
  if (framing.ok() && !ended) {
    framing = util::Status::Error(fmt::format("checkpoint '{}' has no end block", path));
  }
  if (size_t bad = CountCheckpointBlocks(blocks, options.check_threads, &out->counter);
      bad != blocks.size()) {
    return malformed(blocks[bad].offset);
  }
  return framing;
}

// Replays a checkpoint CheckCheckpoint read back whole: how many entities of each
// schema it holds (RecordVisitor::OnCheckpointEntities), then its records in order.
void ReplayCheckpoint(const CheckedCheckpoint& c, RecordVisitor& v) {
  const auto& entities = c.counter.entities;
  for (uint32_t schema = 0; schema < entities.size(); ++schema) {
    if (entities[schema] != 0) v.OnCheckpointEntities(schema, entities[schema]);
  }
  uint64_t records = 0;
  for (const Block& b : c.blocks)
    DecodeCheckpointData(b.payload, v, &records);  // decoded whole once already
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

void SchemaCollector::OnSchema(const SchemaRecord& r) {
  SchemaDef d;
  d.id = r.id;
  d.name = std::string(r.name);
  for (uint32_t i = 0; i < r.n_fields; ++i) {
    d.fields.emplace_back(std::string(r.field_names[i]), r.field_types[i]);
  }
  // A log read whole (a replicated stream) repeats them at every segment's head, and
  // again after a takeover: the last definition of an id is the one in force.
  for (SchemaDef& e : defs) {
    if (e.id == d.id) {
      e = std::move(d);
      return;
    }
  }
  defs.push_back(std::move(d));
}

util::Result<std::vector<SchemaDef>> ReadLatestSchemas(const std::string& dir) {
  auto listing = ListDir(dir);
  if (!listing.ok()) return listing.status();
  for (auto it = listing->segments.rbegin(); it != listing->segments.rend(); ++it) {
    auto data = ReadWholeFile(it->path);
    if (!data.ok()) return data.status();
    BlockReader reader(*data, kSegmentMagic);
    Block b;
    if (reader.Next(&b) != ReadStatus::kBlock) continue;
    if (b.type != BlockType::kWindow && b.type != BlockType::kWindowPart) continue;
    // The schema records lead the segment's first block (a part of a split window
    // holds whole records).
    SchemaCollector c;
    WindowHead h;
    if (ParseWindowHead(b.payload, &h) && DecodeHeadRecords(h, c)) return c.defs;
  }
  for (auto it = listing->checkpoints.rbegin(); it != listing->checkpoints.rend(); ++it) {
    auto data = ReadWholeFile(it->path);
    if (!data.ok()) return data.status();
    CheckedCheckpoint checked;
    if (!CheckCheckpoint(*data, it->path, {}, &checked).ok()) continue;
    SchemaCollector c;
    ReplayCheckpoint(checked, c);
    return c.defs;
  }
  return std::vector<SchemaDef>{};
}

util::Status ReplayCheckpointImage(const std::string& data, const std::string& name,
                                   RecordVisitor& visitor, uint64_t* window, uint64_t* records) {
  CheckedCheckpoint checked;
  if (auto st = CheckCheckpoint(data, name, {}, &checked); !st.ok()) return st;
  ReplayCheckpoint(checked, visitor);
  *window = checked.window;
  *records = checked.records;
  return util::Status::Ok();
}

util::Status ReplayWindowImage(std::string_view blocks, uint64_t window, RecordVisitor& visitor,
                               uint64_t* records) {
  std::string data;
  AppendFileHeader(data, kSegmentMagic, window);
  data.append(blocks);
  BlockReader reader(data, kSegmentMagic);
  std::vector<WindowHead> heads;
  bool complete = false;
  Block b;
  for (;;) {
    ReadStatus st = reader.Next(&b);
    if (st == ReadStatus::kEnd) break;
    if (st != ReadStatus::kBlock) {
      return util::Status::Error(fmt::format("window {}: {}", window, reader.error()));
    }
    WindowHead h;
    if (complete || (b.type != BlockType::kWindow && b.type != BlockType::kWindowPart) ||
        !ParseWindowHead(b.payload, &h) || h.window != window) {
      return util::Status::Error(fmt::format("window {}: unexpected block (type {}) at offset {}",
                                             window, static_cast<int>(b.type),
                                             b.offset - kFileHeaderSize));
    }
    heads.push_back(h);
    complete = b.type == BlockType::kWindow;
  }
  if (!complete) {
    return util::Status::Error(fmt::format("window {}: its WINDOW block is missing", window));
  }
  if (!DeliverWindow(heads, visitor, records)) {
    return util::Status::Error(fmt::format("window {}: malformed records", window));
  }
  return util::Status::Ok();
}

util::Status ForEachWindowImage(
    const std::string& dir, uint64_t after,
    const std::function<util::Status(uint64_t window, std::string_view blocks)>& f) {
  auto listing = ListDir(dir);
  if (!listing.ok()) return listing.status();
  const auto& segs = listing->segments;
  for (size_t i = 0; i < segs.size(); ++i) {
    // A segment whose successor starts at or before `after` holds nothing wanted.
    if (i + 1 < segs.size() && segs[i + 1].window <= after + 1) continue;
    auto data = ReadWholeFile(segs[i].path);
    if (!data.ok()) return data.status();
    BlockReader reader(*data, kSegmentMagic);
    if (!reader.header_ok()) {
      return util::Status::Error(fmt::format("segment '{}': {}", segs[i].path, reader.error()));
    }
    size_t start = 0;  // of the window's first block
    bool open = false;
    Block b;
    for (;;) {
      ReadStatus st = reader.Next(&b);
      if (st == ReadStatus::kEnd) break;
      if (st != ReadStatus::kBlock) {
        return util::Status::Error(fmt::format("segment '{}': {}", segs[i].path, reader.error()));
      }
      WindowHead h;
      if ((b.type != BlockType::kWindow && b.type != BlockType::kWindowPart) ||
          !ParseWindowHead(b.payload, &h)) {
        return util::Status::Error(
            fmt::format("segment '{}': unexpected block at offset {}", segs[i].path, b.offset));
      }
      if (!open) start = b.offset;
      open = b.type == BlockType::kWindowPart;
      if (open || h.window <= after) continue;
      size_t end = b.offset + kBlockHeaderSize + b.payload.size();
      if (auto s = f(h.window, std::string_view(*data).substr(start, end - start)); !s.ok()) {
        return s;
      }
    }
  }
  return util::Status::Ok();
}

util::Status Recover(const std::string& dir, RecordVisitor& visitor, bool salvage,
                     RecoveryReport* report, ReadOptions options) {
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
    CheckedCheckpoint checked;
    if (auto st = CheckCheckpoint(*data, it->path, options, &checked); !st.ok()) {
      report->warnings.push_back(fmt::format("ignoring damaged checkpoint: {}", st.message()));
      continue;
    }
    ReplayCheckpoint(checked, visitor);
    uint64_t w = checked.window, n = checked.records;
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
    BlockReader reader(*data, kSegmentMagic, options.max_block_payload);
    uint64_t blocks_here = 0;  // blocks of the windows delivered from this segment
    // The blocks read so far of a window split over several (format.h): it is
    // delivered once its WINDOW block is read, and cut off whole when that is missing.
    std::vector<WindowHead> parts;
    uint64_t parts_offset = 0;  // of the first of `parts`
    Block b;
    ReadStatus st = ReadStatus::kEnd;
    std::string problem;
    uint64_t problem_offset = 0;
    for (;;) {
      st = reader.Next(&b);
      if (st != ReadStatus::kBlock) break;
      WindowHead h;
      if (b.type != BlockType::kWindow && b.type != BlockType::kWindowPart) {
        st = ReadStatus::kCorrupt;
        problem = fmt::format("unexpected block type {} at offset {}", static_cast<int>(b.type),
                              b.offset);
        problem_offset = b.offset;
        break;
      }
      if (!ParseWindowHead(b.payload, &h)) {
        st = ReadStatus::kCorrupt;
        problem = fmt::format("malformed window block at offset {}", b.offset);
        problem_offset = b.offset;
        break;
      }
      if (!parts.empty() && h.window != parts.back().window) {
        st = ReadStatus::kCorrupt;
        problem = fmt::format(
            "a block of window {} at offset {} inside window {} (from offset {}): window {} is "
            "unfinished",
            h.window, b.offset, parts.back().window, parts_offset, parts.back().window);
        problem_offset = parts_offset;
        break;
      }
      if (h.window <= report->last_window) continue;  // covered by the checkpoint
      if (parts.empty() && report->last_window != 0 && h.window != report->last_window + 1 &&
          !salvage) {
        st = ReadStatus::kCorrupt;
        problem = fmt::format("window {} at offset {} follows window {}: windows are missing",
                              h.window, b.offset, report->last_window);
        problem_offset = b.offset;
        break;
      }
      if (parts.empty()) parts_offset = b.offset;
      parts.push_back(h);
      if (b.type == BlockType::kWindowPart) continue;
      uint64_t n = 0;
      if (!DeliverWindow(parts, visitor, &n)) {
        st = ReadStatus::kCorrupt;
        problem =
            fmt::format("malformed records in window {} at offset {}", h.window, parts_offset);
        problem_offset = parts_offset;
        break;
      }
      report->last_window = h.window;
      report->records += n;
      report->blocks += parts.size();
      blocks_here += parts.size();
      parts.clear();
    }
    if (st == ReadStatus::kEnd && parts.empty()) {
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
    if (st == ReadStatus::kEnd) {
      // The data ends inside a split window: its WINDOW block never reached the file.
      st = ReadStatus::kTorn;
      problem =
          fmt::format("window {} at offset {} is unfinished: the data ends before its last block",
                      parts.back().window, parts_offset);
      problem_offset = parts_offset;
    }
    if (problem.empty()) {
      problem = reader.header_ok() ? reader.error() : fmt::format("header: {}", reader.error());
      problem_offset = reader.header_ok() ? reader.error_offset() : 0;
    }
    // Whatever is cut, a window that began before the damage goes whole.
    if (!parts.empty()) problem_offset = std::min(problem_offset, parts_offset);
    // A last segment whose header is short or still all zeros was being created.
    bool unwritten =
        !reader.header_ok() && last &&
        (data->size() < kFileHeaderSize || data->find_first_not_of('\0') == std::string::npos);
    if (st == ReadStatus::kTorn || unwritten) {
      if (!last) {
        st = ReadStatus::kCorrupt;  // only the newest segment can have been cut short
      } else {
        uint64_t cut = parts.empty() ? reader.valid_end() : parts_offset;
        report->torn_file = path;
        report->torn_offset = cut;
        report->torn_bytes = reader.data_end() - cut;
        if (auto s =
                CutFile(dir, path, *data, cut, reader.data_end(), "torn", &report->torn_saved_as);
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

// Engine micro-benchmarks, no network:
//   apply   one partition applying the page's 70/20/10 mix on `player`
//   memory  RSS per entity with one claim, at 1,000,000 player entities
//   walk    a bootstrap walk (feed.h) over `--entities` players with a claim of each
//           of `--sources` sources, one partition, its output taken as it comes
//   recover Engine::Recover from a checkpoint of `--entities` players, each with a
//           claim of `--sources` sources (written once, then recovered `--runs` times)
// Usage: convergence_microbench [apply|memory|walk|recover|all] [--runs N] [--ops N]
//        [--entities N] [--sources N]
//        [--watched] (apply as with a subscriber on the schema)
//        [--log] (seals encode the window's WAL records, as with a data dir)

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/feed.h"
#include "engine/op.h"
#include "engine/partition.h"
#include "engine/partition_driver.h"
#include "engine/record.h"
#include "util/clock.h"
#include "wal/checkpoint.h"
#include "wal/records.h"

using namespace conv;

namespace {

struct Workload {
  std::vector<std::string> ids;
  std::vector<std::string> full;     // ASSERT record values (mask separately)
  std::vector<std::string> partial;  // PATCH record values
  uint64_t full_mask = 0;
  uint64_t partial_mask = 0;
};

std::string PlayerValues(const engine::Schema& s, uint64_t* mask, std::mt19937_64& rng, bool full,
                         size_t i) {
  engine::RecordBuilder b(s);
  if (full) {
    (void)b.Set("name", fmt::format("player-{}", i));
    (void)b.Set("team", std::string(i % 2 ? "red" : "blue"));
    (void)b.Set("online", true);
    (void)b.Set("level", static_cast<int64_t>(rng() % 100));
  }
  (void)b.Set("x", static_cast<double>(rng() % 10000) / 10);
  (void)b.Set("y", static_cast<double>(rng() % 10000) / 10);
  (void)b.Set("z", static_cast<double>(rng() % 10000) / 10);
  (void)b.Set("health", static_cast<int64_t>(rng() % 100));
  (void)b.Set("score", static_cast<int64_t>(rng() % 100000));
  std::string rec = b.Encode();
  engine::RecordView v;
  (void)engine::ParseRecord(s, rec, &v);
  *mask = v.mask;
  return std::string(v.values);
}

size_t RssBytes() {
  std::ifstream in("/proc/self/statm");
  size_t pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

std::vector<engine::OpBatch> MakeBatches(const engine::Schema& s, size_t entities, size_t ops,
                                         uint32_t source, uint64_t* seq, std::mt19937_64& rng) {
  std::vector<std::string> ids;
  for (size_t i = 0; i < entities; ++i)
    ids.push_back(fmt::format("p-{}", i));
  std::vector<engine::OpBatch> batches;
  engine::OpBatch batch;
  for (size_t k = 0; k < ops; ++k) {
    size_t e = rng() % entities;
    unsigned roll = static_cast<unsigned>(rng() % 100);
    engine::OpView op{};
    op.source = source;
    op.schema = s.id;
    op.seq = ++*seq;
    op.ts = 1'700'000'000'000'000 + k;
    op.id = ids[e];
    std::string values;
    if (roll < 70) {
      op.kind = engine::OpKind::kAssert;
      values = PlayerValues(s, &op.mask, rng, true, e);
    } else if (roll < 90) {
      op.kind = engine::OpKind::kPatch;
      values = PlayerValues(s, &op.mask, rng, false, e);
    } else {
      op.kind = engine::OpKind::kRetract;
    }
    op.values = values;
    batch.Append(op);
    if (batch.count() == 256) {
      batches.push_back(std::move(batch));
      batch = engine::OpBatch();
    }
  }
  if (!batch.empty()) batches.push_back(std::move(batch));
  return batches;
}

void BenchApply(int runs, size_t ops, size_t entities, bool watched, bool log) {
  engine::SchemaSet schemas;
  const engine::Schema& player = *schemas.Find(engine::kPlayerSchemaId);
  std::vector<double> rates;
  for (int r = 0; r < runs; ++r) {
    engine::SourceTable sources;
    uint32_t source = *sources.Intern("bench");
    engine::SealQueue seals;
    engine::Partition part(0, schemas, sources, 1, &seals, log);
    // With a subscriber: keep each entity's state at its window start, and at each
    // seal emit its change (changes.h).
    if (watched) engine::PartitionDriver(part).Watch(engine::kPlayerSchemaId, 1);
    std::mt19937_64 rng(42 + static_cast<uint64_t>(r));
    uint64_t seq = 0;
    auto batches = MakeBatches(player, entities, ops, source, &seq, rng);
    uint64_t start = util::MonoNanos();
    uint64_t window = 0;
    for (size_t b = 0; b < batches.size(); ++b) {
      engine::PartitionDriver(part).Apply(batches[b]);
      if (b % 40 == 39) (void)engine::PartitionDriver(part).Seal(++window);  // ~10k ops per window
    }
    (void)engine::PartitionDriver(part).Seal(++window);
    double secs = static_cast<double>(util::MonoNanos() - start) / 1e9;
    rates.push_back(static_cast<double>(ops) / secs);
    fmt::print("apply run {}: {:.0f} ops/s ({} ops, {} entities live)\n", r + 1, rates.back(), ops,
               part.counters().entities);
  }
  std::sort(rates.begin(), rates.end());
  fmt::print("apply median: {:.0f} ops/s per partition thread (70/20/10 mix, {} entities{}{})\n",
             rates[rates.size() / 2], entities, watched ? ", watched" : "",
             log ? ", WAL records encoded" : "");
}

// An ASSERT of a full player record from `source` for each of `entities` ids
// (`id_format` of the index), applied in batches of 1,024, a window sealed after each:
// the transient memory is the same few hundred KiB throughout.
void AssertPlayers(engine::Partition& part, const engine::Schema& player, uint32_t source,
                   size_t entities, fmt::format_string<size_t&> id_format, std::mt19937_64& rng,
                   uint64_t* window) {
  for (size_t i = 0; i < entities;) {
    engine::OpBatch batch;
    for (size_t k = 0; k < 1024 && i < entities; ++k, ++i) {
      std::string id = fmt::format(id_format, i);
      engine::OpView op{};
      op.kind = engine::OpKind::kAssert;
      op.source = source;
      op.schema = player.id;
      op.seq = i + 1;
      op.ts = 1'700'000'000'000'000 + i;
      op.id = id;
      std::string values = PlayerValues(player, &op.mask, rng, true, i);
      op.values = values;
      batch.Append(op);
    }
    engine::PartitionDriver(part).Apply(batch);
    (void)engine::PartitionDriver(part).Seal(++*window);
  }
}

void BenchMemory(size_t entities) {
  engine::SchemaSet schemas;
  const engine::Schema& player = *schemas.Find(engine::kPlayerSchemaId);
  engine::SourceTable sources;
  uint32_t source = *sources.Intern("bench");
  engine::SealQueue seals;
  std::mt19937_64 rng(7);
  engine::Partition part(0, schemas, sources, 1, &seals);
  (void)engine::PartitionDriver(part).Seal(1);
  // Ops are made in small batches as they are applied: the transient memory is the
  // same few hundred KiB throughout, so RSS growth is the partition's.
  size_t before = RssBytes();
  uint64_t window = 1;
  AssertPlayers(part, player, source, entities, "player-{:07}", rng, &window);
  size_t after = RssBytes();
  auto c = part.counters();
  fmt::print(
      "memory: {} entities, RSS +{:.1f} MiB = {:.0f} bytes/entity (claim blocks {:.0f} "
      "bytes/entity)\n",
      c.entities, static_cast<double>(after - before) / (1 << 20),
      static_cast<double>(after - before) / static_cast<double>(entities),
      static_cast<double>(c.claim_bytes) / static_cast<double>(entities));
}

// One partition holding `entities` players, each with an ASSERT of each of `sources`.
void Populate(engine::Partition& part, const engine::SchemaSet& schemas, engine::SourceTable& table,
              size_t entities, size_t sources) {
  const engine::Schema& player = *schemas.Find(engine::kPlayerSchemaId);
  std::mt19937_64 rng(7);
  uint64_t window = 0;
  for (size_t s = 0; s < sources; ++s) {
    uint32_t source = *table.Intern(fmt::format("source-{}", s));
    AssertPlayers(part, player, source, entities, "p-{}", rng, &window);
  }
}

void BenchWalk(int runs, size_t entities, size_t sources) {
  engine::SchemaSet schemas;
  engine::SourceTable table;
  engine::SealQueue seals;
  engine::Partition part(0, schemas, table, 1, &seals);
  Populate(part, schemas, table, entities, sources);
  uint64_t window = 1'000'000;
  std::vector<double> secs;
  for (int r = 0; r < runs; ++r) {
    auto walk = std::make_shared<engine::FeedWalk>();
    walk->schema = engine::kPlayerSchemaId;
    uint64_t start = util::MonoNanos();
    engine::PartitionDriver(part).StartFeed(++window, {engine::kPlayerSchemaId, 0, walk});
    std::deque<std::string> chunks;
    uint64_t bytes = 0;
    for (bool done = false; !done;) {
      engine::PartitionDriver(part).AdvanceWalks();
      done = walk->Take(&chunks);
      for (const auto& c : chunks)
        bytes += c.size();
      chunks.clear();
    }
    secs.push_back(static_cast<double>(util::MonoNanos() - start) / 1e9);
    fmt::print("walk run {}: {:.3f} s, {} bytes ({:.0f} ns per entity)\n", r + 1, secs.back(),
               bytes, secs.back() * 1e9 / static_cast<double>(entities));
  }
  std::sort(secs.begin(), secs.end());
  fmt::print("walk median: {:.3f} s ({} entities, {} claims each)\n", secs[secs.size() / 2],
             entities, sources);
}

// A checkpoint of `entities` players with one claim of each of `sources` sources,
// in `dir`; the records go in blocks of about 1 MiB, as a checkpoint's chunks do.
void WriteCheckpoint(const std::string& dir, const engine::SchemaSet& schemas, size_t entities,
                     size_t sources) {
  const engine::Schema& player = *schemas.Find(engine::kPlayerSchemaId);
  uint64_t schema_count = 0;
  std::string schema_records = engine::EncodeSchemaRecords(schemas, &schema_count);
  auto writer = wal::CheckpointWriter::Begin(dir, 1, schema_records, schema_count);
  if (!writer.ok()) {
    fmt::print(stderr, "checkpoint: {}\n", writer.message());
    std::exit(1);
  }
  std::string records;
  uint64_t count = 0;
  for (size_t s = 0; s < sources; ++s) {
    wal::PutSource(records, fmt::format("source-{}", s), 1);
    ++count;
  }
  std::mt19937_64 rng(11);
  for (size_t i = 0; i < entities; ++i) {
    std::string id = fmt::format("p-{}", i);
    for (size_t s = 0; s < sources; ++s) {
      uint64_t mask = 0;
      std::string values = PlayerValues(player, &mask, rng, true, i);
      wal::PutClaim(records, player.id, id, fmt::format("source-{}", s), mask, true,
                    1'700'000'000'000'000 + i, nullptr, values);
      ++count;
    }
    if (records.size() >= (1u << 20)) {
      if (auto st = (*writer)->Add(records, count); !st.ok()) {
        fmt::print(stderr, "checkpoint: {}\n", st.message());
        std::exit(1);
      }
      records.clear();
      count = 0;
    }
  }
  if (auto st = (*writer)->Add(records, count); !st.ok() || !(st = (*writer)->Finish()).ok()) {
    fmt::print(stderr, "checkpoint: {}\n", st.message());
    std::exit(1);
  }
}

void BenchRecover(int runs, size_t entities, size_t sources) {
  engine::SchemaSet schemas;
  char tmpl[] = "/tmp/convergence-recover-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    fmt::print(stderr, "cannot make a temporary directory\n");
    std::exit(1);
  }
  std::string dir = tmpl;
  WriteCheckpoint(dir, schemas, entities, sources);
  std::vector<double> secs;
  for (int r = 0; r < runs; ++r) {
    engine::SourceTable table;
    engine::EngineOptions eo;
    eo.data_dir = dir;
    eo.checkpoint_interval = std::chrono::microseconds(0);
    engine::Engine engine(eo, schemas, table);
    wal::RecoveryReport report;
    uint64_t start = util::MonoNanos();
    if (auto st = engine.Recover(false, &report); !st.ok()) {
      fmt::print(stderr, "recover: {}\n", st.message());
      std::exit(1);
    }
    secs.push_back(static_cast<double>(util::MonoNanos() - start) / 1e9);
    uint64_t held = engine.Stats().totals.entities;
    fmt::print("recover run {}: {:.3f} s, {} entities, {} records ({:.0f} records/s)\n", r + 1,
               secs.back(), held, report.checkpoint_records,
               static_cast<double>(report.checkpoint_records) / secs.back());
    if (held != entities) {
      fmt::print(stderr, "recover: {} entities recovered of {}\n", held, entities);
      std::exit(1);
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::sort(secs.begin(), secs.end());
  fmt::print("recover median: {:.3f} s ({} entities, {} claims each)\n", secs[secs.size() / 2],
             entities, sources);
}

}  // namespace

int main(int argc, char** argv) {
  std::string what = "all";
  int runs = 5;
  size_t ops = 5'000'000;
  size_t entities = 10'000;
  size_t memory_entities = 1'000'000;
  bool watched = false;
  bool log = false;
  size_t sources = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        fmt::print(stderr, "{} needs a value\n", a);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--runs")
      runs = std::stoi(next());
    else if (a == "--ops")
      ops = std::stoul(next());
    else if (a == "--entities")
      entities = std::stoul(next());
    else if (a == "--watched")
      watched = true;
    else if (a == "--log")
      log = true;
    else if (a == "--sources")
      sources = std::stoul(next());
    else if (a == "--memory-entities")
      memory_entities = std::stoul(next());
    else if (a == "apply" || a == "memory" || a == "walk" || a == "recover" || a == "all")
      what = a;
    else {
      fmt::print(
          stderr,
          "usage: convergence_microbench [apply|memory|walk|recover|all] [--runs N] [--ops N] "
          "[--entities N] [--sources N] [--memory-entities N] [--watched] [--log]\n");
      return 2;
    }
  }
  if (what == "apply" || what == "all") BenchApply(runs, ops, entities, watched, log);
  if (what == "memory" || what == "all") BenchMemory(memory_entities);
  if ((what == "recover" || what == "walk") && sources == 0) {
    fmt::print(stderr, "--sources must be at least 1\n");
    return 2;
  }
  if (what == "walk") BenchWalk(runs, entities, sources);
  if (what == "recover") BenchRecover(runs, entities, sources);
  return 0;
}

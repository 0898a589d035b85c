// Point reads against a partition thread's long work: a QUERY from another thread is
// answered while the partition thread is in the middle of retracting a source,
// walking a schema for a subscriber, filling a checkpoint chunk or sealing a large
// window, not once that work ends.
//
// The partition thread stops inside the work (Partition::set_step_hook) until a read
// started on another thread has returned, or a generous bound has passed. The read
// can return in time only if the work holds no lock the read needs there; the work
// then goes on, so the read was answered before it ended. The bound is a liveness
// check, not a latency target.

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/changes.h"
#include "engine/feed.h"
#include "engine/op.h"
#include "engine/partition.h"
#include "engine/partition_driver.h"
#include "engine/queues.h"
#include "engine/schema.h"
#include "engine/sources.h"
#include "engine/test_records.h"

using namespace conv;
using Work = engine::Partition::Work;

namespace {

constexpr auto kBound = std::chrono::seconds(30);
constexpr size_t kEntities = size_t{1} << 18;  // thousands of chunks of work
constexpr const char* kProbeId = "p-7";

// The partition's step hook: at the `at`-th step of `work`, from inside that step,
// reads kProbeId on another thread and waits for the read to return (at most
// kBound). Set before the partition thread starts; the Rig below owns it, so it
// outlives that thread.
struct ReadMidWork {
  ReadMidWork(engine::Partition* p, const engine::Schema* s, Work w, int step)
      : part(p), schema(s), work(w), at(step) {
    part->set_step_hook([this](Work kind) { OnStep(kind); });
  }
  ReadMidWork(const ReadMidWork&) = delete;
  ReadMidWork& operator=(const ReadMidWork&) = delete;
  ~ReadMidWork() {
    if (reader.joinable()) reader.join();
  }

  engine::Partition* const part;
  const engine::Schema* const schema;
  const Work work;
  const int at;

  // Owner thread while the work runs; the test reads them after it ended.
  int steps = 0;
  bool answered = false;  // the read returned while the work was stopped at step `at`
  std::thread reader;
  // Reader thread; read after joining it.
  bool found = false;
  engine::QueryResult result;

  void OnStep(Work w) {
    if (w != work || ++steps != at) return;
    std::promise<void> done;
    std::future<void> returned = done.get_future();
    reader = std::thread([this, done = std::move(done)]() mutable {
      found = part->Query(*schema, kProbeId, true, &result);
      done.set_value();
    });
    answered = returned.wait_for(kBound) == std::future_status::ready;
  }
  // After the work ended.
  void Check() {
    if (reader.joinable()) reader.join();
    REQUIRE(steps >= at);  // the read was issued
    CHECK(answered);       // and returned while the work was stopped mid-way
    CHECK(steps > at);     // which went on afterwards
  }
};

// One partition (one lane) holding `entities` player entities p-0, p-1, ..., each
// with one claim of source "a" (score = its number), in the open window 1. Tests set
// the step hook, then Start() the partition thread.
struct Rig {
  engine::SchemaSet schemas;
  engine::SourceTable sources;
  engine::SealQueue seals;
  std::unique_ptr<engine::Partition> part;
  const engine::Schema* player = schemas.Find(engine::kPlayerSchemaId);
  uint32_t a = 0;
  std::thread thread;
  std::unique_ptr<moodycamel::ProducerToken> token;
  std::unique_ptr<ReadMidWork> probe;  // destroyed after ~Rig joined the thread, before `part`

  explicit Rig(bool log_changes = false, size_t entities = kEntities) {
    part = std::make_unique<engine::Partition>(0, schemas, sources, 1, &seals, log_changes);
    a = *sources.Intern("a");
    engine::OpBatch batch;
    for (size_t i = 0; i < entities; ++i) {
      std::string id = "p-" + std::to_string(i);
      auto [mask, values] = testing::EncodeFields(*player, {{"score", static_cast<int64_t>(i)}});
      batch.Append({engine::OpKind::kAssert, a, player->id, i + 1, 1000 + i, id, mask, values});
      if (batch.count() == 4096 || i + 1 == entities) {
        engine::PartitionDriver(*part).Apply(batch);
        batch = engine::OpBatch();
      }
    }
    REQUIRE(part->counters().entities == entities);
  }
  void Start() {
    token = std::make_unique<moodycamel::ProducerToken>(part->queue());
    thread = std::thread([this] { part->Run(); });
  }
  ~Rig() {
    if (!thread.joinable()) return;
    engine::PartitionMsg stop;
    stop.kind = engine::PartitionMsg::Kind::kStop;
    part->queue().enqueue(*token, stop);
    thread.join();
  }

  // Before Start().
  ReadMidWork& Probe(Work work, int at) {
    probe = std::make_unique<ReadMidWork>(part.get(), player, work, at);
    return *probe;
  }
  void Send(engine::PartitionMsg m) {
    m.lane = 0;
    part->queue().enqueue(*token, m);
  }
  void SendOps(engine::OpBatch* batch) {
    engine::PartitionMsg m;
    m.kind = engine::PartitionMsg::Kind::kOps;
    m.batch = batch;  // the partition deletes it
    part->backlog().fetch_add(static_cast<int64_t>(batch->count()));
    Send(m);
  }
  // Closes `window` and waits for its seal.
  engine::PartitionSeal Close(uint64_t window) {
    engine::PartitionMsg m;
    m.kind = engine::PartitionMsg::Kind::kCut;
    m.window = window;
    Send(m);
    engine::PartitionSeal seal;
    seals.wait_dequeue(seal);
    REQUIRE(seal.window == window);
    return seal;
  }
  // The probe entity's state as the partition left it: score 7 from source a.
  void CheckProbeFound(const ReadMidWork& r) {
    REQUIRE(r.found);
    auto [mask, values] = testing::EncodeFields(*player, {{"score", int64_t{7}}});
    CHECK(r.result.record.mask == mask);
    CHECK(r.result.record.values == values);
    REQUIRE(r.result.claims.size() == 1);
    CHECK(r.result.claims[0].source == a);
  }
};

}  // namespace

TEST_CASE("partition reads: a query is answered in the middle of a lease's source retraction") {
  Rig rig;
  (void)engine::PartitionDriver(*rig.part).Seal(
      1);  // the asserts are window 1's, the retraction window 2's
  ReadMidWork& probe = rig.Probe(Work::kRetractSource, 2048);  // of 4096 chunks
  rig.Start();
  engine::PartitionMsg retract;
  retract.kind = engine::PartitionMsg::Kind::kRetractSource;
  retract.source = rig.a;
  retract.window = 5000;  // the retraction's ts
  rig.Send(retract);
  engine::PartitionSeal seal = rig.Close(2);
  probe.Check();
  // Mid-way, the probe entity is either not retracted yet (as asserted) or gone.
  if (probe.found) rig.CheckProbeFound(probe);
  // The retraction itself is whole, as before: every claim went in window 2.
  CHECK(seal.entity_changes == kEntities);
  CHECK(seal.claim_changes == kEntities);
  auto c = rig.part->counters();
  CHECK(c.retracts == kEntities);
  CHECK(c.claims == 0);
  CHECK(c.entities == 0);
}

TEST_CASE("partition reads: a query is answered in the middle of a bootstrap walk") {
  Rig rig;
  ReadMidWork& probe = rig.Probe(Work::kWalk, 16);  // within its first chunk
  rig.Start();
  auto walk = std::make_shared<engine::FeedWalk>();
  walk->schema = engine::kPlayerSchemaId;
  rig.part->AddFeedRequest(1, {engine::kPlayerSchemaId, 1, walk});
  (void)rig.Close(1);  // the walk starts at the end of window 1
  // Consume the walk (it pauses with 1 MiB unconsumed) until it is done.
  size_t entries = 0;
  auto deadline = std::chrono::steady_clock::now() + kBound * 4;
  for (bool done = false; !done;) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::deque<std::string> chunks;
    done = walk->Take(&chunks);
    for (const auto& chunk : chunks) {
      engine::ChangeReader r(chunk);
      engine::ChangeView c;
      while (r.Next(&c))
        ++entries;
    }
    if (!chunks.empty()) {
      rig.part->Wake();
    } else if (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  CHECK(entries == kEntities);
  probe.Check();
  rig.CheckProbeFound(probe);
}

TEST_CASE("partition reads: a query is answered in the middle of a checkpoint chunk") {
  Rig rig;
  (void)engine::PartitionDriver(*rig.part).Seal(1);
  // The first chunk covers kSnapshotChunkBuckets buckets, a step every kApplyChunk.
  constexpr int kStepsPerChunk =
      static_cast<int>(engine::Partition::kSnapshotChunkBuckets / engine::Partition::kApplyChunk);
  ReadMidWork& probe = rig.Probe(Work::kSnapshot, kStepsPerChunk / 2);
  rig.Start();
  uint64_t records = 0;
  engine::SnapshotRequest req;
  while (!req.done) {
    rig.part->RequestSnapshot(&req);
    req.ready.wait();
    records += req.count;
  }
  CHECK(records == kEntities);
  probe.Check();
  rig.CheckProbeFound(probe);
}

TEST_CASE("partition reads: a query is answered in the middle of the seal of a large window") {
  Rig rig(/*log_changes=*/true);
  // Watched from window 2 on, so its seal also encodes every entity's change.
  (void)engine::PartitionDriver(*rig.part).Seal(1);
  engine::PartitionDriver(*rig.part).Watch(engine::kPlayerSchemaId, 1);
  {
    engine::OpBatch batch;
    for (size_t i = 0; i < kEntities; ++i) {
      std::string id = "p-" + std::to_string(i);
      auto [mask, values] =
          testing::EncodeFields(*rig.player, {{"level", static_cast<int64_t>(i % 100)}});
      batch.Append({engine::OpKind::kPatch, rig.a, rig.player->id, kEntities + i + 1, 2000 + i, id,
                    mask, values});
      if (batch.count() == 4096 || i + 1 == kEntities) {
        engine::PartitionDriver(*rig.part).Apply(batch);
        batch = engine::OpBatch();
      }
    }
  }
  ReadMidWork& probe = rig.Probe(Work::kSeal, 2048);  // of 4096 steps
  rig.Start();
  engine::PartitionSeal seal = rig.Close(2);
  CHECK(seal.entity_changes == kEntities);
  CHECK(seal.wal_records == kEntities);
  CHECK(seal.change_count == kEntities);
  probe.Check();
  // The window's patches were applied before the seal began: the read sees them.
  REQUIRE(probe.found);
  auto [mask, values] =
      testing::EncodeFields(*rig.player, {{"score", int64_t{7}}, {"level", int64_t{7}}});
  CHECK(probe.result.record.mask == mask);
  CHECK(probe.result.record.values == values);
}

// Not a liveness check: reads race with every kind of work here (ops that insert and
// rehash, seals that log and emit changes, source retractions, snapshot chunks, a
// walk), so that a sanitizer run sees any read of what the partition thread changes
// without the lock.
TEST_CASE("partition reads: queries on other threads run alongside every kind of partition work") {
  constexpr size_t kLive = 20'000;
  Rig rig(/*log_changes=*/true, kLive);
  uint32_t b = *rig.sources.Intern("b");
  engine::PartitionDriver(*rig.part).Watch(engine::kPlayerSchemaId, 1);
  rig.Start();

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0}, found{0}, odd{0};
  std::vector<std::thread> readers;
  for (uint64_t t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      engine::QueryResult r;
      while (!stop.load(std::memory_order_relaxed)) {
        std::string id = (rng() % 2 ? "p-" : "q-") + std::to_string(rng() % kLive);
        if (rig.part->Query(*rig.player, id, true, &r)) {
          found.fetch_add(1, std::memory_order_relaxed);
          // One claim of a and / or one of b, in source order, each setting a field.
          bool ok = !r.claims.empty() && r.claims.size() <= 2 && r.record.mask != 0;
          for (size_t i = 0; i < r.claims.size(); ++i) {
            ok = ok && (r.claims[i].source == rig.a || r.claims[i].source == b) &&
                 r.claims[i].mask != 0 && (i == 0 || r.claims[i - 1].source < r.claims[i].source);
          }
          if (!ok) odd.fetch_add(1, std::memory_order_relaxed);
        }
        reads.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }

  uint64_t seq_a = kLive, seq_b = 0, window = 0;
  std::mt19937_64 rng(7);
  for (int round = 0; round < 8; ++round) {
    // b asserts on new ids (the map grows and rehashes) and on old ones; a patches.
    for (int k = 0; k < 4; ++k) {
      auto* batch = new engine::OpBatch();
      for (int i = 0; i < 2'000; ++i) {
        bool fresh = i % 2 == 0;
        std::string id = (fresh ? "q-" : "p-") + std::to_string(rng() % kLive);
        auto [mask, values] =
            testing::EncodeFields(*rig.player, {{"level", static_cast<int64_t>(rng() % 50)}});
        bool by_b = fresh || rng() % 2 == 0;
        batch->Append({by_b ? engine::OpKind::kAssert : engine::OpKind::kPatch, by_b ? b : rig.a,
                       rig.player->id, by_b ? ++seq_b : ++seq_a, 10'000 + rng() % 1'000, id, mask,
                       values});
      }
      rig.SendOps(batch);
    }
    if (round % 2 == 1) {
      engine::PartitionMsg retract;
      retract.kind = engine::PartitionMsg::Kind::kRetractSource;
      retract.source = b;
      retract.window = 20'000;
      rig.Send(retract);
    }
    engine::SnapshotRequest req;
    while (!req.done) {
      rig.part->RequestSnapshot(&req);
      req.ready.wait();
    }
    std::shared_ptr<engine::FeedWalk> walk;
    if (round == 3) {
      walk = std::make_shared<engine::FeedWalk>();
      walk->schema = engine::kPlayerSchemaId;
      rig.part->AddFeedRequest(window + 1, {engine::kPlayerSchemaId, 1, walk});
    }
    (void)rig.Close(++window);
    for (bool done = walk == nullptr; !done;) {
      std::deque<std::string> chunks;
      done = walk->Take(&chunks);
      if (!chunks.empty()) rig.part->Wake();
      if (!done && chunks.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  stop = true;
  for (auto& t : readers)
    t.join();
  MESSAGE(reads.load() << " reads, " << found.load() << " found");
  CHECK(found.load() > 0);
  CHECK(odd.load() == 0);
}

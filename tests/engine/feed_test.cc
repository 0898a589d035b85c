// Walks (feed.h): a partition thread walks its state as of a window boundary W a
// chunk at a time while it applies later windows; the walk must yield exactly the
// state at W (bootstrap), or exactly what changed after an earlier window (resume),
// however ops, chunks and the consumer interleave. Random op orders with a fixed
// seed, printed; CONV_SEED and CONV_ITERATIONS override.

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/changes.h"
#include "engine/feed.h"
#include "engine/partition.h"
#include "engine/partition_driver.h"
#include "engine/test_records.h"

using namespace conv;
using conv::testing::EncodeFields;

namespace {

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::strtoull(v, nullptr, 10) : fallback;
}

using State = std::map<std::string, std::pair<uint64_t, std::string>>;  // id -> mask, values

struct Rig {
  engine::SchemaSet schemas;
  engine::SourceTable sources;
  engine::SealQueue seals, ref_seals;
  std::unique_ptr<engine::Partition> live;  // runs on its own thread, walks
  std::unique_ptr<engine::Partition> ref;   // the same ops, applied here: the model
  std::thread thread;
  moodycamel::ProducerToken* token = nullptr;
  const engine::Schema* player;
  std::vector<uint32_t> srcs;
  std::vector<uint64_t> seqs;
  std::vector<std::string> ids;
  uint64_t window = 0;

  explicit Rig(size_t entities, std::chrono::microseconds retention = std::chrono::minutes(10),
               std::function<void(engine::Partition::Work)> step_hook = nullptr) {
    live = std::make_unique<engine::Partition>(0, schemas, sources, 1, &seals, false);
    live->set_resume_retention(retention);
    if (step_hook) live->set_step_hook(std::move(step_hook));
    ref = std::make_unique<engine::Partition>(0, schemas, sources, 1, &ref_seals, false);
    player = schemas.Find(engine::kPlayerSchemaId);
    for (const char* s : {"a", "b", "c"})
      srcs.push_back(*sources.Intern(s));
    seqs.assign(srcs.size(), 0);
    for (size_t i = 0; i < entities; ++i)
      ids.push_back("p-" + std::to_string(i));
    token = new moodycamel::ProducerToken(live->queue());
    thread = std::thread([this] { live->Run(); });
  }
  ~Rig() {
    engine::PartitionMsg stop;
    stop.kind = engine::PartitionMsg::Kind::kStop;
    live->queue().enqueue(*token, stop);
    thread.join();
    delete token;
  }

  // A batch of random ops, to both partitions.
  void Ops(std::mt19937_64& rng, int n) {
    auto* batch = new engine::OpBatch();
    std::vector<std::string> keep;
    for (int i = 0; i < n; ++i) {
      size_t s = rng() % srcs.size();
      engine::OpView op{};
      op.source = srcs[s];
      op.schema = engine::kPlayerSchemaId;
      op.seq = ++seqs[s];
      op.ts = 1 + rng() % 1000;
      op.id = ids[rng() % ids.size()];
      int k = static_cast<int>(rng() % 10);
      auto [mask, values] =
          EncodeFields(*player, {{"score", int64_t(rng() % 5)}, {"level", int64_t(rng() % 3)}});
      if (k < 5) {
        op.kind = engine::OpKind::kAssert;
      } else if (k < 8) {
        op.kind = engine::OpKind::kPatch;
        auto [pm, pv] = EncodeFields(*player, {{"health", int64_t(rng() % 4)}});
        mask = pm;
        values = pv;
      } else {
        op.kind = engine::OpKind::kRetract;
        mask = 0;
        values.clear();
      }
      op.mask = mask;
      op.values = values;
      batch->Append(op);
    }
    engine::PartitionDriver(*ref).Apply(*batch);
    engine::PartitionMsg m;
    m.kind = engine::PartitionMsg::Kind::kOps;
    m.lane = 0;
    m.batch = batch;
    live->backlog().fetch_add(static_cast<int64_t>(batch->count()));
    live->queue().enqueue(*token, m);
  }

  // Closes the window on both partitions; `before_cut` runs before the live one
  // gets the cut (where Engine::StartFeed hands over its requests).
  void Close(const std::function<void(uint64_t)>& before_cut = {}) {
    ++window;
    engine::PartitionDriver(*ref).Seal(window);
    if (before_cut) before_cut(window);
    engine::PartitionMsg m;
    m.kind = engine::PartitionMsg::Kind::kCut;
    m.lane = 0;
    m.window = window;
    live->queue().enqueue(*token, m);
    engine::PartitionSeal seal;
    seals.wait_dequeue(seal);
    REQUIRE(seal.window == window);
  }

  State Truth() {
    State out;
    engine::QueryResult r;
    for (const auto& id : ids) {
      if (ref->Query(*player, id, false, &r)) out[id] = {r.record.mask, r.record.values};
    }
    return out;
  }
};

// Takes whatever the walk has, applying it to `state`; true once the walk is done.
bool Drain(engine::Partition& p, engine::FeedWalk& w, State* state, size_t* entries) {
  std::deque<std::string> chunks;
  bool done = w.Take(&chunks);
  for (const auto& chunk : chunks) {
    engine::ChangeReader r(chunk);
    engine::ChangeView c;
    while (r.Next(&c)) {
      ++*entries;
      if (c.kind == engine::ChangeKind::kDelete) {
        state->erase(std::string(c.id));
      } else {
        (*state)[std::string(c.id)] = {c.mask, std::string(c.values)};
      }
    }
  }
  if (!chunks.empty()) p.Wake();
  return done && chunks.empty();
}

}  // namespace

TEST_CASE("feed: a walk yields exactly the state at its window while later ops apply") {
  uint64_t seed = EnvOr("CONV_SEED", 20261128);
  uint64_t iterations = EnvOr("CONV_ITERATIONS", 6);
  MESSAGE("seed " << seed << ", " << iterations << " iterations (CONV_SEED, CONV_ITERATIONS)");
  std::mt19937_64 rng(seed);
  for (uint64_t it = 0; it < iterations; ++it) {
    CAPTURE(it);
    Rig rig(30'000);  // several walk chunks of buckets
    for (int w = 0; w < 4; ++w) {
      for (int b = 0; b < 10; ++b)
        rig.Ops(rng, 2'000);
      rig.Close();
    }
    // A bootstrap and a resume from window 4, both as of window 5.
    State at4 = rig.Truth();
    for (int b = 0; b < 10; ++b)
      rig.Ops(rng, 2'000);
    auto boot = std::make_shared<engine::FeedWalk>();
    boot->schema = engine::kPlayerSchemaId;
    auto resume = std::make_shared<engine::FeedWalk>();
    resume->schema = engine::kPlayerSchemaId;
    resume->since = 4;
    rig.Close([&](uint64_t w) {
      rig.live->AddFeedRequest(w, {engine::kPlayerSchemaId, 1, boot});
      rig.live->AddFeedRequest(w, {engine::kPlayerSchemaId, 1, resume});
    });
    State at5 = rig.Truth();
    // Later windows apply while the walks are consumed, slowly and in bursts.
    State got_boot, got_resume = at4;
    size_t n_boot = 0, n_resume = 0;
    bool boot_done = false, resume_done = false;
    for (int round = 0; !(boot_done && resume_done); ++round) {
      REQUIRE(round < 100'000);
      if (round < 40) {
        rig.Ops(rng, 500);
        if (round % 8 == 7) rig.Close();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      if (rng() % 3 == 0) {
        boot_done = boot_done || Drain(*rig.live, *boot, &got_boot, &n_boot);
        resume_done = resume_done || Drain(*rig.live, *resume, &got_resume, &n_resume);
      }
    }
    CHECK(got_boot == at5);
    CHECK(n_boot == at5.size());
    CHECK(got_resume == at5);
    CHECK(n_resume < at5.size());  // a delta, not the whole state
    CHECK_FALSE(resume->too_old);
  }
}

TEST_CASE("feed: a resume older than the tombstone retention is refused as too old") {
  Rig rig(100, std::chrono::microseconds(1));
  std::mt19937_64 rng(1);
  for (int w = 0; w < 5; ++w) {
    rig.Ops(rng, 300);  // retracts leave tombstones, dropped at the next seals
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    rig.Close();
  }
  REQUIRE(rig.live->retained_from() > 1);
  auto resume = std::make_shared<engine::FeedWalk>();
  resume->schema = engine::kPlayerSchemaId;
  resume->since = 1;
  rig.Close([&](uint64_t w) { rig.live->AddFeedRequest(w, {engine::kPlayerSchemaId, 1, resume}); });
  State s;
  size_t n = 0;
  for (int i = 0; i < 10'000 && !Drain(*rig.live, *resume, &s, &n); ++i)
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  CHECK(resume->too_old);
  CHECK(n == 0);
}

TEST_CASE("feed: a cancelled walk ends and the partition goes on") {
  // The walk is held in its first chunk until it is cancelled, so that it is cancelled
  // with most of the map still to visit.
  std::atomic<bool> in_walk{false}, release{false};
  Rig rig(20'000, std::chrono::minutes(10), [&](engine::Partition::Work w) {
    if (w != engine::Partition::Work::kWalk || release.load()) return;
    in_walk = true;
    for (int i = 0; i < 50'000 && !release.load(); ++i)
      std::this_thread::sleep_for(std::chrono::microseconds(100));
  });
  std::mt19937_64 rng(2);
  for (int b = 0; b < 10; ++b)
    rig.Ops(rng, 2'000);
  rig.Close();
  auto walk = std::make_shared<engine::FeedWalk>();
  walk->schema = engine::kPlayerSchemaId;
  rig.Close([&](uint64_t w) { rig.live->AddFeedRequest(w, {engine::kPlayerSchemaId, 1, walk}); });
  for (int i = 0; i < 50'000 && !in_walk.load(); ++i)
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  REQUIRE(in_walk.load());
  walk->cancelled = true;
  release = true;
  rig.live->Wake();
  // The partition lets go of the walk without finishing it.
  for (int i = 0; i < 50'000 && walk.use_count() > 1; ++i)
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  CHECK(walk.use_count() == 1);
  {
    std::lock_guard lock(walk->mu);
    CHECK_FALSE(walk->done);
  }
  // The partition keeps working: later windows close, and a new walk of the same
  // schema runs to its end with exactly the state at its window.
  rig.Ops(rng, 100);
  rig.Close();
  auto again = std::make_shared<engine::FeedWalk>();
  again->schema = engine::kPlayerSchemaId;
  rig.Close([&](uint64_t w) { rig.live->AddFeedRequest(w, {engine::kPlayerSchemaId, 1, again}); });
  State want = rig.Truth(), got;
  size_t n = 0;
  bool done = false;
  for (int i = 0; i < 50'000 && !done; ++i) {
    done = Drain(*rig.live, *again, &got, &n);
    if (!done) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  REQUIRE(done);
  CHECK(got == want);
}

// Restarting an in-process server on the same data dir: state, seq marks, the window
// counter and schemas survive; checkpoints shorten the log; resent ops are skipped.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "engine/schema.h"
#include "support/durable_server.h"
#include "support/op_model.h"
#include "support/process.h"
#include "support/test_server.h"
#include "wal/files.h"
#include "wal/replay.h"

using namespace conv;
using testing::DurableServer;
using testing::DurableServerOptions;
using testing::OpGenerator;
using testing::Stat;
using testing::StateByEntity;

namespace {

constexpr size_t kEntities = 40;

std::string SourceName(size_t s) {
  return fmt::format("writer-{}", s);
}

DurableServerOptions In(const std::string& dir, std::string schema_text = "") {
  DurableServerOptions o;
  o.data_dir = dir;
  o.schema_text = std::move(schema_text);
  return o;
}

// Sends ops from..to of source `s`, pipelined, and waits for the ACK of `to`. Fails
// the test on any ERROR.
void WriteAndAck(net::Client& c, const OpGenerator& gen, size_t s, uint64_t from, uint64_t to) {
  std::string frames;
  for (uint64_t q = from; q <= to; ++q) {
    frames += gen.Frame(s, q);
    if (frames.size() > (32u << 10)) {
      REQUIRE(c.Send(frames).ok());
      frames.clear();
    }
  }
  if (!frames.empty()) REQUIRE(c.Send(frames).ok());
  std::vector<net::OwnedFrame> others;
  REQUIRE(testing::WaitForAck(c, to, &others));
  for (const auto& f : others) {
    CHECK_MESSAGE(!testing::IsType(f, net::FrameType::kError), "ERROR ",
                  testing::ErrorOf(f).message);
  }
}

// What sources 0..upto.size()-1 claim after their ops 1..upto[s].
StateByEntity Expected(const OpGenerator& gen, const std::vector<uint64_t>& upto) {
  testing::StateModel m(gen.schema());
  for (size_t s = 0; s < upto.size(); ++s) {
    for (uint64_t q = 1; q <= upto[s]; ++q)
      m.Apply(SourceName(s), gen.Op(s, q));
  }
  return m.State();
}

StateByEntity State(DurableServer& server, const OpGenerator& gen) {
  auto reader = server.Connect();
  auto got = testing::QueryState(*reader, gen.schema(), gen.EntityIds());
  REQUIRE_MESSAGE(got.ok(), (got.ok() ? "" : got.message()));
  return std::move(got).value();
}

uint64_t WelcomeSeq(DurableServer& server, size_t s) {
  return server.Connect(SourceName(s))->welcome().last_applied_seq;
}

size_t Segments(const std::string& dir) {
  auto listing = wal::ListDir(dir);
  REQUIRE(listing.ok());
  return listing->segments.size();
}

}  // namespace

TEST_CASE("recovery: a restarted server has every entity, claim and seq mark it acknowledged") {
  uint64_t seed = testing::TestSeed("CONV_RECOVERY_SEED", 1234);
  MESSAGE("seed ", seed, " (CONV_RECOVERY_SEED)");
  testing::TempDir dir("conv-recovery");
  OpGenerator gen(engine::PlayerSchema(), seed, kEntities);
  std::vector<uint64_t> written = {300, 250, 120};
  StateByEntity before;
  uint64_t window_before = 0, entities_before = 0;
  {
    DurableServer server(In(dir.path()));
    for (size_t s = 0; s < written.size(); ++s) {
      auto w = server.Connect(SourceName(s));
      CHECK(w->welcome().last_applied_seq == 0);
      WriteAndAck(*w, gen, s, 1, written[s]);
    }
    before = State(server, gen);
    auto want = Expected(gen, written);
    REQUIRE_MESSAGE(before == want, testing::DescribeDifference(want, before));
    REQUIRE(before.size() > kEntities / 2);
    auto reader = server.Connect();
    window_before = Stat(*reader, "last_window");
    entities_before = Stat(*reader, "entities");
    CHECK(window_before > 0);
    CHECK(Stat(*reader, "wal") == 1);
  }

  DurableServer server(In(dir.path()));
  CHECK(server.recovery().last_window >= window_before);
  CHECK(server.recovery().torn_file.empty());
  StateByEntity after = State(server, gen);
  CHECK_MESSAGE(after == before, testing::DescribeDifference(before, after));
  auto reader = server.Connect();
  CHECK(Stat(*reader, "entities") == entities_before);
  CHECK(Stat(*reader, "sources") == written.size());
  CHECK(Stat(*reader, "ops_applied") == 0);
  for (size_t s = 0; s < written.size(); ++s)
    CHECK(WelcomeSeq(server, s) == written[s]);
  CHECK(WelcomeSeq(server, 7) == 0);  // a source the log never saw
}

TEST_CASE("recovery: the window counter keeps increasing across restarts") {
  testing::TempDir dir("conv-recovery");
  OpGenerator gen(engine::PlayerSchema(), 77, 8);
  uint64_t last = 0;
  uint64_t seq = 0;
  for (int round = 0; round < 4; ++round) {
    CAPTURE(round);
    DurableServer server(In(dir.path()));
    auto reader = server.Connect();
    uint64_t at_start = Stat(*reader, "last_window");
    CHECK(at_start >= last);
    CHECK(Stat(*reader, "durable_window") == at_start);
    auto w = server.Connect(SourceName(0));
    CHECK(w->welcome().last_applied_seq == seq);
    WriteAndAck(*w, gen, 0, seq + 1, seq + 20);
    seq += 20;
    uint64_t now = Stat(*reader, "last_window");
    CHECK(now > at_start);
    CHECK(now > last);
    last = now;
  }
}

TEST_CASE("recovery: schemas survive restarts with stable ids, appending fields is accepted") {
  testing::TempDir dir("conv-recovery");
  const std::string v1 = "item label:string count:i64\nzone name:string\n";
  {
    DurableServer server(In(dir.path(), v1));
    auto w = server.Connect(SourceName(0));
    const engine::Schema* item = w->FindSchema("item");
    REQUIRE(item != nullptr);
    CHECK(item->id == 2);
    std::string frames = testing::WriteFrame(
        net::FrameType::kAssert, 1, 100, item->id, "sword",
        testing::Record(*item, {{"label", std::string("Sword")}, {"count", int64_t{3}}}));
    REQUIRE(w->Send(frames).ok());
    REQUIRE(testing::WaitForAck(*w, 1));
  }
  {
    auto persisted = wal::ReadLatestSchemas(dir.path());
    REQUIRE(persisted.ok());
    REQUIRE(persisted->size() == 3);
    CHECK((*persisted)[1].name == "item");
    CHECK((*persisted)[2].name == "zone");
  }
  // Listed in another order, one field appended, a new schema, "zone" no longer named.
  const std::string v2 = "extra flag:bool\nitem label:string count:i64 weight:f64\n";
  {
    DurableServer server(In(dir.path(), v2));
    const auto& schemas = server.schemas();
    REQUIRE(schemas.size() == 4);
    CHECK(schemas.FindByName("player")->id == 1);
    CHECK(schemas.FindByName("item")->id == 2);
    CHECK(schemas.FindByName("zone")->id == 3);  // kept: the data dir knows it
    CHECK(schemas.FindByName("extra")->id == 4);
    CHECK(schemas.FindByName("item")->fields.size() == 3);

    auto w = server.Connect(SourceName(0));
    CHECK(w->welcome().last_applied_seq == 1);
    const engine::Schema* item = w->FindSchema("item");
    REQUIRE(item != nullptr);
    auto r = w->Query(*item, "sword", true);
    REQUIRE(r.ok());
    REQUIRE(r->found);
    CHECK(r->record ==
          testing::Record(*item, {{"label", std::string("Sword")}, {"count", int64_t{3}}}));
    std::string frames = testing::WriteFrame(net::FrameType::kPatch, 2, 200, item->id, "sword",
                                             testing::Record(*item, {{"weight", 2.5}}));
    REQUIRE(w->Send(frames).ok());
    REQUIRE(testing::WaitForAck(*w, 2));
  }
  {
    DurableServer server(In(dir.path(), v2));
    CHECK(server.schemas().FindByName("extra")->id == 4);
    auto reader = server.Connect();
    const engine::Schema* item = reader->FindSchema("item");
    REQUIRE(item != nullptr);
    auto r = reader->Query(*item, "sword", false);
    REQUIRE(r.ok());
    CHECK(r->record ==
          testing::Record(
              *item, {{"label", std::string("Sword")}, {"count", int64_t{3}}, {"weight", 2.5}}));
  }

  auto persisted = wal::ReadLatestSchemas(dir.path());
  REQUIRE(persisted.ok());
  REQUIRE(persisted->size() == 4);
  struct Refusal {
    std::string config;
    std::vector<std::string> message_parts;
  };
  std::vector<Refusal> refusals = {
      {"item label:string count:f64 weight:f64",
       {"schema 'item'", "field 'count' changed type from i64 to f64"}},
      {"item label:string count:i64",
       {"schema 'item' has 3 fields in the data dir but 2 now", "field 'weight' is missing"}},
      {"item label:string amount:i64 weight:f64",
       {"schema 'item'", "field 1 is 'count' in the data dir but 'amount' now",
        "cannot be renamed or reordered"}},
      {"item count:i64 label:string weight:f64", {"field 0 is 'label' in the data dir"}},
  };
  for (const auto& r : refusals) {
    CAPTURE(r.config);
    engine::SchemaSet set;
    REQUIRE(set.AddFromText(r.config, "test").ok());
    auto st = set.Reconcile(*persisted);
    REQUIRE_FALSE(st.ok());
    for (const auto& part : r.message_parts) {
      CHECK_MESSAGE(st.message().find(part) != std::string::npos, st.message());
    }
    // Nothing changed.
    CHECK(set.size() == 2);
    CHECK(set.FindByName("item")->id == 2);
  }
}

TEST_CASE("recovery: a checkpoint then a restart gives the same state and deletes old segments") {
  uint64_t seed = testing::TestSeed("CONV_RECOVERY_SEED", 5150);
  MESSAGE("seed ", seed, " (CONV_RECOVERY_SEED)");
  testing::TempDir dir("conv-recovery");
  OpGenerator gen(engine::PlayerSchema(), seed, kEntities, {}, 200);
  DurableServerOptions o = In(dir.path());
  o.segment_bytes = 16u << 10;
  std::vector<uint64_t> written = {0, 0, 0};
  StateByEntity before;
  {
    DurableServer server(o);
    std::vector<std::unique_ptr<net::Client>> w;
    for (size_t s = 0; s < written.size(); ++s)
      w.push_back(server.Connect(SourceName(s)));
    // Small batches: many windows, so many segments.
    for (int batch = 0; batch < 30; ++batch) {
      for (size_t s = 0; s < written.size(); ++s) {
        WriteAndAck(*w[s], gen, s, written[s] + 1, written[s] + 10);
        written[s] += 10;
      }
    }
    size_t segments = Segments(dir.path());
    MESSAGE(segments, " segments before the checkpoint");
    REQUIRE(segments > 3);
    auto st = server.engine().Checkpoint();
    REQUIRE_MESSAGE(st.ok(), st.message());
    auto listing = wal::ListDir(dir.path());
    REQUIRE(listing.ok());
    CHECK(listing->checkpoints.size() == 1);
    CHECK(listing->segments.size() < segments);
    auto reader = server.Connect();
    CHECK(Stat(*reader, "checkpoints") == 1);
    CHECK(Stat(*reader, "segments_deleted") == segments - listing->segments.size());
    CHECK(Stat(*reader, "checkpoint_records") > 0);
    // Writes after the checkpoint come from the log.
    for (size_t s = 0; s < written.size(); ++s) {
      WriteAndAck(*w[s], gen, s, written[s] + 1, written[s] + 25);
      written[s] += 25;
    }
    before = State(server, gen);
    auto want = Expected(gen, written);
    REQUIRE_MESSAGE(before == want, testing::DescribeDifference(want, before));
  }
  {
    DurableServer server(o);
    CHECK(server.recovery().used_checkpoint);
    StateByEntity after = State(server, gen);
    CHECK_MESSAGE(after == before, testing::DescribeDifference(before, after));
    for (size_t s = 0; s < written.size(); ++s)
      CHECK(WelcomeSeq(server, s) == written[s]);
    // A checkpoint right after recovery, with nothing new, keeps every seq mark.
    auto st = server.engine().Checkpoint();
    REQUIRE_MESSAGE(st.ok(), st.message());
  }
  DurableServer server(o);
  CHECK(server.recovery().used_checkpoint);
  StateByEntity after = State(server, gen);
  CHECK_MESSAGE(after == before, testing::DescribeDifference(before, after));
  for (size_t s = 0; s < written.size(); ++s)
    CHECK(WelcomeSeq(server, s) == written[s]);
  auto listing = wal::ListDir(dir.path());
  REQUIRE(listing.ok());
  CHECK(listing->checkpoints.size() == 1);
}

TEST_CASE("recovery: checkpoints taken while writers run give the state the log gives") {
  uint64_t seed = testing::TestSeed("CONV_RECOVERY_SEED", 6060);
  MESSAGE("seed ", seed, " (CONV_RECOVERY_SEED)");
  testing::TempDir dir("conv-recovery");
  OpGenerator gen(engine::PlayerSchema(), seed, kEntities);
  DurableServerOptions o = In(dir.path());
  o.segment_bytes = 32u << 10;
  o.checkpoint_interval = std::chrono::milliseconds(15);
  constexpr size_t kSources = 3;
  constexpr uint64_t kOps = 1500;
  StateByEntity before;
  {
    DurableServer server(o);
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (size_t s = 0; s < kSources; ++s) {
      threads.emplace_back([&, s] {
        net::Hello hello;
        hello.source = SourceName(s);
        auto c = net::Client::Connect(server.address(), hello, testing::kReplyTimeout);
        if (!c.ok()) {
          ++failures;
          return;
        }
        for (uint64_t q = 1; q <= kOps; q += 50) {
          std::string frames;
          for (uint64_t k = q; k < q + 50; ++k)
            frames += gen.Frame(s, k);
          if (!(*c)->Send(frames).ok()) ++failures;
          // Keep a little in flight so that windows are small and many.
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        (*c)->set_timeout(testing::kReplyTimeout);
        for (;;) {
          auto f = (*c)->ReadFrame();
          if (!f.ok()) {
            ++failures;
            return;
          }
          uint64_t acked = 0;
          if (f->type == static_cast<uint8_t>(net::FrameType::kAck) &&
              net::DecodeAck(f->payload, &acked) && acked >= kOps) {
            return;
          }
        }
      });
    }
    for (auto& t : threads)
      t.join();
    REQUIRE(failures.load() == 0);
    before = State(server, gen);
    auto want = Expected(gen, std::vector<uint64_t>(kSources, kOps));
    REQUIRE_MESSAGE(before == want, testing::DescribeDifference(want, before));
    auto reader = server.Connect();
    MESSAGE(Stat(*reader, "checkpoints"), " checkpoints, ", Stat(*reader, "segments_deleted"),
            " segments deleted, ", Stat(*reader, "windows"), " windows");
  }
  DurableServer server(o);
  StateByEntity after = State(server, gen);
  CHECK_MESSAGE(after == before, testing::DescribeDifference(before, after));
  for (size_t s = 0; s < kSources; ++s)
    CHECK(WelcomeSeq(server, s) == kOps);
}

TEST_CASE(
    "recovery: a thread per partition recovers the state one thread does, at any partition count") {
  uint64_t seed = testing::TestSeed("CONV_RECOVERY_SEED", 4242);
  MESSAGE("seed ", seed, " (CONV_RECOVERY_SEED)");
  testing::TempDir dir("conv-recovery");
  // Ids past the 15 bytes a key holds inline; enough records that each partition is
  // handed many batches, from the checkpoint and from the log after it.
  OpGenerator gen(engine::PlayerSchema(), seed, 3000, {}, 8, "entity-with-a-long-id-");
  std::vector<uint64_t> written = {9000, 7000, 5000};
  StateByEntity before;
  engine::PartitionCounters totals_before;
  {
    DurableServer server(In(dir.path()));
    for (size_t s = 0; s < written.size(); ++s) {
      auto w = server.Connect(SourceName(s));
      WriteAndAck(*w, gen, s, 1, written[s] / 2);
    }
    REQUIRE(server.engine().Checkpoint().ok());
    for (size_t s = 0; s < written.size(); ++s) {
      auto w = server.Connect(SourceName(s));
      WriteAndAck(*w, gen, s, written[s] / 2 + 1, written[s]);
    }
    before = State(server, gen);
    auto want = Expected(gen, written);
    REQUIRE_MESSAGE(before == want, testing::DescribeDifference(want, before));
    totals_before = server.engine().Stats().totals;
  }
  for (uint32_t partitions : {1u, 2u, 3u}) {
    for (bool parallel : {false, true}) {
      CAPTURE(partitions);
      CAPTURE(parallel);
      // Each recovery from a copy of the same data dir.
      testing::TempDir copy("conv-recovery");
      std::filesystem::copy(dir.path(), copy.path(), std::filesystem::copy_options::recursive);
      DurableServerOptions o = In(copy.path());
      o.partitions = partitions;
      o.parallel_recovery = parallel;
      DurableServer server(o);
      CHECK(server.recovery().used_checkpoint);
      StateByEntity after = State(server, gen);
      CHECK_MESSAGE(after == before, testing::DescribeDifference(before, after));
      engine::PartitionCounters totals = server.engine().Stats().totals;
      CHECK(totals.entities == totals_before.entities);
      CHECK(totals.claims == totals_before.claims);
      CHECK(totals.claim_bytes == totals_before.claim_bytes);
      for (size_t s = 0; s < written.size(); ++s)
        CHECK(WelcomeSeq(server, s) == written[s]);
    }
  }
}

TEST_CASE("recovery: ops resent after a restart are skipped as duplicates and change nothing") {
  testing::TempDir dir("conv-recovery");
  OpGenerator gen(engine::PlayerSchema(), 99, kEntities);
  std::vector<uint64_t> written = {200, 150};
  StateByEntity before;
  {
    DurableServer server(In(dir.path()));
    for (size_t s = 0; s < written.size(); ++s) {
      auto w = server.Connect(SourceName(s));
      WriteAndAck(*w, gen, s, 1, written[s]);
    }
    before = State(server, gen);
  }
  DurableServer server(In(dir.path()));
  auto reader = server.Connect();
  for (size_t s = 0; s < written.size(); ++s) {
    auto w = server.Connect(SourceName(s));
    REQUIRE(w->welcome().last_applied_seq == written[s]);
    // A writer that lost its acks resends everything it sent.
    WriteAndAck(*w, gen, s, 1, written[s]);
  }
  CHECK(Stat(*reader, "duplicates") == written[0] + written[1]);
  CHECK(Stat(*reader, "ops_applied") == 0);
  StateByEntity after = State(server, gen);
  CHECK_MESSAGE(after == before, testing::DescribeDifference(before, after));
  // And the next new op is applied as usual.
  auto w = server.Connect(SourceName(0));
  WriteAndAck(*w, gen, 0, written[0] + 1, written[0] + 1);
  CHECK(Stat(*reader, "ops_applied") == 1);
}

TEST_CASE("recovery: a torn tail left by a crash is cut off and the acknowledged state survives") {
  testing::TempDir dir("conv-recovery");
  OpGenerator gen(engine::PlayerSchema(), 31337, kEntities);
  StateByEntity before;
  {
    DurableServer server(In(dir.path()));
    auto w = server.Connect(SourceName(0));
    WriteAndAck(*w, gen, 0, 1, 100);
    before = State(server, gen);
  }
  auto listing = wal::ListDir(dir.path());
  REQUIRE(listing.ok());
  REQUIRE_FALSE(listing->segments.empty());
  std::string last = listing->segments.back().path;
  uint64_t size = std::filesystem::file_size(last);
  {
    // Half a block: a length and some of a CRC and payload.
    std::ofstream out(last, std::ios::binary | std::ios::app);
    out.write("\x40\x00\x00\x00\x12\x34", 6);
  }
  DurableServer server(In(dir.path()));
  CHECK(server.recovery().torn_file == last);
  CHECK(server.recovery().torn_offset == size);
  CHECK(server.recovery().torn_bytes == 6);
  CHECK(std::filesystem::file_size(last) == size);
  StateByEntity after = State(server, gen);
  CHECK_MESSAGE(after == before, testing::DescribeDifference(before, after));
  CHECK(WelcomeSeq(server, 0) == 100);
}

// A read replica's engine (EngineOptions::follower, docs/architecture.md): state
// restored from records it is given, windows closed only as handed in, with their
// numbers, and a feed that starts at once at the last window when none is queued.

#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/schema.h"
#include "engine/test_records.h"
#include "support/process.h"
#include "wal/records.h"
#include "wal/writer.h"

using namespace conv;
using namespace std::chrono_literals;

namespace {

// Cuts every lane on the coalescer thread (nothing else uses them: a replica has no
// writers) and notes the windows whose changes arrive.
class Listener : public engine::WindowListener {
 public:
  explicit Listener(engine::Engine& e) : e_(e) {}
  void OnCut(uint64_t w) override {
    for (size_t i = 0; i < e_.lane_count(); ++i)
      e_.lane(i).Cut(w);
  }
  void OnDurable(uint64_t w) override {
    std::lock_guard lock(mu_);
    durable_ = w;
    cv_.notify_all();
  }
  void OnChanges(uint64_t w, std::vector<std::string> changes) override {
    std::lock_guard lock(mu_);
    windows.push_back(w);
    changed.push_back(!changes.empty());
  }
  bool AwaitDurable(uint64_t w) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return durable_ >= w; });
  }
  std::vector<uint64_t> windows;  // guarded by mu_ (read once quiet)
  std::vector<bool> changed;

 private:
  engine::Engine& e_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t durable_ = 0;
};

std::string Claim(const engine::Schema& s, const std::string& id, const std::string& source,
                  const testing::Fields& f, uint64_t ts) {
  auto [mask, values] = testing::EncodeFields(s, f);
  std::string r;
  wal::PutClaim(r, s.id, id, source, mask, true, ts, nullptr, values);
  return r;
}

}  // namespace

TEST_CASE("engine: a follower applies windows handed in, under their numbers, and nothing else") {
  testing::TempDir dir("conv-follower");
  engine::SchemaSet schemas;
  const engine::Schema& player = *schemas.FindByName("player");
  engine::SourceTable sources(64);
  engine::EngineOptions o;
  o.partitions = 2;
  o.lanes = 2;
  o.follower = true;
  engine::Engine e(o, schemas, sources);
  // Restored: entity "a" as of window 7 (what a checkpoint plus windows would give).
  auto restored = e.RestoreFrom([&](wal::RecordVisitor& v, uint64_t* last, uint64_t* checkpoint) {
    std::string r = Claim(player, "a", "w1", {{"score", int64_t{5}}}, 100);
    util::Reader reader(r);
    if (!wal::DecodeRecords(reader, 1, v)) return util::Status::Error("bad record");
    *last = 7;
    *checkpoint = 6;
    return util::Status::Ok();
  });
  REQUIRE_MESSAGE(restored.ok(), restored.message());
  CHECK(e.retained_from() == 6);
  Listener listener(e);
  e.Start(&listener);

  // A subscription with nothing queued starts at once, at the last window.
  std::mutex mu;
  std::condition_variable cv;
  uint64_t started = 0;
  e.StartFeed(player.id, {}, [&](uint64_t w) {
    std::lock_guard lock(mu);
    started = w;
    cv.notify_all();
  });
  {
    std::unique_lock lock(mu);
    REQUIRE(cv.wait_for(lock, 10s, [&] { return started != 0; }));
  }
  CHECK(started == 7);
  e.RequestWindow();  // activity closes no window of a follower's own
  CHECK(e.Flush() == 0);

  // The owner's window 9: "b" asserted, "a" retracted.
  const std::string data = dir.File("log");
  std::filesystem::create_directories(data);
  wal::SegmentWriter writer(data, {});
  std::string retract;
  wal::PutRetract(retract, player.id, "a", "w1");
  std::vector<std::string> records = {Claim(player, "b", "w2", {{"score", int64_t{9}}}, 200),
                                      retract};
  std::vector<std::string_view> views(records.begin(), records.end());
  REQUIRE(writer.AppendWindow(9, 2, 2, views).ok());
  const std::string window9(writer.last_blocks());
  auto applied = e.ApplyReplicatedWindow(9, window9);
  REQUIRE_MESSAGE(applied.ok(), applied.message());
  REQUIRE(listener.AwaitDurable(9));
  engine::QueryResult q;
  CHECK(e.Query(player, "b", false, &q));
  CHECK_FALSE(e.Query(player, "a", false, &q));
  CHECK(e.last_window() == 9);
  CHECK(listener.windows == std::vector<uint64_t>{9});
  CHECK(listener.changed == std::vector<bool>{true});  // watched since window 7

  // Not after the last window, or damaged: refused, nothing applied.
  auto again = e.ApplyReplicatedWindow(9, window9);
  CHECK(again.message() == "replicated window 9 is not after the last window applied, 9");
  std::string damaged = window9;
  damaged[damaged.size() / 2] ^= 0x40;
  CHECK_FALSE(e.ApplyReplicatedWindow(10, damaged).ok());
  CHECK_FALSE(e.ApplyReplicatedWindow(10, window9).ok());  // window 9's blocks
  CHECK(e.last_window() == 9);
  e.Stop();
}

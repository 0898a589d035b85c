// End-to-end tests of subscriptions over loopback: bootstrap under concurrent writes,
// resume (also across a restart), include_prev, coalescing inside a window, deletes,
// leases, interval_ms, slow subscribers, and every SUBSCRIBE / UNSUBSCRIBE error.
// Random op orders use a fixed seed, printed; CONV_SEED overrides it.

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "net/credit.h"
#include "support/durable_server.h"
#include "support/feed.h"
#include "support/op_model.h"
#include "support/test_server.h"

using namespace conv;
using net::FrameType;
using testing::ErrorOf;
using testing::Feed;
using testing::Record;
using testing::ServerState;
using testing::Stat;
using testing::WaitForAck;
using testing::WriteFrame;

namespace {

constexpr uint64_t kPlayer = engine::kPlayerSchemaId;

uint64_t Seed() {
  const char* env = std::getenv("CONV_SEED");
  uint64_t seed = env != nullptr ? std::strtoull(env, nullptr, 10) : 20261128;
  MESSAGE("seed " << seed << " (CONV_SEED)");
  return seed;
}

std::vector<std::string> Ids(int n, const std::string& prefix = "e-") {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i)
    ids.push_back(prefix + std::to_string(i));
  return ids;
}

// A source writing random ASSERT / PATCH / RETRACT (60/25/15) over `ids` in
// pipelined batches until stopped, waiting for each batch's ACK.
class Writer {
 public:
  template <typename Server>
  Writer(Server& server, const std::string& source, const std::vector<std::string>& ids,
         uint64_t seed)
      : client_(server.Connect(source)),
        ids_(ids),
        rng_(seed),
        seq_(client_->welcome().last_applied_seq) {}

  void Batch(int ops) {
    const engine::Schema& player = *client_->FindSchema(kPlayer);
    std::string frames;
    std::uniform_int_distribution<size_t> pick(0, ids_.size() - 1);
    std::uniform_int_distribution<int> kind(0, 99);
    for (int i = 0; i < ops; ++i) {
      const std::string& id = ids_[pick(rng_)];
      int k = kind(rng_);
      int64_t v = static_cast<int64_t>(rng_() % 1000);
      if (k < 60 && !name_.empty()) {
        frames += WriteFrame(FrameType::kAssert, ++seq_, 0, kPlayer, id,
                             Record(player, {{"score", v}, {"x", double(v) / 2}, {"name", name_}}));
      } else if (k < 60) {
        frames += WriteFrame(FrameType::kAssert, ++seq_, 0, kPlayer, id,
                             Record(player, {{"score", v}, {"x", double(v) / 2}}));
      } else if (k < 85) {
        frames +=
            WriteFrame(FrameType::kPatch, ++seq_, 0, kPlayer, id, Record(player, {{"health", v}}));
      } else {
        frames += WriteFrame(FrameType::kRetract, ++seq_, 0, kPlayer, id);
      }
    }
    REQUIRE(client_->Send(frames).ok());
    REQUIRE(WaitForAck(*client_, seq_));
  }
  void Start(int batch_ops) {
    thread_ = std::thread([this, batch_ops] {
      while (!stop_) {
        Batch(batch_ops);
        ++batches_;
      }
    });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int batches() const { return batches_; }
  // ASSERTs `id` with score `v` and waits for its ACK.
  std::string Put(const std::string& id, int64_t v) {
    std::string rec = Record(*client_->FindSchema(kPlayer), {{"score", v}});
    REQUIRE(client_->Send(WriteFrame(FrameType::kAssert, ++seq_, 0, kPlayer, id, rec)).ok());
    REQUIRE(WaitForAck(*client_, seq_));
    return rec;
  }
  net::Client& client() { return *client_; }
  void SetSeq(uint64_t seq) { seq_ = seq; }
  // ASSERTs carry this name from now on (none when empty).
  void SetName(std::string name) { name_ = std::move(name); }
  ~Writer() { Stop(); }

 private:
  std::unique_ptr<net::Client> client_;
  std::vector<std::string> ids_;
  std::mt19937_64 rng_;
  uint64_t seq_ = 0;
  std::string name_;
  std::atomic<bool> stop_{false};
  std::atomic<int> batches_{0};
  std::thread thread_;
};

net::Subscribe Sub(uint8_t flags = 0, uint64_t resume = 0) {
  net::Subscribe s;
  s.sub = 1;
  s.schema_id = kPlayer;
  s.flags = flags;
  s.resume_window = resume;
  return s;
}

// The feed's state restricted to `ids`.
std::map<std::string, std::string> Only(const std::map<std::string, std::string>& m,
                                        const std::vector<std::string>& ids) {
  std::map<std::string, std::string> out;
  for (const auto& id : ids) {
    if (auto it = m.find(id); it != m.end()) out[id] = it->second;
  }
  return out;
}

void WaitUntil(const std::function<bool()>& f) {
  auto deadline = std::chrono::steady_clock::now() + testing::kReplyTimeout;
  while (!f() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(f());
}

}  // namespace

TEST_CASE("subscribe: a bootstrap taken under writes plus its notifications equals the state") {
  uint64_t seed = Seed();
  testing::TestServerOptions o;
  o.partitions = 2;
  testing::TestServer server(o);
  auto ids = Ids(3000);
  Writer w1(server, "w1", ids, seed), w2(server, "w2", ids, seed + 1);
  w1.Batch(4000);  // a state to bootstrap
  w2.Batch(4000);
  w1.Start(300);
  w2.Start(300);
  Feed feed(server.Connect());
  feed.Subscribe(Sub(net::kSubscribeBootstrap));
  feed.WaitSnapshotEnd();
  CHECK(feed.snapshot_end().reset);
  CHECK(feed.snapshot().size() > 100);
  // Writers go on while the feed is read.
  while (w1.batches() + w2.batches() < 20)
    feed.ReadOne(std::chrono::milliseconds(50));
  w1.Stop();
  w2.Stop();
  // Notifications are in window order: once the sentinel arrives, all before it has.
  std::string rec = w1.Put("zz-end", 1);
  feed.WaitForRecord("zz-end", rec);
  ids.push_back("zz-end");
  CHECK(Only(feed.state(), ids) == ServerState(w1.client(), *w1.client().FindSchema(kPlayer), ids));
  CHECK(feed.state().size() == Only(feed.state(), ids).size());
  // Windows only go forward.
  uint64_t prev = feed.snapshot_end().window;
  for (const auto& n : feed.notifies()) {
    CHECK(n.window > prev);
    prev = n.window;
  }
}

TEST_CASE("subscribe: without bootstrap, SNAPSHOT_END comes first and names the start") {
  testing::TestServer server;
  Writer w(server, "w", Ids(10), 1);
  std::string before = w.Put("a", 1);
  Feed feed(server.Connect());
  feed.Subscribe(Sub());
  feed.WaitSnapshotEnd();
  CHECK(feed.snapshot_end().total == 0);
  CHECK_FALSE(feed.snapshot_end().reset);
  CHECK(feed.state().empty());
  std::string after = w.Put("a", 2);
  feed.WaitForRecord("a", after);
  REQUIRE(feed.notifies().size() == 1);
  CHECK(feed.notifies()[0].window > feed.snapshot_end().window);
}

TEST_CASE("subscribe: a bootstrap with nothing matching still ends, and prefixes filter") {
  testing::TestServer server;
  Writer w(server, "w", Ids(10), 1);
  w.Put("a-1", 1);
  w.Put("b-1", 1);
  Feed feed(server.Connect());
  net::Subscribe s = Sub(net::kSubscribeBootstrap);
  s.id_prefix = "zzz";
  feed.Subscribe(s);
  feed.WaitSnapshotEnd();
  CHECK(feed.snapshot_end().total == 0);
  CHECK(feed.snapshot_end().reset);

  Feed b(server.Connect());
  s.id_prefix = "b-";
  b.Subscribe(s);
  b.WaitSnapshotEnd();
  REQUIRE(b.snapshot().size() == 1);
  CHECK(b.snapshot()[0].id == "b-1");
  w.Put("a-2", 1);
  std::string rec = w.Put("b-2", 7);
  b.WaitForRecord("b-2", rec);
  CHECK(b.state().count("a-2") == 0);
}

TEST_CASE("subscribe: flag bits this version does not know are ignored") {
  testing::TestServer server;
  Writer w(server, "w", Ids(10), 1);
  std::string rec = w.Put("x-1", 3);
  Feed feed(server.Connect());
  feed.Subscribe(Sub(0x80 | 0x04 | net::kSubscribeBootstrap));
  feed.WaitSnapshotEnd();
  CHECK(feed.errors.empty());
  REQUIRE(feed.snapshot().size() == 1);
  CHECK(feed.snapshot()[0].id == "x-1");
  rec = w.Put("x-2", 4);
  feed.WaitForRecord("x-2", rec);
}

TEST_CASE("subscribe: projection sends only the asked fields and skips other changes") {
  testing::TestServer server;
  Writer w(server, "w", Ids(10), 1);
  const engine::Schema& player = *w.client().FindSchema(kPlayer);
  Feed feed(server.Connect());
  net::Subscribe s = Sub();
  s.field_mask = uint64_t{1} << player.FieldIndex("score");
  feed.Subscribe(s);
  feed.WaitSnapshotEnd();
  std::string full = Record(player, {{"score", int64_t{5}}, {"health", int64_t{9}}});
  REQUIRE(w.client().Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "p", full)).ok());
  REQUIRE(WaitForAck(w.client(), 1));
  feed.WaitForRecord("p", Record(player, {{"score", int64_t{5}}}));
  // health alone changes: nothing for this projection; then score changes.
  REQUIRE(w.client()
              .Send(WriteFrame(FrameType::kPatch, 2, 0, kPlayer, "p",
                               Record(player, {{"health", int64_t{1}}})))
              .ok());
  REQUIRE(WaitForAck(w.client(), 2));
  REQUIRE(w.client()
              .Send(WriteFrame(FrameType::kPatch, 3, 0, kPlayer, "p",
                               Record(player, {{"score", int64_t{6}}})))
              .ok());
  REQUIRE(WaitForAck(w.client(), 3));
  feed.WaitForRecord("p", Record(player, {{"score", int64_t{6}}}));
  CHECK(feed.notifies().size() == 2);
  CHECK(feed.notifies().back().changes[0].changed_mask == s.field_mask);
}

TEST_CASE("subscribe: include_prev is the state at the window start, deletes, changed masks") {
  testing::TestServer server;
  Writer w(server, "w", Ids(10), 1);
  const engine::Schema& player = *w.client().FindSchema(kPlayer);
  Feed feed(server.Connect());
  feed.Subscribe(Sub(net::kSubscribeIncludePrev));
  feed.WaitSnapshotEnd();
  std::string a = w.Put("p", 1);
  feed.WaitForRecord("p", a);
  CHECK_FALSE(feed.notifies().back().changes[0].had_prev);
  std::string b = Record(player, {{"score", int64_t{2}}, {"level", int64_t{3}}});
  REQUIRE(w.client().Send(WriteFrame(FrameType::kAssert, 100, 0, kPlayer, "p", b)).ok());
  REQUIRE(WaitForAck(w.client(), 100));
  feed.WaitForRecord("p", b);
  const net::ChangeEntry& c = feed.notifies().back().changes[0];
  CHECK(c.had_prev);
  CHECK(c.prev == a);
  uint64_t score = uint64_t{1} << player.FieldIndex("score");
  uint64_t level = uint64_t{1} << player.FieldIndex("level");
  CHECK(c.changed_mask == (score | level));
  CHECK(c.ts > 0);
  // Retracting the only claim deletes the entity.
  REQUIRE(w.client().Send(WriteFrame(FrameType::kRetract, 101, 0, kPlayer, "p")).ok());
  REQUIRE(WaitForAck(w.client(), 101));
  feed.WaitForAbsent("p");
  const net::ChangeEntry& d = feed.notifies().back().changes[0];
  CHECK(d.kind == net::kChangeDelete);
  CHECK(d.prev == b);
}

TEST_CASE("subscribe: 1,000 updates to one entity inside one window are one change") {
  testing::TestServerOptions o;
  o.window = std::chrono::milliseconds(500);  // long enough to hold the whole burst
  testing::TestServer server(o);
  Writer w(server, "w", Ids(10), 1);
  const engine::Schema& player = *w.client().FindSchema(kPlayer);
  Feed feed(server.Connect());
  feed.Subscribe(Sub());
  feed.WaitSnapshotEnd();
  std::string frames;
  for (int i = 1; i <= 1000; ++i) {
    frames += WriteFrame(FrameType::kAssert, static_cast<uint64_t>(i), 0, kPlayer, "hot",
                         Record(player, {{"score", int64_t{i}}}));
  }
  REQUIRE(w.client().Send(frames).ok());
  REQUIRE(WaitForAck(w.client(), 1000));
  feed.WaitForRecord("hot", Record(player, {{"score", int64_t{1000}}}));
  REQUIRE(feed.notifies().size() == 1);
  CHECK(feed.notifies()[0].changes.size() == 1);
}

TEST_CASE("subscribe: resume sends only what changed after the window, deletes included") {
  testing::TestServer server;
  auto ids = Ids(2000);
  Writer w(server, "w", ids, 5);
  for (const auto& id : ids)
    w.Put(id, 1);
  Feed first(server.Connect());
  first.Subscribe(Sub(net::kSubscribeBootstrap));
  first.WaitSnapshotEnd();
  CHECK(first.snapshot().size() == ids.size());
  std::string rec = w.Put("e-0", 2);
  first.WaitForRecord("e-0", rec);
  uint64_t resume = first.window();
  auto held = first.state();

  // While disconnected: two entities change, one is deleted.
  w.Put("e-1", 5);
  w.Put("e-2", 6);
  REQUIRE(w.client().Send(WriteFrame(FrameType::kRetract, 10'000, 0, kPlayer, "e-3")).ok());
  REQUIRE(WaitForAck(w.client(), 10'000));

  Feed again(server.Connect());
  again.Subscribe(Sub(0, resume));
  again.WaitSnapshotEnd();
  CHECK_FALSE(again.snapshot_end().reset);
  std::map<std::string, uint8_t> got;
  for (const auto& e : again.snapshot())
    got[e.id] = e.kind;
  CHECK(got == std::map<std::string, uint8_t>{{"e-1", net::kChangeUpsert},
                                              {"e-2", net::kChangeUpsert},
                                              {"e-3", net::kChangeDelete}});
  // Applied to what the first feed held, it is the server's state.
  testing::ApplyEntries(held, again.snapshot());
  CHECK(held == ServerState(w.client(), *w.client().FindSchema(kPlayer), ids));
}

TEST_CASE("subscribe: resuming from an unknown or forgotten window gets the full state") {
  testing::TestServer server;
  Writer w(server, "w", Ids(10), 1);
  w.Put("a", 1);
  Feed feed(server.Connect());
  feed.Subscribe(Sub(0, 1'000'000));  // newer than any window of this server
  feed.WaitSnapshotEnd();
  CHECK(feed.snapshot_end().reset);
  CHECK(feed.snapshot().size() == 1);
}

TEST_CASE("subscribe: resumes racing the pruning of their window end in a snapshot") {
  // Deletes every window and a retention of 1 us: a resume from a window just behind
  // the newest passes the fanout's check and is often found too old by a partition
  // (which has pruned past it meanwhile), so the fanout falls back to a reset from
  // its walk (the sanitizer build catches a walk freed under its own lock there).
  testing::TestServerOptions opt;
  opt.resume_retention = std::chrono::microseconds(1);
  testing::TestServer server(opt);
  auto w = server.Connect("churn");
  const engine::Schema& p = *w->FindSchema(kPlayer);
  const std::string rec = Record(p, {{"score", int64_t{1}}});
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    uint64_t seq = 0;
    while (!stop.load()) {
      std::string frames;
      for (int i = 0; i < 20; ++i)
        frames += WriteFrame(FrameType::kAssert, ++seq, 0, kPlayer, fmt::format("c-{}", i), rec);
      for (int i = 0; i < 20; ++i)
        frames += WriteFrame(FrameType::kRetract, ++seq, 0, kPlayer, fmt::format("c-{}", i));
      if (!w->Send(frames).ok() || !WaitForAck(*w, seq)) break;
    }
  });
  uint64_t resets = 0, deltas = 0;
  for (int i = 0; i < 60; ++i) {
    Feed feed(server.Connect());
    uint64_t last = server.engine().last_window();
    feed.Subscribe(Sub(0, last > 1 ? last - 1 : 1));
    feed.WaitSnapshotEnd();
    (feed.snapshot_end().reset ? resets : deltas)++;
  }
  stop = true;
  churn.join();
  MESSAGE(resets, " resumes reset, ", deltas, " deltas");
  CHECK(resets + deltas == 60);
}

TEST_CASE("subscribe: resume across a restart is a delta, past the retention it is a reset") {
  auto dir = std::filesystem::temp_directory_path() / fmt::format("conv-sub-{}", ::getpid());
  std::filesystem::remove_all(dir);
  auto ids = Ids(100);
  uint64_t resume = 0;
  std::map<std::string, std::string> held;
  {
    testing::DurableServerOptions o;
    o.data_dir = dir.string();
    testing::DurableServer server(o);
    Writer w(server, "w", ids, 3);
    for (const auto& id : ids)
      w.Put(id, 1);
    Feed feed(server.Connect());
    feed.Subscribe(Sub(net::kSubscribeBootstrap));
    feed.WaitSnapshotEnd();
    std::string rec = w.Put("e-0", 9);
    feed.WaitForRecord("e-0", rec);
    resume = feed.window();
    held = feed.state();
  }
  {
    testing::DurableServerOptions o;
    o.data_dir = dir.string();
    testing::DurableServer server(o);
    Writer w(server, "w", ids, 3);
    w.Put("e-5", 50);
    REQUIRE(w.client().Send(WriteFrame(FrameType::kRetract, 1'000, 0, kPlayer, "e-6")).ok());
    REQUIRE(WaitForAck(w.client(), 1'000));
    w.SetSeq(1'000);
    Feed feed(server.Connect());
    feed.Subscribe(Sub(0, resume));
    feed.WaitSnapshotEnd();
    CHECK_FALSE(feed.snapshot_end().reset);
    CHECK(feed.snapshot().size() == 2);  // e-5 and the tombstone of e-6, nothing else
    testing::ApplyEntries(held, feed.snapshot());
    CHECK(held == ServerState(w.client(), *w.client().FindSchema(kPlayer), ids));
  }
  {
    testing::DurableServerOptions o;
    o.data_dir = dir.string();
    o.resume_retention = std::chrono::milliseconds(1);
    testing::DurableServer server(o);
    Writer w(server, "w", ids, 3);
    REQUIRE(w.client().Send(WriteFrame(FrameType::kRetract, 2'000, 0, kPlayer, "e-7")).ok());
    REQUIRE(WaitForAck(w.client(), 2'000));
    w.SetSeq(2'000);
    // Later windows drop the tombstone, whose retention has run out.
    WaitUntil([&] {
      w.Put("e-8", 1);
      return server.engine().retained_from() > resume;
    });
    Feed feed(server.Connect());
    feed.Subscribe(Sub(0, resume));
    feed.WaitSnapshotEnd();
    CHECK(feed.snapshot_end().reset);
    CHECK(feed.state() == ServerState(w.client(), *w.client().FindSchema(kPlayer), ids));
    CHECK(Stat(w.client(), "resume_resets") == 1);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("subscribe: a leased source's claims are retracted when it does not come back") {
  testing::TestServer server;
  Feed feed(server.Connect());
  feed.Subscribe(Sub());
  feed.WaitSnapshotEnd();
  net::Hello hello;
  hello.source = "ephemeral";
  hello.lease_ms = 100;
  std::string rec;
  {
    auto c = net::Client::Connect(server.address(), hello);
    REQUIRE(c.ok());
    rec = Record(*(*c)->FindSchema(kPlayer), {{"score", int64_t{3}}});
    REQUIRE((*c)->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "eph", rec)).ok());
    REQUIRE(WaitForAck(**c, 1));
  }
  feed.WaitForRecord("eph", rec);
  feed.WaitForAbsent("eph");  // the lease ran out: retracted, and notified
  CHECK(Stat(feed.client(), "lease_expirations") == 1);

  // Coming back within the lease keeps the claims.
  hello.source = "returns";
  hello.lease_ms = 2'000;
  {
    auto c = net::Client::Connect(server.address(), hello);
    REQUIRE(c.ok());
    REQUIRE((*c)->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "back", rec)).ok());
    REQUIRE(WaitForAck(**c, 1));
  }
  auto again = net::Client::Connect(server.address(), hello);
  REQUIRE(again.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(2'300));
  auto r = (*again)->Query(*(*again)->FindSchema(kPlayer), "back", false);
  REQUIRE(r.ok());
  CHECK(r->found);
  CHECK(Stat(feed.client(), "lease_expirations") == 1);
}

TEST_CASE("subscribe: a taken-over connection's lease does not outlive its successor's") {
  // The first connection asks for a lease, the one taking it over for none: when
  // both are gone, the claims stay.
  testing::TestServer server;
  net::Hello hello;
  hello.source = "handed";
  hello.lease_ms = 200;
  auto first = net::Client::Connect(server.address(), hello);
  REQUIRE(first.ok());
  const engine::Schema& p = *(*first)->FindSchema(kPlayer);
  std::string rec = Record(p, {{"score", int64_t{1}}});
  REQUIRE((*first)->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "h-1", rec)).ok());
  REQUIRE(WaitForAck(**first, 1));
  hello.lease_ms = 0;
  {
    auto second = server.Connect("handed");
    REQUIRE(second->welcome().last_applied_seq == 1);
    REQUIRE(second->Send(WriteFrame(FrameType::kAssert, 2, 0, kPlayer, "h-2", rec)).ok());
    REQUIRE(WaitForAck(*second, 2));
  }
  first->reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  auto reader = server.Connect();
  for (const char* id : {"h-1", "h-2"}) {
    CAPTURE(id);
    auto r = reader->Query(*reader->FindSchema(kPlayer), id, false);
    REQUIRE(r.ok());
    CHECK(r->found);
  }
  CHECK(Stat(*reader, "lease_expirations") == 0);
}

TEST_CASE("subscribe: a source back as its lease runs out keeps what it wrote after HELLO") {
  // The new connection says HELLO around the moment the lease expires, often on
  // another I/O thread than the one retracting: an op acknowledged to it must never
  // be taken by the retraction. Whether the old claim survives depends on which
  // came first.
  const uint64_t seed = testing::TestSeed("CONV_SEED", 20261130);
  MESSAGE("seed ", seed, " (CONV_SEED)");
  std::mt19937_64 rng(seed);
  testing::TestServer server;
  auto reader = server.Connect();
  const engine::Schema& p = *reader->FindSchema(kPlayer);
  std::string rec = Record(p, {{"score", int64_t{1}}});
  net::Hello leased;
  leased.source = "flicker";
  leased.lease_ms = 20;
  uint64_t expirations_seen = 0;
  // A writer on other entities keeps the partitions' queues from running empty, so
  // that the retraction and the new connection's op meet in them.
  std::atomic<bool> done{false};
  std::thread busy([&] {
    auto w = server.Connect("busy");
    testing::OpGenerator gen(p, seed, 5'000);
    uint64_t seq = w->welcome().last_applied_seq;
    while (!done.load()) {
      std::string frames;
      for (int i = 0; i < 256; ++i)
        frames += gen.Frame(0, ++seq);
      if (!w->Send(frames).ok()) break;
    }
  });
  for (int round = 0; round < 40; ++round) {
    CAPTURE(round);
    uint64_t m;
    {
      auto c = net::Client::Connect(server.address(), leased);
      REQUIRE(c.ok());
      m = (*c)->welcome().last_applied_seq;
      REQUIRE((*c)->Send(WriteFrame(FrameType::kAssert, m + 1, 0, kPlayer,
                                    fmt::format("old-{}", round), rec))
                  .ok());
      REQUIRE(WaitForAck(**c, m + 1));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(10'000 + rng() % 25'000));
    std::string id = fmt::format("new-{}", round);
    {
      auto c = server.Connect("flicker");
      uint64_t n = c->welcome().last_applied_seq;
      REQUIRE(n >= m + 1);
      REQUIRE(c->Send(WriteFrame(FrameType::kAssert, n + 1, 0, kPlayer, id, rec)).ok());
      REQUIRE(WaitForAck(*c, n + 1));
      // A retraction still on its way would land within a few windows.
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      auto r = reader->Query(p, id, false);
      REQUIRE(r.ok());
      CHECK(r->found);
    }
    expirations_seen = Stat(*reader, "lease_expirations");
  }
  done = true;
  busy.join();
  MESSAGE("leases that ran out before the source came back: ", expirations_seen, " of 40");
}

TEST_CASE("subscribe: a lease survives a restart, counted from recovery") {
  auto dir = std::filesystem::temp_directory_path() / fmt::format("conv-lease-{}", ::getpid());
  std::filesystem::remove_all(dir);
  testing::DurableServerOptions o;
  o.data_dir = dir.string();
  std::string rec;
  {
    testing::DurableServer server(o);
    for (const char* source : {"gone", "back"}) {
      net::Hello hello;
      hello.source = source;
      hello.lease_ms = 400;
      auto c = net::Client::Connect(server.address(), hello);
      REQUIRE(c.ok());
      rec = Record(*(*c)->FindSchema(kPlayer), {{"score", int64_t{1}}});
      REQUIRE((*c)->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, source, rec)).ok());
      REQUIRE(WaitForAck(**c, 1));
    }
    server.Shutdown();  // the leases were pending: a graceful stop leaves the claims
  }
  testing::DurableServer server(o);
  auto reader = server.Connect();
  const engine::Schema& p = *reader->FindSchema(kPlayer);
  for (const char* id : {"gone", "back"}) {
    auto r = reader->Query(p, id, false);
    REQUIRE(r.ok());
    CHECK(r->found);
  }
  // "back" returns within its lease (counted from the restart), "gone" never does.
  auto back = server.Connect("back");
  CHECK(back->welcome().last_applied_seq == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(900));
  auto gone = reader->Query(p, "gone", false);
  REQUIRE(gone.ok());
  CHECK_FALSE(gone->found);
  auto kept = reader->Query(p, "back", false);
  REQUIRE(kept.ok());
  CHECK(kept->found);
  CHECK(Stat(*reader, "lease_expirations") == 1);
  server.Shutdown();
  std::filesystem::remove_all(dir);
}

TEST_CASE("subscribe: interval_ms paces each entity and still delivers the latest state") {
  testing::TestServer server;
  Writer w(server, "w", Ids(10), 1);
  Feed feed(server.Connect());
  net::Subscribe s = Sub();
  s.interval_ms = 200;
  feed.Subscribe(s);
  feed.WaitSnapshotEnd();
  auto start = std::chrono::steady_clock::now();
  std::string last;
  int64_t v = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1'000)) {
    last = w.Put("ticker", ++v);
    while (feed.ReadOne(std::chrono::milliseconds(1))) {
    }
  }
  feed.WaitForRecord("ticker", last);
  REQUIRE(v > 20);
  // 1 s of updates at a 200 ms interval: about 5 notifications, never one per update.
  CHECK(feed.notifies().size() <= 8);
  CHECK(feed.notifies().size() >= 2);
}

TEST_CASE("subscribe: a bootstrap nobody reads ends with overloaded and its walks are dropped") {
  testing::TestServerOptions o;
  o.server.subscriber_backlog = 64 << 10;
  o.server.snapshot_stall_limit = std::chrono::milliseconds(300);
  testing::TestServer server(o);
  // Far more than the backlog limit, the walks' buffers and the kernel's socket
  // buffers hold: ~100,000 entities of ~220 bytes.
  auto w = server.Connect("w");
  const engine::Schema& player = *w->FindSchema(kPlayer);
  const std::string name(200, 'n');
  uint64_t seq = 0;
  for (int batch = 0; batch < 100; ++batch) {
    std::string frames;
    for (int i = 0; i < 1000; ++i) {
      frames += WriteFrame(FrameType::kAssert, ++seq, 0, kPlayer, fmt::format("e-{}", seq),
                           Record(player, {{"name", name}, {"score", int64_t{1}}}));
    }
    REQUIRE(w->Send(frames).ok());
  }
  REQUIRE(WaitForAck(*w, seq));
  testing::RawConnection raw(server.port());
  std::string hello_and_sub = testing::HelloFrame("");
  net::Subscribe sub = Sub(net::kSubscribeBootstrap);
  sub.sub = 7;
  net::EncodeSubscribe(hello_and_sub, sub);
  REQUIRE(raw.Send(hello_and_sub));  // and never read
  uint64_t stalled = 0;
  for (int i = 0; i < 1000 && stalled == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    stalled = Stat(*w, "stalled_snapshots");
  }
  CHECK(stalled == 1);
  CHECK(Stat(*w, "subscribers") == 0);
  // The partitions took the walks down: a new bootstrap gets the whole state.
  Feed feed(server.Connect());
  feed.Subscribe(Sub(net::kSubscribeBootstrap));
  feed.WaitSnapshotEnd();
  CHECK(feed.snapshot_end().total == seq);
  // What was queued for the stalled subscriber arrives, then its ERROR.
  for (;;) {
    auto f = raw.ReadFrame();
    REQUIRE_MESSAGE(f.ok(), f.message());
    if (!testing::IsType(*f, FrameType::kError)) continue;
    net::Error e = ErrorOf(*f);
    CHECK(e.seq_or_req == 7);
    CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kOverloaded));
    CHECK_MESSAGE(e.message.find("not read") != std::string::npos, e.message);
    break;
  }
  // The id is free again: the same sub subscribes anew (live only) and is served.
  sub.flags = 0;
  std::string again;
  net::EncodeSubscribe(again, sub);
  REQUIRE(raw.Send(again));
  for (;;) {
    auto f = raw.ReadFrame();
    REQUIRE_MESSAGE(f.ok(), f.message());
    if (testing::IsType(*f, FrameType::kError)) FAIL_CHECK(ErrorOf(*f).message);
    if (testing::IsType(*f, FrameType::kError) || testing::IsType(*f, FrameType::kSnapshotEnd)) {
      break;
    }
  }
  CHECK(Stat(*w, "subscribers") == 2);  // the feed's and the new one
}

TEST_CASE("subscribe: a subscriber that stops reading is conflated, bounded, and catches up") {
  uint64_t seed = Seed();
  testing::TestServerOptions o;
  o.server.subscriber_backlog = 256 << 10;
  testing::TestServer server(o);
  // Few entities, so that what the slow subscriber holds merged stays under its limit
  // (300 of about 760 bytes with the previous state), with large records, so that
  // the socket buffers fill and the server's backlog passes the limit.
  auto ids = Ids(300);
  Writer w(server, "w", ids, seed);
  w.SetName(std::string(300, 'n'));
  Feed fast(server.Connect());
  fast.Subscribe(Sub());
  fast.WaitSnapshotEnd();
  Feed slow(server.Connect());
  net::Subscribe s = Sub(net::kSubscribeIncludePrev);
  slow.Subscribe(s);
  slow.WaitSnapshotEnd();
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done)
      fast.ReadOne(std::chrono::milliseconds(20));
  });
  uint64_t rss0 = testing::RssKiB();
  uint64_t max_backlog = 0;
  for (int i = 0; i < 150; ++i) {
    w.Batch(1000);
    max_backlog = std::max(max_backlog, Stat(w.client(), "subscriber_backlog_bytes"));
  }
  uint64_t rss1 = testing::RssKiB();
  CHECK(Stat(w.client(), "conflations") >= 1);
  CHECK(Stat(w.client(), "conflated_changes") > 0);
  // The slow subscriber's backlog stays near its limit (plus what the kernel buffers
  // hold), whatever it does; without conflation 150,000 changes would queue.
  CHECK(max_backlog < (3u << 20));
  CHECK(Stat(w.client(), "held_overflows") == 0);
  MESSAGE("RSS " << rss0 << " KiB -> " << rss1 << " KiB; max backlog " << max_backlog);
  testing::CheckRssGrowth(rss0, rss1, 64 * 1024);
  std::string rec = w.Put("zz-end", 1);
  done = true;
  reader.join();
  ids.push_back("zz-end");
  fast.WaitForRecord("zz-end", rec);
  slow.WaitForRecord("zz-end", rec);
  auto truth = ServerState(w.client(), *w.client().FindSchema(kPlayer), ids);
  CHECK(Only(fast.state(), ids) == truth);
  CHECK(Only(slow.state(), ids) == truth);
}

TEST_CASE("subscribe: subscribers that fall behind together share one merge, each stream exact") {
  uint64_t seed = Seed();
  testing::TestServerOptions o;
  o.server.subscriber_backlog = 256 << 10;  // 300 entities merged fit, as above
  testing::TestServer server(o);
  auto ids = Ids(300);
  Writer w(server, "w", ids, seed);
  w.SetName(std::string(300, 'n'));
  // Six subscribers of two shapes that read nothing while the writer runs: they pass
  // their backlog together and conflate at the same epoch window.
  std::vector<std::unique_ptr<Feed>> feeds;
  for (int i = 0; i < 6; ++i) {
    feeds.push_back(std::make_unique<Feed>(server.Connect()));
    feeds.back()->Subscribe(Sub(i < 4 ? net::kSubscribeIncludePrev : 0));
    feeds.back()->WaitSnapshotEnd();
  }
  for (int i = 0; i < 150; ++i)
    w.Batch(1000);
  uint64_t conflations = Stat(w.client(), "conflations");
  uint64_t shared = Stat(w.client(), "shared_conflations");
  MESSAGE(conflations << " conflations, " << shared << " shared");
  CHECK(conflations >= 2);
  CHECK(shared >= 1);
  CHECK(Stat(w.client(), "held_overflows") == 0);
  std::string rec = w.Put("zz-end", 1);
  ids.push_back("zz-end");
  for (auto& f : feeds)
    f->WaitForRecord("zz-end", rec);
  auto truth = ServerState(w.client(), *w.client().FindSchema(kPlayer), ids);
  for (size_t i = 0; i < feeds.size(); ++i) {
    Feed& f = *feeds[i];
    CAPTURE(i);
    CHECK(Only(f.state(), ids) == truth);
    if (i >= 4) continue;
    // Every prev is the state this subscriber last had of the entity, whether it came
    // in a window's frame or in a merge it shared with others.
    std::map<std::string, std::string> state;
    size_t mismatches = 0;
    for (const net::Notify& n : f.notifies()) {
      for (const net::ChangeEntry& e : n.changes) {
        auto it = state.find(e.id);
        bool had = it != state.end();
        if (e.had_prev != had || (had && e.prev != it->second)) ++mismatches;
        testing::ApplyEntries(state, {e});
      }
    }
    CHECK(mismatches == 0);
    CHECK(Only(state, ids) == truth);
  }
}

TEST_CASE(
    "subscribe: merged changes past the backlog limit end the subscription, a resume catches up") {
  uint64_t seed = Seed();
  testing::TestServerOptions o;
  o.server.subscriber_backlog = 64 << 10;
  testing::TestServer server(o);
  // 5,000 entities merged take far more than 64 KiB.
  auto ids = Ids(5000);
  Writer w(server, "w", ids, seed);
  // Paced to one flush an hour, it merges every change: the same as a subscriber
  // conflated for being slow, without waiting for the socket buffers to fill.
  Feed slow(server.Connect());
  net::Subscribe s = Sub(net::kSubscribeIncludePrev);
  s.interval_ms = 3'600'000;
  slow.Subscribe(s);
  slow.WaitSnapshotEnd();
  uint64_t rss0 = testing::RssKiB();
  uint64_t max_held = 0;
  for (int i = 0; i < 30; ++i) {
    w.Batch(1000);
    max_held = std::max(max_held, Stat(w.client(), "subscriber_held_bytes"));
  }
  uint64_t rss1 = testing::RssKiB();
  MESSAGE("RSS " << rss0 << " KiB -> " << rss1 << " KiB; max held " << max_held);
  CHECK(Stat(w.client(), "held_overflows") == 1);
  CHECK(Stat(w.client(), "subscribers") == 0);
  CHECK(Stat(w.client(), "subscriber_held_bytes") == 0);
  // Past the limit by at most one window's merge of 1,000 ops.
  CHECK(max_held < (64u << 10) + 1000 * 512);
  testing::CheckRssGrowth(rss0, rss1, 64 * 1024);
  // What was queued arrives, then the ERROR; the subscription resumes from the last
  // window read and the resume brings what changed since.
  while (slow.errors.empty())
    REQUIRE(slow.ReadOne(testing::kReplyTimeout));
  REQUIRE(slow.errors.size() == 1);
  CHECK(slow.errors[0].seq_or_req == s.sub);
  CHECK(slow.errors[0].code == static_cast<uint64_t>(net::ErrorCode::kOverloaded));
  CHECK_MESSAGE(slow.errors[0].message.find("fell behind") != std::string::npos,
                slow.errors[0].message);
  slow.Subscribe(Sub(net::kSubscribeIncludePrev, slow.window()));
  slow.WaitSnapshotEnd();
  CHECK_FALSE(slow.snapshot_end().reset);
  std::string rec = w.Put("zz-end", 1);
  ids.push_back("zz-end");
  slow.WaitForRecord("zz-end", rec);
  CHECK(Only(slow.state(), ids) == ServerState(w.client(), *w.client().FindSchema(kPlayer), ids));
}

TEST_CASE("subscribe: one connection's snapshots are sent one after the other, each whole") {
  testing::TestServer server;
  auto w = server.Connect("w");
  const engine::Schema& player = *w->FindSchema(kPlayer);
  uint64_t seq = 0;
  std::string frames;
  for (int i = 0; i < 3000; ++i) {
    frames += WriteFrame(FrameType::kAssert, ++seq, 0, kPlayer, fmt::format("e-{}", i),
                         Record(player, {{"score", int64_t{i}}}));
  }
  REQUIRE(w->Send(frames).ok());
  REQUIRE(WaitForAck(*w, seq));
  // Three bootstraps asked at once on one connection; a resume-less live one too.
  auto c = server.Connect();
  std::string subs;
  for (uint64_t sub = 1; sub <= 4; ++sub) {
    net::Subscribe s = Sub(sub <= 3 ? net::kSubscribeBootstrap : 0);
    s.sub = sub;
    net::EncodeSubscribe(subs, s);
  }
  REQUIRE(c->Send(subs).ok());
  std::map<uint64_t, uint64_t> entries, totals, end_order;
  uint64_t current = 0;  // the sub whose SNAPSHOT frames are arriving
  while (totals.size() < 4) {
    c->set_timeout(testing::kReplyTimeout);
    auto f = c->ReadFrame();
    REQUIRE_MESSAGE(f.ok(), f.message());
    if (testing::IsType(*f, FrameType::kSnapshot)) {
      net::Snapshot snap;
      REQUIRE(net::DecodeSnapshot(f->payload, player, &snap));
      // No interleaving: a snapshot's frames all come before the next one's.
      if (current != snap.sub) {
        CHECK(entries[snap.sub] == 0);
        CHECK((current == 0 || totals.count(current) == 1));
        current = snap.sub;
      }
      entries[snap.sub] += snap.entries.size();
    } else if (testing::IsType(*f, FrameType::kSnapshotEnd)) {
      net::SnapshotEnd end;
      REQUIRE(net::DecodeSnapshotEnd(f->payload, &end));
      totals[end.sub] = end.total;
      end_order[end.sub] = totals.size();
    }
  }
  for (uint64_t sub = 1; sub <= 3; ++sub) {
    CHECK(totals[sub] == 3000);
    CHECK(entries[sub] == 3000);
  }
  CHECK(totals[4] == 0);
  // The live-only subscription did not wait for the snapshots.
  CHECK(end_order[4] <= 2);
}

TEST_CASE("subscribe: SUBSCRIBE and UNSUBSCRIBE errors name the subscription") {
  testing::TestServer server;
  auto c = server.Connect();
  auto expect = [&](net::Subscribe s, net::ErrorCode code, std::string_view text) {
    std::string f;
    net::EncodeSubscribe(f, s);
    REQUIRE(c->Send(f).ok());
    auto r = c->ReadFrame();
    REQUIRE(r.ok());
    net::Error e = ErrorOf(*r);
    CHECK(e.seq_or_req == s.sub);
    CHECK(e.code == static_cast<uint64_t>(code));
    CHECK_MESSAGE(e.message.find(text) != std::string::npos, e.message);
  };
  net::Subscribe s = Sub();
  s.sub = 7;
  s.schema_id = 99;
  expect(s, net::ErrorCode::kUnknownSchema, "schema id 99");
  s = Sub();
  s.sub = 8;
  s.field_mask = uint64_t{1} << 40;
  expect(s, net::ErrorCode::kBadValue, "field_mask");
  s = Sub();
  s.sub = 9;
  s.id_prefix.assign(300, 'x');
  expect(s, net::ErrorCode::kBadId, "id_prefix is 300 bytes");
  s = Sub();
  s.sub = 10;
  s.interval_ms = 3'600'001;
  expect(s, net::ErrorCode::kBadValue, "interval_ms");
  // A live id cannot be reused; after UNSUBSCRIBE it can.
  Feed feed(std::move(c));
  feed.Subscribe(Sub());
  feed.WaitSnapshotEnd();
  c = server.Connect();
  {
    std::string f;
    net::EncodeSubscribe(f, Sub());
    REQUIRE(c->Send(f).ok());
    while (true) {
      auto r = c->ReadFrame();
      REQUIRE(r.ok());
      if (r->type == static_cast<uint8_t>(FrameType::kSnapshotEnd)) break;
    }
  }
  expect(Sub(), net::ErrorCode::kBadValue, "already live");
  std::string un;
  net::EncodeReq(un, FrameType::kUnsubscribe, 1);
  REQUIRE(c->Send(un).ok());
  un.clear();
  net::EncodeReq(un, FrameType::kUnsubscribe, 1);
  REQUIRE(c->Send(un).ok());
  auto r = c->ReadFrame();
  REQUIRE(r.ok());
  net::Error e = ErrorOf(*r);
  CHECK(e.seq_or_req == 1);
  CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kUnknownSubscription));
  WaitUntil([&] { return Stat(*c, "subscribers") == 1; });  // feed's is still live

  // A malformed SUBSCRIBE is a connection-level bad_frame.
  testing::RawConnection raw(server.port());
  REQUIRE(raw.Send(testing::HelloFrame("")));
  REQUIRE(raw.ReadFrame().ok());  // WELCOME
  REQUIRE(raw.Send(testing::RawFrame(0x30, std::string("\x01", 1))));
  auto bad = raw.ReadFrame();
  REQUIRE(bad.ok());
  CHECK(ErrorOf(*bad).code == static_cast<uint64_t>(net::ErrorCode::kBadFrame));
  // So is sub 0: its errors could not be told from connection-level ones.
  testing::RawConnection zero(server.port());
  REQUIRE(zero.Send(testing::HelloFrame("")));
  REQUIRE(zero.ReadFrame().ok());  // WELCOME
  net::Subscribe s0 = Sub();
  s0.sub = 0;
  std::string f0;
  net::EncodeSubscribe(f0, s0);
  REQUIRE(zero.Send(f0));
  auto bad0 = zero.ReadFrame();
  REQUIRE(bad0.ok());
  net::Error e0 = ErrorOf(*bad0);
  CHECK(e0.code == static_cast<uint64_t>(net::ErrorCode::kBadFrame));
  CHECK(e0.message.find("sub 0") != std::string::npos);
}

TEST_CASE("subscribe: more than 1,024 subscriptions on one connection are refused") {
  testing::TestServer server;
  auto c = server.Connect();
  std::string frames;
  for (uint64_t i = 1; i <= 1025; ++i) {
    net::Subscribe s = Sub();
    s.sub = i;
    net::EncodeSubscribe(frames, s);
  }
  REQUIRE(c->Send(frames).ok());
  int ends = 0;
  while (true) {
    auto r = c->ReadFrame();
    REQUIRE(r.ok());
    if (r->type == static_cast<uint8_t>(FrameType::kSnapshotEnd)) ++ends;
    if (r->type == static_cast<uint8_t>(FrameType::kError)) {
      net::Error e = ErrorOf(*r);
      CHECK(e.seq_or_req == 1025);
      CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kOverloaded));
      break;
    }
  }
}

TEST_CASE("subscribe: a window too big for one frame is split, only its last part names it") {
  testing::TestServerOptions o;
  o.window = std::chrono::milliseconds(500);  // the whole burst in one window
  testing::TestServer server(o);
  Writer w(server, "w", Ids(10), 1);
  const engine::Schema& player = *w.client().FindSchema(kPlayer);
  Feed feed(server.Connect());
  feed.Subscribe(Sub());
  feed.WaitSnapshotEnd();
  // Sent at once, up to twice the writer's first credit (the server reads that much
  // without waiting for an ACK), in records large enough to pass 256 KiB.
  std::string frames;
  const int n = static_cast<int>(2 * net::WriterCredit::kInitial);
  const std::string name(400, 'n');
  for (int i = 1; i <= n; ++i) {
    frames += WriteFrame(FrameType::kAssert, static_cast<uint64_t>(i), 0, kPlayer,
                         "big-" + std::to_string(i),
                         Record(player, {{"name", name}, {"score", int64_t{i}}}));
  }
  w.client().set_obey_credit(false);
  REQUIRE(w.client().Send(frames).ok());
  REQUIRE(WaitForAck(w.client(), n));
  feed.WaitForRecord("big-" + std::to_string(n),
                     Record(player, {{"name", name}, {"score", int64_t{n}}}));
  while (feed.state().size() < static_cast<size_t>(n) && feed.ReadOne(testing::kReplyTimeout)) {
  }
  CHECK(feed.state().size() == static_cast<size_t>(n));
  REQUIRE(feed.notifies().size() >= 2);
  uint64_t last = feed.notifies().back().window;
  CHECK(last > feed.snapshot_end().window);
  for (size_t i = 0; i + 1 < feed.notifies().size(); ++i)
    CHECK(feed.notifies()[i].window == feed.snapshot_end().window);
}

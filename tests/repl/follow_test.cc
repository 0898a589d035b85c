// Read replicas (serve --follow, docs/replication.md "Read replicas") and not_owner
// against a three-node NATS cluster on loopback. Test cases named "cluster: ..."
// are labelled `cluster` (tests/repl/labels.cmake).

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/record.h"
#include "engine/schema.h"
#include "net/client.h"
#include "net/messages.h"
#include "net/protocol.h"
#include "repl/jetstream.h"
#include "repl/ownership.h"
#include "repl/stream_reader.h"
#include "support/feed.h"
#include "support/nats_cluster.h"
#include "support/op_model.h"
#include "support/process.h"
#include "support/serve_process.h"
#include "support/test_server.h"

using namespace conv;
using namespace std::chrono_literals;

namespace {

std::string Hex(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes)
    out += fmt::format("{:02x}", c);
  return out;
}

uint64_t Stat(net::Client& c, std::string_view name) {
  auto stats = c.Stats();
  REQUIRE_MESSAGE(stats.ok(), stats.message());
  for (const auto& [n, v] : *stats) {
    if (n == name) return v;
  }
  FAIL("no STATS entry ", name);
  return 0;
}

std::unique_ptr<net::Client> Connect(const std::string& address, const std::string& source = "") {
  net::Hello hello;
  hello.source = source;
  auto c = net::Client::Connect(address, hello, 10s);
  REQUIRE_MESSAGE(c.ok(), c.message());
  return std::move(c).value();
}

// A writer of `gen`'s ops as source `index`: sends seqs (last, last + n] and waits
// for their ACK.
class Writer {
 public:
  Writer(const std::string& address, const testing::OpGenerator& gen, size_t index)
      : gen_(gen), index_(index) {
    client_ = Connect(address, fmt::format("writer-{}", index));
  }
  void Write(uint64_t n, uint64_t per_send = 20) {
    uint64_t target = seq_ + n;
    while (seq_ < target) {
      std::string frames;
      for (uint64_t i = 0; i < per_send && seq_ < target; ++i)
        frames += gen_.Frame(index_, ++seq_);
      REQUIRE(client_->Send(frames).ok());
    }
    AwaitAck(target);
  }
  // An ASSERT of entity kMarker naming its seq, acknowledged: a change every
  // subscriber of the schema is told of, in a window no earlier op of this writer
  // comes after. (The owner's last closed window may hold no change at all: ops that
  // change nothing, such as a RETRACT of an entity this source never claimed.)
  void Mark() {
    engine::RecordBuilder b(gen_.schema());
    REQUIRE(b.Set(0, fmt::format("mark-{}", seq_ + 1)).ok());
    std::string frame;
    ++seq_;
    net::EncodeWriteOp(frame, {net::FrameType::kAssert, seq_, 1'000'000 + seq_, gen_.schema().id,
                               kMarker, b.Encode()});
    REQUIRE(client_->Send(frame).ok());
    AwaitAck(seq_);
  }
  net::Client& client() { return *client_; }
  static constexpr const char* kMarker = "marker";

 private:
  void AwaitAck(uint64_t target) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    uint64_t acked = 0;
    while (acked < target && std::chrono::steady_clock::now() < deadline) {
      net::OwnedFrame f;
      auto got = client_->TryReadFrame(50ms, &f);
      REQUIRE(got.ok());
      if (*got && f.type == static_cast<uint8_t>(net::FrameType::kAck)) {
        REQUIRE(net::DecodeAck(f.payload, &acked));
      }
    }
    REQUIRE_MESSAGE(acked >= target, "ops up to ", target, " not acknowledged in 20 s");
  }

  const testing::OpGenerator& gen_;
  size_t index_;
  uint64_t seq_ = 0;
  std::unique_ptr<net::Client> client_;
};

// Waits until the replica has applied every window the owner closed so far (after
// the writer's ACKs: the owner's durable_window may trail the ACKs it sent by a window,
// its last closed window does not).
uint64_t AwaitCaughtUp(net::Client& owner, net::Client& replica) {
  uint64_t target = Stat(owner, "last_window");
  auto deadline = std::chrono::steady_clock::now() + 20s;
  uint64_t at = 0;
  while ((at = Stat(replica, "follow_window")) < target &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  REQUIRE_MESSAGE(at >= target, "the replica is at window ", at, ", the owner at ", target);
  return target;
}

// The replica's state of `ids` once it equals the owner's, or after 20 s. A window the
// replica counts in follow_window was handed to its partitions, which apply it at
// their next seal: a QUERY right after may not see it yet.
std::map<std::string, std::string> AwaitSameState(net::Client& owner, net::Client& replica,
                                                  const engine::Schema& schema,
                                                  const std::vector<std::string>& ids) {
  auto on_owner = testing::ServerState(owner, schema, ids);
  auto deadline = std::chrono::steady_clock::now() + 20s;
  auto on_replica = testing::ServerState(replica, schema, ids);
  while (on_replica != on_owner && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    on_replica = testing::ServerState(replica, schema, ids);
  }
  return on_replica;
}

// Reads until the feed's last window is at least `w`.
// Reads `f` until it has the record of the writer's last Mark as `owner` answers it
// to a QUERY: every window with a change up to the mark's, and none comes after.
void ReadUntilMark(testing::Feed& f, net::Client& owner, const engine::Schema& schema) {
  const std::string mark = testing::ServerState(owner, schema, {Writer::kMarker})[Writer::kMarker];
  REQUIRE_FALSE(mark.empty());
  auto has_mark = [&] {
    auto it = f.state().find(Writer::kMarker);
    return it != f.state().end() && it->second == mark;
  };
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!has_mark() && std::chrono::steady_clock::now() < deadline)
    f.ReadOne(50ms);
  REQUIRE_MESSAGE(has_mark(), "the feed is at window ", f.window(), " without the last mark");
}

// A NOTIFY's changes in a comparable form, sorted by id (partitions seal in any
// order): kind, id, changed fields, record and previous record.
std::vector<std::string> Changes(const net::Notify& n) {
  std::vector<std::string> out;
  for (const auto& c : n.changes) {
    out.push_back(fmt::format("{} {} {:x} {} {} {}", c.kind, c.id, c.changed_mask, Hex(c.record),
                              c.had_prev, Hex(c.prev)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::map<uint64_t, std::vector<std::string>> ByWindow(const std::vector<net::Notify>& ns,
                                                      uint64_t after) {
  std::map<uint64_t, std::vector<std::string>> out;
  for (const auto& n : ns) {
    if (n.window > after) out[n.window] = Changes(n);
  }
  return out;
}

// The first entities on which two states differ, for failure messages.
std::string Diff(const std::map<std::string, std::string>& a,
                 const std::map<std::string, std::string>& b) {
  std::string out;
  int shown = 0;
  auto show = [&](const std::string& id) {
    auto x = a.find(id);
    auto y = b.find(id);
    out += fmt::format("{}: {} vs {}\n", id, x == a.end() ? "absent" : Hex(x->second),
                       y == b.end() ? "absent" : Hex(y->second));
    ++shown;
  };
  for (const auto& [id, r] : a) {
    auto it = b.find(id);
    if ((it == b.end() || it->second != r) && shown < 5) show(id);
  }
  for (const auto& [id, r] : b) {
    if (a.count(id) == 0 && shown < 5) show(id);
  }
  return out;
}

std::vector<std::string> ServeArgs(const testing::NatsCluster& nats, const std::string& mode,
                                   const std::string& name) {
  return {mode, nats.urls(), "--cluster-name", name, "--window", "2ms", "--partitions", "2"};
}

}  // namespace

TEST_CASE("repl: a not_owner message names the owner, and clients read it back") {
  CHECK(net::ErrorCodeName(static_cast<uint64_t>(net::ErrorCode::kNotOwner)) == "not_owner");
  std::string m = net::NotOwnerMessage("10.0.0.7:3727");
  CHECK(m == "this server is a read replica; the owner is at 10.0.0.7:3727");
  CHECK(net::OwnerInNotOwnerMessage(m) == "10.0.0.7:3727");
  CHECK(net::OwnerInNotOwnerMessage(net::NotOwnerMessage("")) == "");
}

TEST_CASE("cluster: a replica started from nothing catches up and serves the owner's state") {
  testing::TempDir dir("conv-follow");
  testing::NatsCluster nats(dir.path());
  auto owner_args = ServeArgs(nats, "--replicate", "catchup");
  owner_args.insert(owner_args.end(), {"--checkpoint-interval", "300ms"});
  testing::ServeProcess owner =
      testing::StartServe(dir.File("owner"), dir.File("owner.log"), owner_args);
  const uint64_t seed = 20261130;
  MESSAGE("seed ", seed);
  testing::OpGenerator gen(engine::PlayerSchema(), seed, 300);
  Writer w0(owner.address, gen, 0), w1(owner.address, gen, 1);
  w0.Write(1500);
  w1.Write(1500);
  std::this_thread::sleep_for(700ms);  // a checkpoint, and the stream purged below it
  auto owner_reader = Connect(owner.address);
  CHECK(Stat(*owner_reader, "checkpoints") > 0);

  testing::ServeProcess replica = testing::StartServe(dir.File("replica"), dir.File("replica.log"),
                                                      ServeArgs(nats, "--follow", "catchup"));
  w0.Write(1500);
  w1.Write(1500);
  auto replica_reader = Connect(replica.address);
  AwaitCaughtUp(*owner_reader, *replica_reader);
  const engine::Schema& schema = *owner_reader->FindSchema("player");
  auto ids = gen.EntityIds();
  auto on_owner = testing::ServerState(*owner_reader, schema, ids);
  auto on_replica = AwaitSameState(*owner_reader, *replica_reader, schema, ids);
  CHECK(on_owner.size() > 100);
  CHECK(on_replica == on_owner);
  // The claims too (sources and their records), not just what they converge to.
  for (const auto& id : ids) {
    auto a = owner_reader->Query(schema, id, true);
    auto b = replica_reader->Query(schema, id, true);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(a->found == b->found);
    CHECK(a->claims.size() == b->claims.size());
  }
  CHECK(Stat(*replica_reader, "role") == 2);
  CHECK(Stat(*owner_reader, "role") == 1);
  CHECK(Stat(*replica_reader, "epoch") == Stat(*owner_reader, "epoch"));
  CHECK(Stat(*owner_reader, "epoch") > 0);
  replica.Stop();
  owner.Stop();
}

TEST_CASE(
    "cluster: a subscriber on a replica sees every window once and resumes from the owner's") {
  testing::TempDir dir("conv-follow");
  testing::NatsCluster nats(dir.path());
  testing::ServeProcess owner = testing::StartServe(dir.File("owner"), dir.File("owner.log"),
                                                    ServeArgs(nats, "--replicate", "feed"));
  const uint64_t seed = 77;
  MESSAGE("seed ", seed);
  testing::OpGenerator gen(engine::PlayerSchema(), seed, 200);
  Writer writer(owner.address, gen, 0);
  writer.Write(500);
  testing::ServeProcess replica = testing::StartServe(dir.File("replica"), dir.File("replica.log"),
                                                      ServeArgs(nats, "--follow", "feed"));
  auto owner_reader = Connect(owner.address);
  auto replica_reader = Connect(replica.address);
  AwaitCaughtUp(*owner_reader, *replica_reader);
  const engine::Schema& schema = *owner_reader->FindSchema("player");
  net::Subscribe s;
  s.sub = 1;
  s.schema_id = schema.id;
  s.flags = net::kSubscribeBootstrap | net::kSubscribeIncludePrev;
  testing::Feed on_owner(Connect(owner.address));
  testing::Feed on_replica(Connect(replica.address));
  on_owner.Subscribe(s);
  on_replica.Subscribe(s);
  on_owner.WaitSnapshotEnd();
  on_replica.WaitSnapshotEnd();
  for (int round = 0; round < 20; ++round)
    writer.Write(100, 10);
  writer.Mark();
  uint64_t end = AwaitCaughtUp(*owner_reader, *replica_reader);
  ReadUntilMark(on_owner, *owner_reader, schema);
  ReadUntilMark(on_replica, *owner_reader, schema);
  CHECK(on_replica.errors.empty());
  // Window numbers strictly increase on the replica (no duplicate), and after both
  // snapshots every window's changes are the owner's (no gap, same content).
  for (size_t i = 1; i < on_replica.notifies().size(); ++i)
    CHECK(on_replica.notifies()[i].window > on_replica.notifies()[i - 1].window);
  uint64_t from = std::max(on_owner.snapshot_end().window, on_replica.snapshot_end().window);
  auto owner_windows = ByWindow(on_owner.notifies(), from);
  auto replica_windows = ByWindow(on_replica.notifies(), from);
  CHECK(owner_windows.size() > 10);
  CHECK(replica_windows == owner_windows);
  CHECK(on_replica.state() == on_owner.state());
  std::vector<std::string> ids = gen.EntityIds();
  ids.push_back(Writer::kMarker);
  auto queried = testing::ServerState(*owner_reader, schema, ids);
  CHECK_MESSAGE(on_replica.state() == queried, Diff(on_replica.state(), queried));

  // Resume on the replica from a window seen on the owner: the entities changed
  // since, then every later window.
  // A window near the end, so that the delta is a part of the state.
  REQUIRE(on_owner.notifies().size() > 10);
  const uint64_t seen = on_owner.notifies()[on_owner.notifies().size() - 4].window;
  std::map<std::string, std::string> at_seen;
  testing::ApplyEntries(at_seen, on_owner.snapshot());
  for (const auto& n : on_owner.notifies()) {
    if (n.window <= seen) testing::ApplyEntries(at_seen, n.changes);
  }
  net::Subscribe r = s;
  r.sub = 2;
  r.flags = net::kSubscribeIncludePrev;
  r.resume_window = seen;
  testing::Feed resumed(Connect(replica.address));
  resumed.Subscribe(r);
  resumed.WaitSnapshotEnd();
  CHECK(resumed.snapshot_end().window >= end);
  std::map<std::string, std::string> rebuilt = at_seen;
  testing::ApplyEntries(rebuilt, resumed.snapshot());
  CHECK(rebuilt == on_owner.state());
  // A delta (not the full state marked reset): at least every entity the owner
  // notified after `seen`, and not every entity.
  CHECK_FALSE(resumed.snapshot_end().reset);
  std::set<std::string> delta, notified;
  for (const auto& e : resumed.snapshot())
    delta.insert(e.id);
  for (const auto& n : on_owner.notifies()) {
    for (const auto& c : n.changes) {
      if (n.window > seen) notified.insert(c.id);
    }
  }
  CHECK(!notified.empty());
  CHECK(std::includes(delta.begin(), delta.end(), notified.begin(), notified.end()));
  CHECK(delta.size() < on_owner.state().size());
  for (int round = 0; round < 5; ++round)
    writer.Write(100, 10);
  writer.Mark();
  AwaitCaughtUp(*owner_reader, *replica_reader);
  ReadUntilMark(on_owner, *owner_reader, schema);
  ReadUntilMark(resumed, *owner_reader, schema);
  CHECK(ByWindow(resumed.notifies(), resumed.snapshot_end().window) ==
        ByWindow(on_owner.notifies(), resumed.snapshot_end().window));
  std::map<std::string, std::string> final_state = at_seen;
  testing::ApplyEntries(final_state, resumed.snapshot());
  for (const auto& n : resumed.notifies())
    testing::ApplyEntries(final_state, n.changes);
  CHECK(final_state == on_owner.state());
  replica.Stop();
  owner.Stop();
}

TEST_CASE("cluster: writes to a replica get not_owner naming the owner, and the client follows") {
  testing::TempDir dir("conv-follow");
  testing::NatsCluster nats(dir.path());
  testing::ServeProcess owner = testing::StartServe(dir.File("owner"), dir.File("owner.log"),
                                                    ServeArgs(nats, "--replicate", "redirect"));
  testing::ServeProcess replica = testing::StartServe(dir.File("replica"), dir.File("replica.log"),
                                                      ServeArgs(nats, "--follow", "redirect"));
  // The replica reads the owner record at start and every second.
  auto replica_reader = Connect(replica.address);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (Stat(*replica_reader, "epoch") == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);

  // A raw HELLO with a source: ERROR not_owner naming the owner, then closed.
  testing::RawConnection raw(replica.port());
  REQUIRE(raw.Send(testing::HelloFrame("w")));
  auto read = raw.ReadFrame();
  REQUIRE_MESSAGE(read.ok(), read.message());
  net::OwnedFrame f = *read;
  REQUIRE(f.type == static_cast<uint8_t>(net::FrameType::kError));
  net::Error e;
  REQUIRE(net::DecodeError(f.payload, &e));
  CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kNotOwner));
  CHECK(e.message == "this server is a read replica; the owner is at " + owner.address);
  CHECK(testing::ReadUntilClosed(raw));
  CHECK(Stat(*replica_reader, "errors_not_owner") == 1);

  // net::Client follows it: the writer lands on the owner and is acknowledged there.
  testing::OpGenerator gen(engine::PlayerSchema(), 5, 10);
  Writer writer(replica.address, gen, 0);
  writer.Write(50);
  auto owner_reader = Connect(owner.address);
  CHECK(Stat(*owner_reader, "ops_applied") == 50);
  // Readers stay on the replica.
  AwaitCaughtUp(*owner_reader, *replica_reader);
  const engine::Schema& player = *owner_reader->FindSchema("player");
  CHECK(AwaitSameState(*owner_reader, *replica_reader, player, gen.EntityIds()) ==
        testing::ServerState(*owner_reader, player, gen.EntityIds()));

  // A record naming the replica itself (written here, as a takeover would): the
  // client follows at most kMaxOwnerRedirects answers, then fails saying so.
  repl::ReplicationOptions ro = nats.Options("redirect");
  auto loop = repl::Ownership::Claim(ro, replica.address, nullptr);
  REQUIRE_MESSAGE(loop.ok(), loop.message());
  deadline = std::chrono::steady_clock::now() + 10s;
  while (Stat(*replica_reader, "epoch") != (*loop)->epoch() &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  net::Hello looping;
  looping.source = "loop";
  auto refused = net::Client::Connect(replica.address, looping, 10s);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.message() ==
        fmt::format("{0} refused HELLO: this server is a read replica; the owner is at {0} "
                    "(not_owner) (after following 3 not_owner redirects)",
                    replica.address));
  replica.Stop();
  // The owner whose record was taken is deposed: it stops by itself (exit 2).
  auto code = owner.process->Wait(15s);
  REQUIRE(code.has_value());
  CHECK(WIFEXITED(*code));
  CHECK(WEXITSTATUS(*code) == 2);
}

TEST_CASE("cluster: follow flags are checked, and a replica of a name with no stream is refused") {
  testing::TempDir dir("conv-follow");
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {CONV_BINARY,   "serve",      "--listen",
                                     "127.0.0.1:0", "--data-dir", dir.File("d")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    testing::ProcessResult r = testing::RunProcess(argv, 30s);
    CHECK(r.exit_code != 0);
    return r.err;
  };
  std::string closed = fmt::format("nats://127.0.0.1:{}", testing::ClosedPort());
  CHECK(run({"--follow", closed}).find("--follow needs --cluster-name") != std::string::npos);
  CHECK(run({"--follow", closed, "--replicate", closed, "--cluster-name", "x"})
            .find("--replicate and --follow exclude each other") != std::string::npos);
  std::string err = run({"--follow", closed, "--cluster-name", "x"});
  CHECK_MESSAGE(err.find("--follow: cannot connect to '" + closed + "'") != std::string::npos, err);
  testing::NatsCluster nats(dir.path());
  err = run({"--follow", nats.urls(), "--cluster-name", "nothing"});
  CHECK_MESSAGE(
      err.find("refusing to start: --follow: cannot read stream CONV_nothing") != std::string::npos,
      err);
}

TEST_CASE("cluster: a replica of a name nobody owns yet says so to writers") {
  testing::TempDir dir("conv-follow");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("ownerless");
  auto stream = repl::JetStreamLog::Open(o, nullptr);  // the stream, and no owner record
  REQUIRE_MESSAGE(stream.ok(), stream.message());
  testing::ServeProcess replica = testing::StartServe(dir.File("replica"), dir.File("replica.log"),
                                                      ServeArgs(nats, "--follow", "ownerless"));
  net::Hello hello;
  hello.source = "w";
  auto refused = net::Client::Connect(replica.address, hello, 10s);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.message() ==
        fmt::format("{} refused HELLO: this server is a read replica; the owner is not known yet "
                    "(not_owner)",
                    replica.address));
  auto reader = Connect(replica.address);
  CHECK(Stat(*reader, "role") == 2);
  CHECK(Stat(*reader, "epoch") == 0);
  replica.Stop();
}

TEST_CASE("cluster: a replica stops on a damaged window instead of serving past it") {
  testing::TempDir dir("conv-follow");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("damaged");
  auto stream = repl::JetStreamLog::Open(o, nullptr);
  REQUIRE_MESSAGE(stream.ok(), stream.message());
  testing::ServeProcess replica = testing::StartServe(dir.File("replica"), dir.File("replica.log"),
                                                      ServeArgs(nats, "--follow", "damaged"));
  (*stream)->Publish(1, "these bytes are not a window's blocks");
  REQUIRE((*stream)->Confirm().ok());
  auto status = replica.process->Wait(20s);
  REQUIRE_MESSAGE(status.has_value(), "the replica still runs");
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 2);
  std::string log = testing::ReadFileOrEmpty(dir.File("replica.log"));
  CHECK_MESSAGE(log.find("stopping: following the stream failed: ") != std::string::npos, log);
}

TEST_CASE("cluster: following a stream hands out whole windows in order and fails on a gap") {
  testing::TempDir dir("conv-follow");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("gap");
  o.max_chunk = 4096;
  auto stream = repl::JetStreamLog::Open(o, nullptr);
  REQUIRE_MESSAGE(stream.ok(), stream.message());
  // Windows 1 to 3 (window 2 in three chunks), then window 4 is missing and 5 to
  // 5 + kMaxHeldWindows follow.
  auto body = [](uint64_t w) {
    return std::string(w == 2 ? 10'000 : 10, static_cast<char>('a' + w));
  };
  for (uint64_t w = 1; w <= 3; ++w)
    (*stream)->Publish(w, body(w));
  for (uint64_t w = 5; w <= 5 + repl::StreamTail::kMaxHeldWindows; ++w)
    (*stream)->Publish(w, body(w));
  REQUIRE((*stream)->Confirm().ok());
  auto tail = repl::StreamTail::Open(o, 1, 0, 0);
  REQUIRE_MESSAGE(tail.ok(), tail.message());
  uint64_t window = 0;
  std::string blocks;
  for (uint64_t w = 1; w <= 3; ++w) {
    auto got = (*tail)->Next(5s, &window, &blocks);
    REQUIRE_MESSAGE(got.ok(), got.message());
    REQUIRE(*got);
    CHECK(window == w);
    CHECK(blocks == body(w));
  }
  util::Result<bool> got = false;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (got.ok() && std::chrono::steady_clock::now() < deadline)
    got = (*tail)->Next(200ms, &window, &blocks);
  REQUIRE_FALSE(got.ok());
  CHECK(got.message() ==
        fmt::format("window 4 is missing from the stream while {} later windows are complete "
                    "(purged before this replica read it)",
                    repl::StreamTail::kMaxHeldWindows + 1));
  CHECK((*tail)->newest_seen() == 5 + repl::StreamTail::kMaxHeldWindows);
}

TEST_CASE(
    "cluster: following a stream fails at once on a checkpoint that replaced windows not read") {
  testing::TempDir dir("conv-follow");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("replaced");
  auto stream = repl::JetStreamLog::Open(o, nullptr);
  REQUIRE_MESSAGE(stream.ok(), stream.message());
  for (uint64_t w = 1; w <= 3; ++w)
    (*stream)->Publish(w, std::string(10, static_cast<char>('a' + w)));
  REQUIRE((*stream)->Confirm().ok());
  // A replica read the stream up to window 1 (sequence 1); before it follows on from
  // sequence 2, the owner replicates a checkpoint at window 2 and purges windows 1
  // and 2. (The tail does not read the checkpoint's bytes.)
  const std::string cp = dir.File("checkpoint");
  { std::ofstream(cp) << "checkpoint bytes"; }
  auto published = (*stream)->PublishCheckpoint(2, cp);
  REQUIRE_MESSAGE(published.ok(), published.message());
  REQUIRE((*stream)->counters().purged_below == 3);
  auto tail = repl::StreamTail::Open(o, 2, 1, 0);
  REQUIRE_MESSAGE(tail.ok(), tail.message());
  uint64_t window = 0;
  std::string blocks;
  auto got = (*tail)->Next(5s, &window, &blocks);
  REQUIRE_FALSE(got.ok());
  CHECK(got.message() ==
        "window 2 is not in the stream: checkpoint 2 (stream message 4) replaced it before this "
        "replica read it");
  tail = repl::StreamTail::Open(o, 1, 0, 0);
  REQUIRE_MESSAGE(tail.ok(), tail.message());
  got = (*tail)->Next(5s, &window, &blocks);
  REQUIRE_FALSE(got.ok());
  CHECK(got.message() ==
        "windows 1 to 2 are not in the stream: checkpoint 2 (stream message 4) replaced them "
        "before this replica read them");

  // A checkpoint of windows already handed out is passed over.
  tail = repl::StreamTail::Open(o, 3, 2, 0);
  REQUIRE_MESSAGE(tail.ok(), tail.message());
  (*stream)->Publish(4, "w4");
  REQUIRE((*stream)->Confirm().ok());
  got = (*tail)->Next(5s, &window, &blocks);
  REQUIRE_MESSAGE(got.ok(), got.message());
  REQUIRE(*got);
  CHECK(window == 3);
  got = (*tail)->Next(5s, &window, &blocks);
  REQUIRE_MESSAGE(got.ok(), got.message());
  REQUIRE(*got);
  CHECK(window == 4);
  CHECK(blocks == "w4");
}

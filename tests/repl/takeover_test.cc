// `serve --standby` (docs/replication.md, "Standby"): a read replica that takes the
// cluster name over when the owner's record goes stale. Against a three-node NATS
// cluster on loopback; every test case is named "cluster: ..." and labelled
// `cluster`.

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/schema.h"
#include "net/client.h"
#include "net/messages.h"
#include "repl/jetstream.h"
#include "repl/nats_link.h"
#include "repl/stream_reader.h"
#include "support/feed.h"
#include "support/nats_cluster.h"
#include "support/op_model.h"
#include "support/process.h"
#include "support/serve_process.h"

using namespace conv;
using namespace std::chrono_literals;

namespace {

// One source writing pipelined ops; what it sent and what was acknowledged.
struct Writer {
  std::string name;
  size_t index = 0;
  std::unique_ptr<net::Client> client;
  uint64_t sent = 0;
  uint64_t acked = 0;

  void ReadAcks(std::chrono::milliseconds wait) {
    net::OwnedFrame f;
    for (;;) {
      auto got = client->TryReadFrame(wait, &f);
      if (!got.ok() || !*got) return;
      uint64_t seq = 0;
      if (f.type == static_cast<uint8_t>(net::FrameType::kAck) && net::DecodeAck(f.payload, &seq))
        acked = std::max(acked, seq);
      wait = 0ms;
    }
  }
};

// Each writer sends ops, with at most `depth` of its own unacknowledged, for
// `duration`; then takes the ACKs that came.
void WritePipelined(std::vector<Writer>& writers, const testing::OpGenerator& gen,
                    std::chrono::milliseconds duration, uint64_t depth) {
  auto until = std::chrono::steady_clock::now() + duration;
  while (std::chrono::steady_clock::now() < until) {
    for (Writer& w : writers) {
      if (w.sent - w.acked < depth) {
        REQUIRE(w.client->Send(gen.Frame(w.index, w.sent + 1)).ok());
        ++w.sent;
      }
      w.ReadAcks(std::chrono::milliseconds(0));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (Writer& w : writers)
    w.ReadAcks(std::chrono::milliseconds(0));
}

std::string ReadLog(const std::string& path);

std::string NewAddress(testing::ServeProcess& standby, std::chrono::milliseconds wait) {
  const std::string prefix = "listening on ";
  auto line = standby.process->WaitForLine(prefix, wait);
  REQUIRE_MESSAGE(line.ok(), (line.ok() ? "" : line.message()), "\nits log:\n",
                  ReadLog(standby.log_path));
  return line->substr(prefix.size());
}

// Each source's seq mark in the stream, and the report.
class SeqMarks : public wal::RecordVisitor {
 public:
  void OnClaim(const wal::ClaimRecord&) override {}
  void OnRetract(const wal::RetractRecord&) override {}
  void OnSource(const wal::SourceRecord& r) override {
    uint64_t& m = marks[std::string(r.source)];
    m = std::max(m, r.seq);
  }
  void OnSchema(const wal::SchemaRecord&) override {}
  void OnLease(const wal::LeaseRecord&) override {}
  std::map<std::string, uint64_t> marks;
  repl::StreamReadReport report;
};

SeqMarks ReadMarks(const std::string& urls, const std::string& name) {
  repl::ReplicationOptions o;
  o.urls = urls;
  o.cluster_name = name;
  SeqMarks m;
  auto st = repl::ReadReplicatedLog(o, m, &m.report);
  REQUIRE_MESSAGE(st.ok(), st.message());
  return m;
}

std::string ReadLog(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_CASE(
    "cluster: the owner killed under writes, the standby takes over with every acknowledged op, "
    "a replica's subscriber sees no gap") {
  testing::TempDir dir("conv-takeover");
  testing::NatsCluster nats(dir.path());
  const uint64_t seed = testing::TestSeed("CONV_TAKEOVER_SEED", 20261201);
  MESSAGE("takeover test: seed ", seed, " (CONV_TAKEOVER_SEED)");
  testing::ServeProcess owner =
      testing::StartServe(dir.File("owner"), dir.File("owner.log"),
                          {"--replicate", nats.urls(), "--cluster-name", "tk", "--window", "2ms"});
  testing::ServeProcess standby =
      testing::StartServe(dir.File("standby"), dir.File("standby.log"),
                          {"--follow", nats.urls(), "--cluster-name", "tk", "--standby",
                           "--failover-after", "2s", "--window", "2ms"});
  testing::ServeProcess replica =
      testing::StartServe(dir.File("replica"), dir.File("replica.log"),
                          {"--follow", nats.urls(), "--cluster-name", "tk", "--window", "2ms"});
  testing::OpGenerator gen(engine::PlayerSchema(), seed, 64);
  // A subscriber on the replica, from before the first write to after the takeover.
  net::Hello reader;
  auto sub_client = net::Client::Connect(replica.address, reader, 10s);
  REQUIRE(sub_client.ok());
  const engine::Schema* player = (*sub_client)->FindSchema("player");
  REQUIRE(player != nullptr);
  net::Subscribe sub;
  sub.sub = 1;
  sub.schema_id = player->id;
  sub.flags = net::kSubscribeBootstrap;
  testing::Feed feed(std::move(sub_client).value());
  feed.Subscribe(sub);
  feed.WaitSnapshotEnd();
  std::vector<Writer> writers(3);
  for (size_t i = 0; i < writers.size(); ++i) {
    writers[i].name = fmt::format("tk-{}", i);
    writers[i].index = i;
    net::Hello hello;
    hello.source = writers[i].name;
    auto c = net::Client::Connect(owner.address, hello, 10s);
    REQUIRE_MESSAGE(c.ok(), c.message());
    writers[i].client = std::move(c).value();
  }
  // Pipelined writes for a while, then SIGKILL with ops in flight.
  WritePipelined(writers, gen, 1500ms, 64);
  owner.process->Signal(SIGKILL);
  owner.process->Wait(10s);
  auto killed = std::chrono::steady_clock::now();

  std::string address = NewAddress(standby, 30s);
  MESSAGE("the standby took over at ", address, " after ",
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                killed)
              .count(),
          " ms");
  // Every acknowledged op is durable on the new owner (its WELCOME's mark), then
  // each writer resends what was not acknowledged: seq de-duplication skips what
  // the new owner has.
  testing::StateModel model(gen.schema());
  for (Writer& w : writers) {
    CHECK(w.acked > 0);
    net::Hello hello;
    hello.source = w.name;
    auto c = net::Client::Connect(address, hello, 10s);
    REQUIRE_MESSAGE(c.ok(), c.message(), "\nstandby log:\n", ReadLog(standby.log_path));
    CHECK_MESSAGE((*c)->welcome().last_applied_seq >= w.acked, w.name, ": acknowledged ", w.acked,
                  ", the new owner has ", (*c)->welcome().last_applied_seq);
    CHECK((*c)->welcome().last_applied_seq <= w.sent);
    w.client = std::move(c).value();
    for (uint64_t seq = w.acked + 1; seq <= w.sent; ++seq)
      REQUIRE(w.client->Send(gen.Frame(w.index, seq)).ok());
    for (uint64_t seq = 1; seq <= w.sent; ++seq)
      model.Apply(w.name, gen.Op(w.index, seq));
  }
  for (Writer& w : writers) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (w.acked < w.sent && std::chrono::steady_clock::now() < deadline)
      w.ReadAcks(50ms);
    CHECK(w.acked == w.sent);
  }
  // The new owner's state is every op exactly once; the replica follows it.
  auto q = net::Client::Connect(address, reader, 10s);
  REQUIRE(q.ok());
  auto got = testing::QueryState(**q, gen.schema(), gen.EntityIds());
  REQUIRE(got.ok());
  CHECK_MESSAGE(*got == model.State(), testing::DescribeDifference(model.State(), *got));
  auto r = net::Client::Connect(replica.address, reader, 10s);
  REQUIRE(r.ok());
  auto deadline = std::chrono::steady_clock::now() + 15s;
  testing::StateByEntity seen;
  while (std::chrono::steady_clock::now() < deadline) {
    auto s = testing::QueryState(**r, gen.schema(), gen.EntityIds());
    REQUIRE(s.ok());
    seen = *s;
    if (seen == model.State()) break;
    std::this_thread::sleep_for(100ms);
  }
  CHECK_MESSAGE(seen == model.State(), testing::DescribeDifference(model.State(), seen));
  // The subscriber saw the old owner's windows, then the new owner's, each once
  // and in order, and ends with the new owner's state.
  auto records = testing::ServerState(**q, gen.schema(), gen.EntityIds());
  deadline = std::chrono::steady_clock::now() + 15s;
  while (feed.state() != records && std::chrono::steady_clock::now() < deadline)
    feed.ReadOne(100ms);
  CHECK(feed.state() == records);
  CHECK(feed.errors.empty());
  REQUIRE(feed.notifies().size() > 2);
  for (size_t i = 1; i < feed.notifies().size(); ++i)
    CHECK(feed.notifies()[i].window > feed.notifies()[i - 1].window);
  // The old owner wrote no checkpoint (--checkpoint-interval 60s): the new owner's
  // first, written at once, is replicated and the stream purged up to it, so that
  // the next standby reads the stream from there.
  SeqMarks after;
  deadline = std::chrono::steady_clock::now() + 15s;
  do {
    after = ReadMarks(nats.urls(), "tk");
    if (after.report.used_checkpoint && after.report.first_seq > 1) break;
    std::this_thread::sleep_for(100ms);
  } while (std::chrono::steady_clock::now() < deadline);
  CHECK_MESSAGE(after.report.used_checkpoint, "standby log:\n", ReadLog(standby.log_path));
  CHECK(after.report.first_seq > 1);
  for (const Writer& w : writers)
    CHECK(after.marks[w.name] == w.sent);
  replica.Stop();
  standby.Stop();
}

TEST_CASE(
    "cluster: a client given the owner and its standby reaches the new owner by itself after a "
    "kill -9, every acknowledged op once") {
  testing::TempDir dir("conv-takeover");
  testing::NatsCluster nats(dir.path());
  const uint64_t seed = testing::TestSeed("CONV_TAKEOVER_SEED", 20261204);
  MESSAGE("client failover test: seed ", seed, " (CONV_TAKEOVER_SEED)");
  // The owner advertises another name for itself (its bound port): what replicas and
  // not_owner answers give clients.
  testing::ServeProcess owner =
      testing::StartServe(dir.File("owner"), dir.File("owner.log"),
                          {"--replicate", nats.urls(), "--cluster-name", "fo", "--window", "2ms",
                           "--advertise", "localhost:0"});
  // The standby on a port of its own: it listens there as a replica, then as the owner.
  const std::string standby_address = fmt::format("127.0.0.1:{}", testing::ClosedPort());
  testing::ServeProcess standby =
      testing::StartServe(dir.File("standby"), dir.File("standby.log"),
                          {"--follow", nats.urls(), "--cluster-name", "fo", "--standby",
                           "--failover-after", "2s", "--window", "2ms"},
                          standby_address);
  REQUIRE(standby.address == standby_address);
  {
    // A writer sent to the standby (a replica for now) follows its not_owner to the
    // owner's advertised address.
    net::Hello hello;
    hello.source = "fo-probe";
    auto c = net::Client::Connect(standby_address, hello, 10s);
    REQUIRE_MESSAGE(c.ok(), c.message());
    CHECK((*c)->server() == fmt::format("localhost:{}", owner.port()));
  }
  testing::OpGenerator gen(engine::PlayerSchema(), seed, 64);
  net::ClientOptions o;
  o.servers = {owner.address, standby_address};
  o.timeout = 10s;
  o.retry_for = 20s;
  o.reconnect = true;
  std::vector<Writer> writers(2);
  for (size_t i = 0; i < writers.size(); ++i) {
    writers[i].name = fmt::format("fo-{}", i);
    writers[i].index = i;
    net::Hello hello;
    hello.source = writers[i].name;
    auto c = net::Client::Connect(o, hello);
    REQUIRE_MESSAGE(c.ok(), c.message());
    CHECK((*c)->server() == owner.address);
    writers[i].client = std::move(c).value();
  }
  // Pipelined writes, the owner killed with ops in flight, and the writes go on: the
  // clients find the standby once it owns the name and resend what was not
  // acknowledged.
  WritePipelined(writers, gen, 1000ms, 64);
  owner.process->Signal(SIGKILL);
  owner.process->Wait(10s);
  auto killed = std::chrono::steady_clock::now();
  for (Writer& w : writers)
    CHECK(w.acked > 0);
  auto moved = [&writers] {
    for (const Writer& w : writers) {
      if (w.client->reconnects() == 0) return false;
    }
    return true;
  };
  while (!moved() && std::chrono::steady_clock::now() - killed < 30s)
    WritePipelined(writers, gen, 200ms, 64);
  REQUIRE_MESSAGE(moved(), "standby log:\n", ReadLog(standby.log_path));
  MESSAGE("writes resumed on ", writers[0].client->server(), " within ",
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                killed)
              .count(),
          " ms of the kill");
  WritePipelined(writers, gen, 500ms, 64);
  testing::StateModel model(gen.schema());
  for (Writer& w : writers) {
    CHECK(w.client->reconnects() == 1);
    CHECK(w.client->server() == standby_address);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (w.acked < w.sent && std::chrono::steady_clock::now() < deadline)
      w.ReadAcks(50ms);
    CHECK(w.acked == w.sent);
    CHECK(w.client->unacked() == 0);
    for (uint64_t seq = 1; seq <= w.sent; ++seq)
      model.Apply(w.name, gen.Op(w.index, seq));
  }
  // The new owner has each source's every op, once.
  for (Writer& w : writers) {
    net::Hello hello;
    hello.source = w.name;
    auto c = net::Client::Connect(standby_address, hello, 10s);
    REQUIRE_MESSAGE(c.ok(), c.message());
    CHECK((*c)->welcome().last_applied_seq == w.sent);
  }
  net::Hello reader;
  auto q = net::Client::Connect(standby_address, reader, 10s);
  REQUIRE(q.ok());
  auto got = testing::QueryState(**q, gen.schema(), gen.EntityIds());
  REQUIRE(got.ok());
  CHECK_MESSAGE(*got == model.State(), testing::DescribeDifference(model.State(), *got));
  MESSAGE(fmt::format("client failover: {} + {} ops sent, all acknowledged", writers[0].sent,
                      writers[1].sent));
  standby.Stop();
}

TEST_CASE("cluster: standby flags are checked before anything starts") {
  testing::TempDir dir("conv-takeover");
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {CONV_BINARY,   "serve",      "--listen",
                                     "127.0.0.1:0", "--data-dir", dir.File("d")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    testing::ProcessResult r = testing::RunProcess(argv, 30s);
    CHECK(r.exit_code == 2);
    return r.err;
  };
  std::string closed = fmt::format("nats://127.0.0.1:{}", testing::ClosedPort());
  CHECK(run({"--standby"}).find("--standby needs --follow (and --cluster-name)") !=
        std::string::npos);
  CHECK(run({"--standby", "--follow", closed, "--cluster-name", "x", "--failover-after", "1s"})
            .find("--failover-after: 1s is too short; the least is 2s") != std::string::npos);
  // A data dir with a log in it is not a standby's.
  std::filesystem::create_directories(dir.File("d"));
  std::ofstream(dir.File("d") + "/wal-0000000000000001.log") << "x";
  CHECK(run({"--standby", "--follow", closed, "--cluster-name", "x"})
            .find("--standby: the data dir '" + dir.File("d") + "' holds a log or a checkpoint") !=
        std::string::npos);
}

TEST_CASE("cluster: an owner on a wildcard --listen needs --advertise, checked before it starts") {
  testing::TempDir dir("conv-takeover");
  auto run = [&](const std::string& listen, std::vector<std::string> extra) {
    std::vector<std::string> argv = {CONV_BINARY, "serve",      "--listen",
                                     listen,      "--data-dir", dir.File("d")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    testing::ProcessResult r = testing::RunProcess(argv, 30s);
    CHECK(r.exit_code == 2);
    return r.err;
  };
  std::string closed = fmt::format("nats://127.0.0.1:{}", testing::ClosedPort());
  const std::vector<std::string> owner = {"--replicate", closed, "--cluster-name", "x"};
  const std::vector<std::string> standby = {"--follow", closed, "--cluster-name", "x", "--standby"};
  CHECK(run("0.0.0.0:3727", owner)
            .find("--listen 0.0.0.0:3727 listens on every interface: an owner must name an "
                  "address others reach it at; give --advertise HOST:PORT") != std::string::npos);
  CHECK(run("[::]:0", standby).find("--listen [::]:0 listens on every interface") !=
        std::string::npos);
  auto with = [](std::vector<std::string> args, const std::string& advertise) {
    args.insert(args.end(), {"--advertise", advertise});
    return args;
  };
  CHECK(run("0.0.0.0:3727", with(owner, "0.0.0.0:3727"))
            .find("--advertise: '0.0.0.0:3727' is a wildcard address") != std::string::npos);
  CHECK(run("127.0.0.1:0", with(owner, "db1")).find("--advertise: 'db1' is not HOST:PORT") !=
        std::string::npos);
  CHECK(run("127.0.0.1:0", with({"--follow", closed, "--cluster-name", "x"}, "db1:3727"))
            .find("--advertise needs --replicate or --standby") != std::string::npos);
}

TEST_CASE("cluster: an owner paused past --failover-after acknowledges nothing more once resumed") {
  testing::TempDir dir("conv-takeover");
  testing::NatsCluster nats(dir.path());
  testing::ServeProcess owner = testing::StartServe(
      dir.File("owner"), dir.File("owner.log"),
      {"--replicate", nats.urls(), "--cluster-name", "paused", "--window", "2ms"});
  testing::ServeProcess standby =
      testing::StartServe(dir.File("standby"), dir.File("standby.log"),
                          {"--follow", nats.urls(), "--cluster-name", "paused", "--standby",
                           "--failover-after", "2s", "--window", "2ms"});
  testing::OpGenerator gen(engine::PlayerSchema(), 5, 16);
  Writer w;
  w.name = "paused-writer";
  net::Hello hello;
  hello.source = w.name;
  auto c = net::Client::Connect(owner.address, hello, 10s);
  REQUIRE_MESSAGE(c.ok(), c.message());
  w.client = std::move(c).value();
  REQUIRE(w.client->Send(gen.Frame(0, 1)).ok());
  w.sent = 1;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (w.acked < 1 && std::chrono::steady_clock::now() < deadline)
    w.ReadAcks(50ms);
  REQUIRE(w.acked == 1);

  owner.process->Signal(SIGSTOP);
  std::string address = NewAddress(standby, 30s);
  // An op sent to the paused owner meanwhile; then it runs again.
  REQUIRE(w.client->Send(gen.Frame(0, 2)).ok());
  owner.process->Signal(SIGCONT);
  net::Error error;
  deadline = std::chrono::steady_clock::now() + 10s;
  while (error.code == 0 && std::chrono::steady_clock::now() < deadline) {
    net::OwnedFrame f;
    auto got = w.client->TryReadFrame(50ms, &f);
    if (!got.ok()) break;
    if (!*got) continue;
    uint64_t seq = 0;
    if (f.type == static_cast<uint8_t>(net::FrameType::kAck) && net::DecodeAck(f.payload, &seq))
      w.acked = std::max(w.acked, seq);
    if (f.type == static_cast<uint8_t>(net::FrameType::kError))
      REQUIRE(net::DecodeError(f.payload, &error));
  }
  CHECK(w.acked == 1);  // op 2 is not acknowledged by the deposed owner
  CHECK(error.code == static_cast<uint64_t>(net::ErrorCode::kNotOwner));
  CHECK(net::OwnerInNotOwnerMessage(error.message) == address);
  // The writer follows to the new owner and resends op 2 there.
  auto moved = net::Client::Connect(owner.address, hello, 10s);
  REQUIRE_MESSAGE(moved.ok(), moved.message());
  CHECK((*moved)->welcome().last_applied_seq == 1);
  w.client = std::move(moved).value();
  REQUIRE(w.client->Send(gen.Frame(0, 2)).ok());
  deadline = std::chrono::steady_clock::now() + 10s;
  while (w.acked < 2 && std::chrono::steady_clock::now() < deadline)
    w.ReadAcks(50ms);
  CHECK(w.acked == 2);
  auto code = owner.process->Wait(15s);
  REQUIRE(code.has_value());
  CHECK(WIFEXITED(*code));
  CHECK(WEXITSTATUS(*code) == 2);
  standby.Stop();
}

TEST_CASE("cluster: takeover cycles: owners killed in turn, no acknowledged op lost") {
  testing::TempDir dir("conv-takeover");
  testing::NatsCluster nats(dir.path());
  const uint64_t cycles = testing::EnvNumber("CONV_TAKEOVER_CYCLES", 20);
  const uint64_t seed = testing::TestSeed("CONV_TAKEOVER_SEED", 20261202);
  MESSAGE("takeover cycles: ", cycles, " cycles, seed ", seed,
          " (CONV_TAKEOVER_CYCLES, CONV_TAKEOVER_SEED; scripts/takeover-cycles.sh for a long run)");
  const std::vector<std::string> standby_args = {"--follow", nats.urls(), "--cluster-name",
                                                 "cycles",   "--standby", "--failover-after",
                                                 "2s",       "--window",  "2ms"};
  // Two data dirs taking turns: the owner's, and the standby's (empty when it starts).
  std::string dirs[2] = {dir.File("a"), dir.File("b")};
  auto owner = std::make_unique<testing::ServeProcess>(testing::StartServe(
      dirs[0], dir.File("a.log"),
      {"--replicate", nats.urls(), "--cluster-name", "cycles", "--window", "2ms"}));
  std::string address = owner->address;
  testing::OpGenerator gen(engine::PlayerSchema(), seed, 32);
  std::vector<Writer> writers(2);
  for (size_t i = 0; i < writers.size(); ++i) {
    writers[i].name = fmt::format("cycle-{}", i);
    writers[i].index = i;
  }
  uint64_t lost = 0, acked_total = 0;
  // Kill to the new owner listening, per cycle: flat, as each new owner purges the
  // stream up to its first checkpoint (it grew with the cycles when none did).
  std::vector<int64_t> takeover_ms;
  for (uint64_t cycle = 0; cycle < cycles; ++cycle) {
    int next = static_cast<int>((cycle + 1) % 2);
    std::filesystem::remove_all(dirs[next]);
    auto standby = std::make_unique<testing::ServeProcess>(
        testing::StartServe(dirs[next], dir.File(next == 0 ? "a.log" : "b.log"), standby_args));
    // The writers (re)connect to the owner, resend what was not acknowledged, and
    // write pipelined for a while.
    for (Writer& w : writers) {
      net::Hello hello;
      hello.source = w.name;
      auto c = net::Client::Connect(address, hello, 10s);
      REQUIRE_MESSAGE(c.ok(), c.message());
      uint64_t has = (*c)->welcome().last_applied_seq;
      if (has < w.acked) {
        lost += w.acked - has;
        FAIL_CHECK("cycle ", cycle, ": ", w.name, " had ", w.acked,
                   " acknowledged, the new owner has ", has);
      }
      w.acked = std::max(w.acked, has);
      w.client = std::move(c).value();
      for (uint64_t seq = w.acked + 1; seq <= w.sent; ++seq)
        REQUIRE(w.client->Send(gen.Frame(w.index, seq)).ok());
    }
    WritePipelined(writers, gen, 300ms, 32);
    owner->process->Signal(SIGKILL);
    owner->process->Wait(10s);
    auto killed = std::chrono::steady_clock::now();
    for (Writer& w : writers) {
      acked_total += w.acked;
      w.client.reset();
    }
    address = NewAddress(*standby, 30s);
    takeover_ms.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - killed)
                              .count());
    owner = std::move(standby);
  }
  // The last owner has every op once.
  testing::StateModel model(gen.schema());
  for (Writer& w : writers) {
    net::Hello hello;
    hello.source = w.name;
    auto c = net::Client::Connect(address, hello, 10s);
    REQUIRE_MESSAGE(c.ok(), c.message());
    CHECK((*c)->welcome().last_applied_seq >= w.acked);
    w.client = std::move(c).value();
    for (uint64_t seq = w.acked + 1; seq <= w.sent; ++seq)
      REQUIRE(w.client->Send(gen.Frame(w.index, seq)).ok());
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (w.acked < w.sent && std::chrono::steady_clock::now() < deadline)
      w.ReadAcks(50ms);
    CHECK(w.acked == w.sent);
    for (uint64_t seq = 1; seq <= w.sent; ++seq)
      model.Apply(w.name, gen.Op(w.index, seq));
  }
  net::Hello reader;
  auto q = net::Client::Connect(address, reader, 10s);
  REQUIRE(q.ok());
  auto got = testing::QueryState(**q, gen.schema(), gen.EntityIds());
  REQUIRE(got.ok());
  CHECK_MESSAGE(*got == model.State(), testing::DescribeDifference(model.State(), *got));
  MESSAGE(fmt::format("takeover cycles: {} cycles, {} acked ops, {} lost", cycles,
                      writers[0].sent + writers[1].sent, lost));
  if (!takeover_ms.empty()) {
    std::vector<int64_t> sorted = takeover_ms;
    std::sort(sorted.begin(), sorted.end());
    MESSAGE(fmt::format(
        "takeover cycles: kill -> new owner listening: first {} ms, last {} ms, median {} ms, "
        "max {} ms",
        takeover_ms.front(), takeover_ms.back(), sorted[sorted.size() / 2], sorted.back()));
  }
  CHECK(lost == 0);
  CHECK(acked_total > 0);
  owner->Stop();
}

TEST_CASE("cluster: a standby takes over a stream whose last window the dead owner left torn") {
  testing::TempDir dir("conv-takeover");
  testing::NatsCluster nats(dir.path());
  testing::ServeProcess owner = testing::StartServe(
      dir.File("owner"), dir.File("owner.log"),
      {"--replicate", nats.urls(), "--cluster-name", "torn", "--window", "2ms"});
  testing::OpGenerator gen(engine::PlayerSchema(), 9, 16);
  std::vector<Writer> writers(1);
  Writer& w = writers[0];
  w.name = "torn-writer";
  net::Hello hello;
  hello.source = w.name;
  auto c = net::Client::Connect(owner.address, hello, 10s);
  REQUIRE_MESSAGE(c.ok(), c.message());
  w.client = std::move(c).value();
  for (uint64_t seq = 1; seq <= 20; ++seq)
    REQUIRE(w.client->Send(gen.Frame(0, seq)).ok());
  w.sent = 20;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (w.acked < 20 && std::chrono::steady_clock::now() < deadline)
    w.ReadAcks(50ms);
  REQUIRE(w.acked == 20);
  owner.process->Signal(SIGKILL);
  owner.process->Wait(10s);

  // The owner died publishing its next window: one chunk of two is in the stream.
  SeqMarks before = ReadMarks(nats.urls(), "torn");
  const uint64_t torn = before.report.last_window + 1;
  {
    auto link = repl::ConnectJetStream(nats.urls());
    REQUIRE(link.ok());
    natsMsg* m = nullptr;
    REQUIRE(natsMsg_Create(&m, repl::LogSubject("torn").c_str(), nullptr, "x", 1) == NATS_OK);
    repl::MsgPtr guard(m);
    REQUIRE(natsMsgHeader_Set(m, "Conv-Window", std::to_string(torn).c_str()) == NATS_OK);
    REQUIRE(natsMsgHeader_Set(m, "Conv-Part", "0/2") == NATS_OK);
    REQUIRE(natsMsgHeader_Set(m, "Conv-Epoch", std::to_string(before.report.epoch).c_str()) ==
            NATS_OK);
    jsPubAck* pa = nullptr;
    REQUIRE(js_PublishMsg(&pa, link->js.get(), m, nullptr, nullptr) == NATS_OK);
    jsPubAck_Destroy(pa);
  }
  CHECK(ReadMarks(nats.urls(), "torn").report.torn_window == torn);

  testing::ServeProcess standby =
      testing::StartServe(dir.File("standby"), dir.File("standby.log"),
                          {"--follow", nats.urls(), "--cluster-name", "torn", "--standby",
                           "--failover-after", "2s", "--window", "2ms"});
  std::string address = NewAddress(standby, 30s);
  auto moved = net::Client::Connect(address, hello, 10s);
  REQUIRE_MESSAGE(moved.ok(), moved.message(), "\nstandby log:\n", ReadLog(standby.log_path));
  CHECK((*moved)->welcome().last_applied_seq == 20);
  w.client = std::move(moved).value();
  REQUIRE(w.client->Send(gen.Frame(0, 21)).ok());
  w.sent = 21;
  deadline = std::chrono::steady_clock::now() + 10s;
  while (w.acked < 21 && std::chrono::steady_clock::now() < deadline)
    w.ReadAcks(50ms);
  CHECK(w.acked == 21);
  // The torn chunk is dropped at the new owner's marker; its windows follow. The
  // marker goes with the torn chunk once the new owner's first checkpoint purges
  // the stream (written at once after a takeover).
  SeqMarks after = ReadMarks(nats.urls(), "torn");
  CHECK(after.report.torn_window == 0);
  CHECK(after.report.last_window >= torn);
  CHECK((after.report.epoch > before.report.epoch || after.report.used_checkpoint));
  CHECK(after.marks[w.name] == 21);
  standby.Stop();
}

namespace {

// An owner and one writer that has `ops` acknowledged, then the owner killed with
// SIGKILL: a stream for standbys to take over.
void WriteThenKill(testing::TempDir& dir, testing::NatsCluster& nats, const std::string& name,
                   const testing::OpGenerator& gen, uint64_t ops) {
  testing::ServeProcess owner =
      testing::StartServe(dir.File(name + "-owner"), dir.File(name + "-owner.log"),
                          {"--replicate", nats.urls(), "--cluster-name", name, "--window", "2ms"});
  Writer w;
  w.name = name + "-writer";
  net::Hello hello;
  hello.source = w.name;
  auto c = net::Client::Connect(owner.address, hello, 10s);
  REQUIRE_MESSAGE(c.ok(), c.message());
  w.client = std::move(c).value();
  for (uint64_t seq = 1; seq <= ops; ++seq)
    REQUIRE(w.client->Send(gen.Frame(0, seq)).ok());
  w.sent = ops;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (w.acked < ops && std::chrono::steady_clock::now() < deadline)
    w.ReadAcks(50ms);
  REQUIRE(w.acked == ops);
  owner.process->Signal(SIGKILL);
  owner.process->Wait(10s);
}

// Connects to `server`, following not_owner, trying for up to 10 s (a replica may
// name the dead owner until it reads the record again).
std::unique_ptr<net::Client> ConnectFollowing(const std::string& server, const net::Hello& hello) {
  net::ClientOptions o;
  o.servers = {server};
  o.timeout = 10s;
  o.retry_for = 10s;
  auto c = net::Client::Connect(o, hello);
  REQUIRE_MESSAGE(c.ok(), c.message());
  return std::move(c).value();
}

}  // namespace

TEST_CASE("cluster: a standby that cannot clear its data dir after a lost takeover stops") {
  testing::TempDir dir("conv-takeover");
  testing::NatsCluster nats(dir.path());
  testing::OpGenerator gen(engine::PlayerSchema(), 11, 8);
  WriteThenKill(dir, nats, "clear", gen, 10);
  // The checkpoint the standby will write from the stream cannot be created (a
  // directory holds its temporary name), so it does not take over; that directory,
  // not empty, cannot be removed either.
  const uint64_t window = ReadMarks(nats.urls(), "clear").report.last_window;
  REQUIRE(window > 0);
  const std::string data = dir.File("standby");
  const std::string blocker = fmt::format("{}/checkpoint-{:016x}.ckpt.tmp", data, window);
  std::filesystem::create_directories(blocker);
  std::ofstream(blocker + "/keep") << "x";
  testing::ServeProcess standby = testing::StartServe(
      data, dir.File("standby.log"),
      {"--follow", nats.urls(), "--cluster-name", "clear", "--standby", "--failover-after", "2s"});
  auto code = standby.process->Wait(30s);
  REQUIRE(code.has_value());
  CHECK(WIFEXITED(*code));
  CHECK(WEXITSTATUS(*code) == 2);
  std::string log = ReadLog(standby.log_path);
  CHECK_MESSAGE(log.find("--standby: not taking over: cannot create '" + blocker +
                         "': Is a directory") != std::string::npos,
                log);
  CHECK_MESSAGE(log.find("convergence: --data-dir: cannot clear '" + data + "': cannot remove '" +
                         blocker + "': Directory not empty") != std::string::npos,
                log);
}

TEST_CASE("cluster: an owner whose epoch marker is refused at start-up does not start") {
  testing::TempDir dir("conv-takeover");
  testing::NatsCluster nats(dir.path());
  // The stream exists (a marker on an empty one expects no sequence): an owner ran
  // on the data dir and stopped.
  testing::StartServe(dir.File("owner"), dir.File("first.log"),
                      {"--replicate", nats.urls(), "--cluster-name", "rogue"})
      .Stop();
  // Another writer of the stream while the owner starts again: epoch-0 markers (which
  // no reader takes as newer), one every millisecond, so that one lands between the
  // owner's reading of the stream's last sequence and its marker.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> stored{0};
  std::thread rogue([&] {
    auto link = repl::ConnectJetStream(nats.urls());
    if (!link.ok()) return;
    const std::string subject = repl::EpochSubject("rogue");
    while (!stop.load()) {
      natsMsg* m = nullptr;
      if (natsMsg_Create(&m, subject.c_str(), nullptr, "address 127.0.0.1:1", 19) != NATS_OK) {
        return;
      }
      repl::MsgPtr guard(m);
      natsMsgHeader_Set(m, "Conv-Epoch", "0");
      jsPubAck* pa = nullptr;
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MaxWait = 1000;
      if (js_PublishMsg(&pa, link->js.get(), m, &po, nullptr) == NATS_OK) ++stored;
      jsPubAck_Destroy(pa);
      std::this_thread::sleep_for(1ms);
    }
  });
  testing::ProcessResult r = testing::RunProcess(
      {CONV_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir", dir.File("owner"),
       "--replicate", nats.urls(), "--cluster-name", "rogue"},
      60s);
  stop = true;
  rogue.join();
  CHECK(stored.load() > 0);
  CHECK(r.exit_code == 2);
  CHECK_MESSAGE(r.err.find("--replicate: refusing to take writes: stream CONV_rogue was written "
                           "after sequence ") != std::string::npos,
                r.err);
  CHECK(r.err.find("by another writer (another owner)") != std::string::npos);
}

TEST_CASE(
    "cluster: two standbys race for a dead owner: one takes over, the other follows it and "
    "serves its state") {
  testing::TempDir dir("conv-takeover");
  testing::NatsCluster nats(dir.path());
  testing::OpGenerator gen(engine::PlayerSchema(), 13, 16);
  const std::vector<std::string> standby_args = {"--follow", nats.urls(),        "--cluster-name",
                                                 "race",     "--standby",        "--window",
                                                 "2ms",      "--failover-after", "2s"};
  // Both standbys follow the owner before it dies, each on a port of its own: it
  // listens there as a replica, and again as the owner or, after a lost takeover, as
  // a replica.
  testing::ServeProcess owner = testing::StartServe(
      dir.File("race-owner"), dir.File("race-owner.log"),
      {"--replicate", nats.urls(), "--cluster-name", "race", "--window", "2ms"});
  testing::ServeProcess a = testing::StartServe(dir.File("a"), dir.File("a.log"), standby_args,
                                                fmt::format("127.0.0.1:{}", testing::ClosedPort()));
  testing::ServeProcess b = testing::StartServe(dir.File("b"), dir.File("b.log"), standby_args,
                                                fmt::format("127.0.0.1:{}", testing::ClosedPort()));
  Writer w;
  w.name = "race-writer";
  net::Hello hello;
  hello.source = w.name;
  auto c = net::Client::Connect(owner.address, hello, 10s);
  REQUIRE_MESSAGE(c.ok(), c.message());
  w.client = std::move(c).value();
  for (uint64_t seq = 1; seq <= 40; ++seq)
    REQUIRE(w.client->Send(gen.Frame(0, seq)).ok());
  w.sent = 40;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (w.acked < w.sent && std::chrono::steady_clock::now() < deadline)
    w.ReadAcks(50ms);
  REQUIRE(w.acked == w.sent);
  owner.process->Signal(SIGKILL);
  owner.process->Wait(10s);

  // One takes over. The other tried too and lost (it listens anew as a replica), or
  // saw the winner's record before its own wait ran out (it never left following).
  const std::string address[2] = {a.address, b.address};
  int owners = 0, winner = -1;
  deadline = std::chrono::steady_clock::now() + 30s;
  while (owners == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
    for (int i = 0; i < 2; ++i) {
      net::ClientOptions o;
      o.servers = {address[i]};
      o.timeout = 2s;
      auto probe = net::Client::Connect(o, hello);  // a replica sends it on, or refuses
      if (probe.ok() && (*probe)->server() == address[i]) {
        ++owners;
        winner = i;
      }
    }
  }
  std::string logs[2] = {ReadLog(a.log_path), ReadLog(b.log_path)};
  REQUIRE_MESSAGE(owners == 1, "a:\n", logs[0], "\nb:\n", logs[1]);
  const int loser = 1 - winner;
  if (logs[loser].find(": taking over") != std::string::npos) {
    // It tried: it says it lost, once its claim was refused.
    deadline = std::chrono::steady_clock::now() + 30s;
    while (logs[loser].find("--standby: not taking over: ") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(100ms);
      logs[loser] = ReadLog(loser == 0 ? a.log_path : b.log_path);
    }
    CHECK_MESSAGE(logs[loser].find("--standby: not taking over: ") != std::string::npos,
                  logs[loser]);
  }
  CHECK(logs[winner].find("--standby: not taking over") == std::string::npos);

  // Writes to the loser are sent on to the winner; the loser serves the new state.
  w.client = ConnectFollowing(address[loser], hello);
  CHECK(w.client->server() == address[winner]);
  CHECK(w.client->welcome().last_applied_seq == 40);
  for (uint64_t seq = 41; seq <= 80; ++seq)
    REQUIRE(w.client->Send(gen.Frame(0, seq)).ok());
  w.sent = 80;
  deadline = std::chrono::steady_clock::now() + 10s;
  while (w.acked < w.sent && std::chrono::steady_clock::now() < deadline)
    w.ReadAcks(50ms);
  CHECK(w.acked == w.sent);
  testing::StateModel model(gen.schema());
  for (uint64_t seq = 1; seq <= w.sent; ++seq)
    model.Apply(w.name, gen.Op(0, seq));
  net::Hello reader;
  auto r = net::Client::Connect(address[loser], reader, 10s);
  REQUIRE(r.ok());
  testing::StateByEntity seen;
  deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto s = testing::QueryState(**r, gen.schema(), gen.EntityIds());
    REQUIRE(s.ok());
    seen = *s;
    if (seen == model.State()) break;
    std::this_thread::sleep_for(100ms);
  }
  CHECK_MESSAGE(seen == model.State(), testing::DescribeDifference(model.State(), seen));
  a.Stop();
  b.Stop();
}

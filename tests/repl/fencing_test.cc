// Fencing a deposed owner (docs/replication.md, "Fencing"): epoch markers in the
// stream, publishes numbered with Nats-Expected-Last-Sequence, and a `serve
// --replicate` that another owner replaced. Against a three-node NATS cluster on
// loopback; every test case is named "cluster: ..." and labelled `cluster`.

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "engine/schema.h"
#include "net/client.h"
#include "net/messages.h"
#include "repl/jetstream.h"
#include "repl/nats_link.h"
#include "repl/ownership.h"
#include "repl/stream_reader.h"
#include "support/nats_cluster.h"
#include "support/op_model.h"
#include "support/process.h"
#include "support/serve_process.h"
#include "wal/files.h"
#include "wal/records.h"
#include "wal/writer.h"

using namespace conv;
using namespace std::chrono_literals;

namespace {

// The windows and each source's seq mark a stream replays to.
class Marks : public wal::RecordVisitor {
 public:
  void OnClaim(const wal::ClaimRecord&) override {}
  void OnRetract(const wal::RetractRecord&) override {}
  void OnSource(const wal::SourceRecord& r) override {
    uint64_t& m = marks[std::string(r.source)];
    if (r.seq > m) m = r.seq;
  }
  void OnSchema(const wal::SchemaRecord&) override {}
  void OnLease(const wal::LeaseRecord&) override {}
  void OnWindow(uint64_t window) override { windows.push_back(window); }
  std::map<std::string, uint64_t> marks;
  std::vector<uint64_t> windows;
};

Marks Replay(const repl::ReplicationOptions& o) {
  Marks m;
  repl::StreamReadReport report;
  auto st = repl::ReadReplicatedLog(o, m, &report);
  REQUIRE_MESSAGE(st.ok(), st.message());
  return m;
}

// Window blocks as a segment holds them: one CLAIM.
class Windows {
 public:
  explicit Windows(const std::string& dir) : writer_(dir, {}) {}
  std::string Blocks(uint64_t w) {
    std::string r;
    wal::PutClaim(r, 1, fmt::format("e{}", w), "src", 1, true, w, nullptr, "value");
    std::vector<std::string_view> views{r};
    REQUIRE(writer_.AppendWindow(w, 1, 1, views).ok());
    return std::string(writer_.last_blocks());
  }

 private:
  wal::SegmentWriter writer_;
};

std::unique_ptr<repl::JetStreamLog> OpenLog(const repl::ReplicationOptions& o) {
  auto log = repl::JetStreamLog::Open(o, nullptr);
  REQUIRE_MESSAGE(log.ok(), log.message());
  return std::move(log).value();
}

}  // namespace

TEST_CASE("cluster: another owner's epoch marker fences an owner: it confirms nothing more") {
  testing::TempDir dir("conv-fence");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("fence");
  std::filesystem::create_directories(dir.File("a"));
  std::filesystem::create_directories(dir.File("b"));
  Windows wa(dir.File("a")), wb(dir.File("b"));

  auto a = OpenLog(o);
  REQUIRE(a->PublishEpochMarker(1, "127.0.0.1:1001").ok());
  a->Publish(1, wa.Blocks(1));
  auto ok = a->Confirm();
  REQUIRE_MESSAGE(ok.ok(), ok.message);

  // B opens the stream where A left it and publishes its marker.
  auto b = OpenLog(o);
  auto marked = b->PublishEpochMarker(2, "127.0.0.1:1002");
  REQUIRE_MESSAGE(marked.ok(), marked.message());

  // A's next window is refused: A is fenced, names B, and confirms nothing.
  a->Publish(2, wa.Blocks(2));
  auto refused = a->Confirm();
  CHECK_FALSE(refused.ok());
  CHECK(refused.message == "fenced: another owner (127.0.0.1:1002) wrote to stream CONV_fence");
  CHECK(a->fenced());
  CHECK(a->fenced_owner() == "127.0.0.1:1002");
  // Every later round too, and its checkpoints.
  a->Publish(3, wa.Blocks(3));
  CHECK_FALSE(a->Confirm().ok());
  std::string ckpt = dir.File("no-such-checkpoint");
  {
    std::FILE* f = std::fopen(ckpt.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs("x", f);
    std::fclose(f);
  }
  auto cp = a->PublishCheckpoint(1, ckpt);
  CHECK(cp.message() == "fenced: another owner (127.0.0.1:1002) wrote to stream CONV_fence");

  // The stream has A's first window only, then B's.
  b->Publish(2, wb.Blocks(2));
  CHECK(b->Confirm().ok());
  Marks m = Replay(o);
  REQUIRE(m.windows.size() == 2);
  CHECK(m.windows[0] == 1);

  // An owner that opened the stream before B's last write cannot publish its
  // marker: it would take writes on a stream it has not read to the end.
  auto c = OpenLog(o);
  b->Publish(3, wb.Blocks(3));
  CHECK(b->Confirm().ok());
  auto late = c->PublishEpochMarker(3, "127.0.0.1:1003");
  CHECK_FALSE(late.ok());
  CHECK(late.message().find("stream CONV_fence was written after sequence") == 0);
}

TEST_CASE("cluster: a publish refused out of order with no newer marker is numbered again") {
  testing::TempDir dir("conv-fence");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("resync");
  std::filesystem::create_directories(dir.File("a"));
  Windows w(dir.File("a"));
  auto a = OpenLog(o);
  REQUIRE(a->PublishEpochMarker(1, "127.0.0.1:1001").ok());
  a->Publish(1, w.Blocks(1));
  REQUIRE(a->Confirm().ok());
  // A writer that is no owner (no marker) puts a message in: A's next chunk is
  // refused for its expected last sequence, A finds no newer marker and no owner
  // check saying otherwise, and publishes it again after that message.
  auto stray = OpenLog(o);
  std::string stray_blocks = w.Blocks(2);
  stray->Publish(2, stray_blocks);
  REQUIRE(stray->Confirm().ok());
  a->Publish(3, w.Blocks(3));
  auto ok = a->Confirm();
  CHECK_MESSAGE(ok.ok(), ok.message);
  CHECK_FALSE(a->fenced());
  CHECK(a->counters().resyncs == 1);
  CHECK(Replay(o).windows == std::vector<uint64_t>{1, 2, 3});

  // With an owner check that cannot tell (the record unreadable), the chunk is not
  // numbered again: the round is not confirmed, A is not fenced either.
  a->SetOwnerCheck([]() -> util::Result<std::optional<std::string>> {
    return util::Status::Error("the owner record cannot be read");
  });
  stray->Publish(4, w.Blocks(4));
  REQUIRE(stray->Confirm().ok());
  a->Publish(5, w.Blocks(5));
  auto undecided = a->Confirm();
  CHECK_FALSE(undecided.ok());
  CHECK_FALSE(a->fenced());
  CHECK(a->counters().resyncs == 1);
  CHECK(Replay(o).windows == std::vector<uint64_t>{1, 2, 3, 4});

  // With an owner check that names another owner, the same refusal fences.
  a->SetOwnerCheck([]() -> util::Result<std::optional<std::string>> {
    return std::optional<std::string>("127.0.0.1:1009");
  });
  stray->Publish(6, w.Blocks(6));
  REQUIRE(stray->Confirm().ok());
  a->Publish(7, w.Blocks(7));
  auto refused = a->Confirm();
  CHECK_FALSE(refused.ok());
  CHECK(a->fenced_owner() == "127.0.0.1:1009");
}

TEST_CASE("cluster: a deposed serve acknowledges nothing more and sends its writers on") {
  testing::TempDir dir("conv-fence");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("deposed");
  // The new owner's address: a plain server that takes the writers sent there.
  testing::ServeProcess next = testing::StartServe(dir.File("next"), dir.File("next.log"));
  testing::ServeProcess owner = testing::StartServe(
      dir.File("data"), dir.File("serve.log"),
      {"--replicate", nats.urls(), "--cluster-name", "deposed", "--window", "2ms"});
  testing::OpGenerator gen(engine::PlayerSchema(), 11, 4);
  net::Hello hello;
  hello.source = "fenced-writer";
  auto c = net::Client::Connect(owner.address, hello, 10s);
  REQUIRE_MESSAGE(c.ok(), c.message());
  uint64_t acked = 0;
  net::Error error;
  // Reads until `seq` is acknowledged, an ERROR comes, or `wait` passes.
  auto read = [&](uint64_t seq, std::chrono::milliseconds wait) {
    auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline && acked < seq) {
      net::OwnedFrame f;
      auto got = (*c)->TryReadFrame(50ms, &f);
      if (!got.ok()) return;
      if (!*got) continue;
      if (f.type == static_cast<uint8_t>(net::FrameType::kAck)) {
        REQUIRE(net::DecodeAck(f.payload, &acked));
      } else if (f.type == static_cast<uint8_t>(net::FrameType::kError)) {
        REQUIRE(net::DecodeError(f.payload, &error));
        return;
      }
    }
  };
  REQUIRE((*c)->Send(gen.Frame(0, 1)).ok());
  read(1, 10s);
  REQUIRE(acked == 1);

  // Paused past its refresh, the owner is replaced: the record names `next`, whose
  // marker goes into the stream. A write sent meanwhile reaches it after SIGCONT.
  owner.process->Signal(SIGSTOP);
  auto taker = repl::Ownership::Claim(o, next.address, nullptr);
  REQUIRE_MESSAGE(taker.ok(), taker.message());
  auto log = OpenLog(o);
  REQUIRE(log->PublishEpochMarker((*taker)->epoch(), next.address).ok());
  REQUIRE((*c)->Send(gen.Frame(0, 2)).ok());
  owner.process->Signal(SIGCONT);

  read(2, 10s);
  CHECK(acked == 1);  // op 2 is never acknowledged
  CHECK(error.code == static_cast<uint64_t>(net::ErrorCode::kNotOwner));
  CHECK(error.message ==
        fmt::format("this server is no longer the owner; the owner is at {}", next.address));
  CHECK(net::OwnerInNotOwnerMessage(error.message) == next.address);
  CHECK(Replay(o).marks["fenced-writer"] == 1);

  // A writer's new HELLO is sent on to the new owner (net::Client follows
  // not_owner): it gets WELCOME there, from a server with no replication role.
  hello.source = "late-writer";
  auto late = net::Client::Connect(owner.address, hello, 10s);
  REQUIRE_MESSAGE(late.ok(), late.message());
  auto stats = (*late)->Stats();
  REQUIRE(stats.ok());
  bool has_role = false;
  for (const auto& [name, value] : *stats)
    has_role = has_role || name == "role";
  CHECK_FALSE(has_role);

  // Then it stops (exit 2) within its grace period.
  auto code = owner.process->Wait(15s);
  REQUIRE(code.has_value());
  CHECK(WIFEXITED(*code));
  CHECK(WEXITSTATUS(*code) == 2);
  next.Stop();
}

TEST_CASE("cluster: an owner whose record another takes is fenced even with no write pending") {
  testing::TempDir dir("conv-fence");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("lost");
  testing::ServeProcess owner = testing::StartServe(
      dir.File("data"), dir.File("serve.log"),
      {"--replicate", nats.urls(), "--cluster-name", "lost", "--window", "2ms"});
  net::Hello hello;
  hello.source = "idle-writer";
  auto c = net::Client::Connect(owner.address, hello, 10s);
  REQUIRE_MESSAGE(c.ok(), c.message());
  // Another claimant replaces the record (no marker): the owner's next refresh is
  // refused, and it tells its writer.
  auto taker = repl::Ownership::Claim(o, "127.0.0.1:1777", nullptr);
  REQUIRE_MESSAGE(taker.ok(), taker.message());
  net::Error error;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline && error.code == 0) {
    net::OwnedFrame f;
    auto got = (*c)->TryReadFrame(50ms, &f);
    if (!got.ok()) break;
    if (*got && f.type == static_cast<uint8_t>(net::FrameType::kError)) {
      REQUIRE(net::DecodeError(f.payload, &error));
    }
  }
  CHECK(error.code == static_cast<uint64_t>(net::ErrorCode::kNotOwner));
  CHECK(net::OwnerInNotOwnerMessage(error.message) == "127.0.0.1:1777");
  // A SIGTERM in the grace period stops it at once, with exit 2: nothing to flush.
  owner.process->Signal(SIGTERM);
  auto code = owner.process->Wait(10s);
  REQUIRE(code.has_value());
  CHECK(WIFEXITED(*code));
  CHECK(WEXITSTATUS(*code) == 2);
}

TEST_CASE(
    "cluster: readers drop a deposed owner's torn window at a newer marker, and skip its "
    "chunks after it") {
  testing::TempDir dir("conv-fence");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("epochs");
  // The stream as a takeover leaves it when the deposed owner was publishing: its
  // window 2 in two chunks, one stored before the new owner's marker and one
  // after it, then the new owner's own window 2.
  auto log = OpenLog(o);  // creates the stream
  std::filesystem::create_directories(dir.File("a"));
  std::filesystem::create_directories(dir.File("b"));
  Windows wa(dir.File("a")), wb(dir.File("b"));
  std::string w1 = wa.Blocks(1), old2 = wa.Blocks(2), new2 = wb.Blocks(2);
  auto link = repl::ConnectJetStream(o.urls);
  REQUIRE(link.ok());
  auto publish = [&](const std::string& subject, std::string_view body,
                     std::vector<std::pair<const char*, std::string>> headers) {
    natsMsg* m = nullptr;
    REQUIRE(natsMsg_Create(&m, subject.c_str(), nullptr, body.data(),
                           static_cast<int>(body.size())) == NATS_OK);
    repl::MsgPtr guard(m);
    for (const auto& [k, v] : headers)
      REQUIRE(natsMsgHeader_Set(m, k, v.c_str()) == NATS_OK);
    jsPubAck* pa = nullptr;
    REQUIRE(js_PublishMsg(&pa, link->js.get(), m, nullptr, nullptr) == NATS_OK);
    jsPubAck_Destroy(pa);
  };
  const std::string logs = repl::LogSubject("epochs"), marks = repl::EpochSubject("epochs");
  auto chunk = [&](uint64_t window, std::string_view body, const char* part, const char* epoch) {
    publish(logs, body,
            {{"Conv-Window", std::to_string(window)}, {"Conv-Part", part}, {"Conv-Epoch", epoch}});
  };
  publish(marks, "address 127.0.0.1:1001", {{"Conv-Epoch", "5"}});
  chunk(1, w1, "0/1", "5");
  size_t half = old2.size() / 2;
  chunk(2, std::string_view(old2).substr(0, half), "0/2", "5");
  publish(marks, "address 127.0.0.1:1002", {{"Conv-Epoch", "9"}});
  chunk(2, std::string_view(old2).substr(half), "1/2", "5");  // slipped in: skipped
  chunk(2, new2, "0/1", "9");

  Marks m;
  repl::StreamReadReport report;
  auto st = repl::ReadReplicatedLog(o, m, &report);
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(report.epoch == 9);
  CHECK(report.torn_window == 0);
  CHECK(m.windows == std::vector<uint64_t>{1, 2});
  CHECK(report.messages == 3);  // window 1, the torn chunk (dropped), the new window 2

  // A follower of the stream from its start hands out the same windows, window 2
  // being the new owner's.
  auto tail = repl::StreamTail::Open(o, 1, 0, 0);
  REQUIRE_MESSAGE(tail.ok(), tail.message());
  uint64_t window = 0;
  std::string blocks;
  auto got = (*tail)->Next(5s, &window, &blocks);
  REQUIRE(got.ok());
  REQUIRE(*got);
  CHECK(window == 1);
  got = (*tail)->Next(5s, &window, &blocks);
  REQUIRE(got.ok());
  REQUIRE(*got);
  CHECK(window == 2);
  CHECK(blocks == new2);
}

TEST_CASE(
    "cluster: a takeover claims from the revision it read, and writes the stream only into "
    "an empty data dir") {
  testing::TempDir dir("conv-fence");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("claims");
  auto owner = repl::Ownership::Claim(o, "127.0.0.1:1001", nullptr, 100ms);
  REQUIRE_MESSAGE(owner.ok(), owner.message());
  uint64_t read = (*owner)->epoch();
  // The owner refreshed since: a claim from the revision read then is refused.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((*owner)->refreshes() < 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  REQUIRE((*owner)->refreshes() >= 1);
  auto late = repl::Ownership::Claim(o, "127.0.0.1:1002", nullptr, 100ms, read);
  REQUIRE_FALSE(late.ok());
  CHECK(late.message().find("another server took over") != std::string::npos);
  CHECK(late.message().find(fmt::format("after revision {}", read)) != std::string::npos);
  // From the current revision (the owner stopped: its record stays), one claim wins.
  owner->reset();
  auto reader = repl::OwnerReader::Open(o);
  REQUIRE(reader.ok());
  auto rec = (*reader)->Read();
  REQUIRE(rec.ok());
  REQUIRE(rec->has_value());
  auto first = repl::Ownership::Claim(o, "127.0.0.1:1003", nullptr, 100ms, (*rec)->revision);
  REQUIRE_MESSAGE(first.ok(), first.message());
  auto second = repl::Ownership::Claim(o, "127.0.0.1:1004", nullptr, 100ms, (*rec)->revision);
  CHECK_FALSE(second.ok());

  // The stream's state as one checkpoint: refused in a data dir with a log.
  std::filesystem::create_directories(dir.File("a"));
  Windows w(dir.File("a"));
  auto log = OpenLog(o);
  log->Publish(1, w.Blocks(1));
  log->Publish(2, w.Blocks(2));
  REQUIRE(log->Confirm().ok());
  repl::StreamReadReport report;
  auto refused = repl::WriteStreamCheckpoint(o, dir.File("a"), &report);
  CHECK(refused.message() ==
        fmt::format("the data dir '{}' holds a log or a checkpoint already", dir.File("a")));
  std::filesystem::create_directories(dir.File("b"));
  auto written = repl::WriteStreamCheckpoint(o, dir.File("b"), &report);
  REQUIRE_MESSAGE(written.ok(), written.message());
  CHECK(report.last_window == 2);
  CHECK(std::filesystem::exists(dir.File("b") + "/" + wal::CheckpointName(2)));
}

// Replication on NATS JetStream (src/repl, docs/replication.md) against a
// three-node NATS cluster on loopback (support/nats_cluster.h). Every test case is
// named "cluster: ..." and labelled `cluster` (tests/repl/labels.cmake).

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <signal.h>

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
#include "repl/stream_reader.h"
#include "support/crash_cycles.h"
#include "support/nats_cluster.h"
#include "support/op_model.h"
#include "support/process.h"
#include "support/serve_process.h"
#include "wal/checkpoint.h"
#include "wal/files.h"
#include "wal/records.h"
#include "wal/replay.h"
#include "wal/writer.h"

using namespace conv;
using namespace std::chrono_literals;

namespace {

// What a log says in the end: each (schema, entity, source) claim's mask and
// values, each source's seq mark, and the windows seen.
class StateCollector : public wal::RecordVisitor {
 public:
  void OnClaim(const wal::ClaimRecord& r) override {
    claims[fmt::format("{}/{}/{}", r.schema, r.id, r.source)] =
        fmt::format("{:x}:{}", r.mask, r.values);
  }
  void OnRetract(const wal::RetractRecord& r) override {
    claims.erase(fmt::format("{}/{}/{}", r.schema, r.id, r.source));
  }
  void OnSource(const wal::SourceRecord& r) override {
    uint64_t& m = marks[std::string(r.source)];
    if (r.seq > m) m = r.seq;
  }
  void OnSchema(const wal::SchemaRecord&) override {}
  void OnLease(const wal::LeaseRecord&) override {}
  void OnWindow(uint64_t window) override { windows.push_back(window); }

  std::map<std::string, std::string> claims;
  std::map<std::string, uint64_t> marks;
  std::vector<uint64_t> windows;
};

StateCollector ReadStream(const repl::ReplicationOptions& o, repl::StreamReadReport* report) {
  StateCollector c;
  auto st = repl::ReadReplicatedLog(o, c, report);
  REQUIRE_MESSAGE(st.ok(), st.message());
  return c;
}

// Window `w` of `n` records, each a CLAIM of entity "e<w>-<i>" with `value_bytes`
// of values.
std::vector<std::string> WindowRecords(uint64_t w, size_t n, size_t value_bytes) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    std::string r;
    wal::PutClaim(r, 1, fmt::format("e{}-{}", w, i), "src", 1, true, w, nullptr,
                  std::string(value_bytes, static_cast<char>('a' + i % 26)));
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

TEST_CASE("cluster: windows go out in chunks, come back whole, and a checkpoint purges them") {
  testing::TempDir dir("conv-repl");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("chunks");
  // Chunks of 64 bytes: the windows are compressed first (window 2's 40 KB to about
  // 1 KB), and it still takes more than ten.
  o.max_chunk = 64;
  auto log = repl::JetStreamLog::Open(o, nullptr);
  REQUIRE_MESSAGE(log.ok(), log.message());
  auto last = (*log)->LastReplicatedWindow();
  REQUIRE(last.ok());
  CHECK(*last == 0);

  const std::string data = dir.File("data");
  std::filesystem::create_directories(data);
  wal::SegmentWriter writer(data, {});
  // Window 2 is 40 KB, windows 1 and 3 under 1 KB.
  const size_t sizes[] = {3, 200, 5};
  for (uint64_t w = 1; w <= 3; ++w) {
    auto records = WindowRecords(w, sizes[w - 1], 200);
    std::vector<std::string_view> views(records.begin(), records.end());
    REQUIRE(writer.AppendWindow(w, sizes[w - 1], sizes[w - 1], views).ok());
    (*log)->Publish(w, writer.last_blocks());
  }
  REQUIRE(writer.Sync().ok());
  auto confirmed = (*log)->Confirm();
  REQUIRE_MESSAGE(confirmed.ok(), confirmed.message);
  repl::ReplicationCounters c = (*log)->counters();
  CHECK(c.windows == 3);
  CHECK(c.chunks >= 12);
  CHECK(c.sent_bytes < c.bytes / 10);
  CHECK(c.last_window == 3);
  last = (*log)->LastReplicatedWindow();
  REQUIRE(last.ok());
  CHECK(*last == 3);

  repl::StreamReadReport report;
  StateCollector all = ReadStream(o, &report);
  CHECK(report.messages == c.chunks);
  CHECK_FALSE(report.used_checkpoint);
  CHECK(all.windows == std::vector<uint64_t>{1, 2, 3});
  CHECK(all.claims.size() == 208);
  CHECK(all.claims.count("1/e2-199/src") == 1);

  // A checkpoint at window 2 holding windows 1 and 2's claims: windows 1 and 2 are
  // purged, window 3 stays, and the replay gives the same state.
  auto cp = wal::CheckpointWriter::Begin(data, 2, "", 0, {.max_block_payload = 8192});
  REQUIRE(cp.ok());
  for (uint64_t w = 1; w <= 2; ++w) {
    std::string run;
    for (const auto& r : WindowRecords(w, sizes[w - 1], 200))
      run += r;
    REQUIRE((*cp)->Add(run, sizes[w - 1]).ok());
  }
  REQUIRE((*cp)->Finish().ok());
  auto published = (*log)->PublishCheckpoint(2, (*cp)->path());
  REQUIRE_MESSAGE(published.ok(), published.message());
  c = (*log)->counters();
  CHECK(c.checkpoints == 1);
  CHECK(c.checkpoint_window == 2);
  CHECK(c.purged_below > 1);

  repl::StreamReadReport after;
  StateCollector restored = ReadStream(o, &after);
  CHECK(after.used_checkpoint);
  CHECK(after.checkpoint_window == 2);
  CHECK(after.checkpoint_records == 203);
  CHECK(after.windows == 1);
  CHECK(after.last_window == 3);
  CHECK(after.first_seq == c.purged_below);
  CHECK(restored.windows == std::vector<uint64_t>{3});
  CHECK(restored.claims == all.claims);
}

TEST_CASE("cluster: a read of the stream that a purge overtakes begins again from the checkpoint") {
  testing::TempDir dir("conv-repl");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("overtaken");
  auto log = repl::JetStreamLog::Open(o, nullptr);
  REQUIRE_MESSAGE(log.ok(), log.message());
  const std::string data = dir.File("data");
  std::filesystem::create_directories(data);
  wal::SegmentWriter writer(data, {});
  auto publish = [&](uint64_t w) {
    auto records = WindowRecords(w, 4, 50);
    std::vector<std::string_view> views(records.begin(), records.end());
    REQUIRE(writer.AppendWindow(w, 4, 4, views).ok());
    (*log)->Publish(w, writer.last_blocks());
    REQUIRE(writer.Sync().ok());
    auto confirmed = (*log)->Confirm();
    REQUIRE_MESSAGE(confirmed.ok(), confirmed.message);
  };
  for (uint64_t w = 1; w <= 3; ++w)
    publish(w);
  repl::StreamReadReport report;
  StateCollector all = ReadStream(o, &report);
  REQUIRE(all.claims.size() == 12);
  CHECK(report.restarts == 0);

  // The owner replicates a checkpoint at window 2 and purges windows 1 and 2 after
  // the reader saw the stream begin at sequence 1 and before it read a message.
  auto cp = wal::CheckpointWriter::Begin(data, 2, "", 0);
  REQUIRE(cp.ok());
  for (uint64_t w = 1; w <= 2; ++w) {
    std::string run;
    for (const auto& r : WindowRecords(w, 4, 50))
      run += r;
    REQUIRE((*cp)->Add(run, 4).ok());
  }
  REQUIRE((*cp)->Finish().ok());
  int calls = 0;
  StateCollector read;
  auto st = repl::ReadReplicatedLog(o, read, &report, [&] {
    if (++calls > 1) return;
    auto published = (*log)->PublishCheckpoint(2, (*cp)->path());
    REQUIRE_MESSAGE(published.ok(), published.message());
    REQUIRE((*log)->counters().purged_below > 1);
  });
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(calls == 2);
  CHECK(report.restarts == 1);
  CHECK(report.used_checkpoint);
  CHECK(report.checkpoint_window == 2);
  CHECK(report.first_seq == (*log)->counters().purged_below);
  CHECK(report.last_window == 3);
  CHECK(read.claims == all.claims);

  // Overtaken on every try: the read gives up at the confirm timeout and says why.
  o.confirm_timeout = 300ms;
  uint64_t w = 3;
  st = repl::ReadReplicatedLog(o, read, &report, [&] {
    publish(++w);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Stream.Purge.Sequence = report.last_seq + 1;
    auto link = repl::ConnectJetStream(o.urls);
    REQUIRE(link.ok());
    jsErrCode jerr = static_cast<jsErrCode>(0);
    REQUIRE(js_PurgeStream(link->js.get(), repl::StreamName("overtaken").c_str(), &jo, &jerr) ==
            NATS_OK);
  });
  REQUIRE_FALSE(st.ok());
  CHECK(report.restarts >= 2);
  CHECK_MESSAGE(st.message().find("cannot read stream CONV_overtaken: purged below sequences not "
                                  "read yet") != std::string::npos,
                st.message());
  CHECK_MESSAGE(
      st.message().find("within 300 ms (the last read, from sequence ") != std::string::npos,
      st.message());
  CHECK_MESSAGE(
      st.message().find(fmt::format("got sequence {} where {} was expected", report.last_seq + 1,
                                    report.first_seq)) != std::string::npos,
      st.message());
}

TEST_CASE("cluster: Confirm fails when JetStream does not answer in time, and works after") {
  testing::TempDir dir("conv-repl");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("paused");
  // Short for Confirm only: Open keeps the default set-up timeout (a loaded machine's
  // cluster may take seconds to create the stream).
  o.confirm_timeout = 1500ms;
  auto log = repl::JetStreamLog::Open(o, nullptr);
  REQUIRE_MESSAGE(log.ok(), log.message());
  const std::string data = dir.File("data");
  std::filesystem::create_directories(data);
  wal::SegmentWriter writer(data, {});
  auto append = [&](uint64_t w) {
    auto records = WindowRecords(w, 2, 10);
    std::vector<std::string_view> views(records.begin(), records.end());
    REQUIRE(writer.AppendWindow(w, 2, 2, views).ok());
    (*log)->Publish(w, writer.last_blocks());
  };
  append(1);
  REQUIRE((*log)->Confirm().ok());

  nats.PauseAll();
  append(2);
  auto t0 = std::chrono::steady_clock::now();
  wal::WriteOutcome failed = (*log)->Confirm();
  auto waited = std::chrono::steady_clock::now() - t0;
  nats.ResumeAll();
  CHECK(failed.errc == wal::WriteErrc::kIo);
  CHECK_MESSAGE(failed.message.find("did not confirm window 2 within 1500 ms") != std::string::npos,
                failed.message);
  CHECK(waited >= 1400ms);
  CHECK(waited < 5s);
  CHECK((*log)->counters().resends > 0);

  append(3);
  auto ok = (*log)->Confirm();
  CHECK_MESSAGE(ok.ok(), ok.message);
  CHECK((*log)->counters().last_window == 3);
}

TEST_CASE("cluster: serve --replicate acknowledges a write only once JetStream holds it") {
  testing::TempDir dir("conv-repl");
  testing::NatsCluster nats(dir.path());
  testing::ServeProcess owner = testing::StartServe(
      dir.File("data"), dir.File("serve.log"),
      {"--replicate", nats.urls(), "--cluster-name", "acks", "--window", "2ms"});
  testing::OpGenerator gen(engine::PlayerSchema(), 7, 4);
  net::Hello hello;
  hello.source = "acks-writer";
  auto c = net::Client::Connect(owner.address, hello, 10s);
  REQUIRE_MESSAGE(c.ok(), c.message());
  auto await_ack = [&](uint64_t seq, std::chrono::milliseconds wait) {
    auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline) {
      net::OwnedFrame f;
      auto got = (*c)->TryReadFrame(50ms, &f);
      REQUIRE(got.ok());
      uint64_t acked = 0;
      if (*got && f.type == static_cast<uint8_t>(net::FrameType::kAck) &&
          net::DecodeAck(f.payload, &acked) && acked >= seq) {
        return true;
      }
    }
    return false;
  };
  REQUIRE((*c)->Send(gen.Frame(0, 1)).ok());
  CHECK(await_ack(1, 10s));

  // With every NATS server stopped the write is fsynced here but not acknowledged;
  // once they run again it is.
  nats.PauseAll();
  REQUIRE((*c)->Send(gen.Frame(0, 2)).ok());
  CHECK_FALSE(await_ack(2, 1500ms));
  nats.ResumeAll();
  CHECK(await_ack(2, 8s));

  repl::StreamReadReport report;
  StateCollector s = ReadStream(nats.Options("acks"), &report);
  CHECK(s.marks["acks-writer"] == 2);
  owner.Stop();
}

TEST_CASE("cluster: no acknowledged op is missing from the stream when the owner is killed") {
  testing::TempDir dir("conv-repl");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("kills");
  testing::CrashRun run;
  run.cycles = testing::EnvNumber("CONV_REPL_CYCLES", 20);
  run.seed = testing::TestSeed("CONV_REPL_SEED", 20261130);
  run.serve_args = {"--replicate", nats.urls(), "--cluster-name", "kills"};
  MESSAGE("replicated crash test: ", run.cycles, " cycles, seed ", run.seed,
          " (CONV_REPL_CYCLES, CONV_REPL_SEED)");
  uint64_t missing = 0, checked = 0;
  run.after_kill = [&](uint64_t cycle, const std::vector<std::pair<std::string, uint64_t>>& acked) {
    repl::StreamReadReport report;
    StateCollector s = ReadStream(o, &report);
    for (const auto& [source, seq] : acked) {
      ++checked;
      if (s.marks[source] < seq) {
        missing += seq - s.marks[source];
        FAIL_CHECK("cycle ", cycle, ": the stream has ", source, " up to ", s.marks[source],
                   " but ops up to ", seq, " were acknowledged");
      }
    }
  };
  // In the end the stream replays to exactly what the owner's own log does.
  run.at_end = [&](const std::string& data_dir) {
    repl::StreamReadReport report;
    StateCollector replicated = ReadStream(o, &report);
    StateCollector local;
    wal::RecoveryReport recovery;
    REQUIRE(wal::Recover(data_dir, local, false, &recovery).ok());
    CHECK(report.used_checkpoint);
    CHECK(replicated.claims == local.claims);
    CHECK(replicated.marks == local.marks);
    CHECK(report.last_window == recovery.last_window);
  };
  testing::CrashTotals t = testing::RunCrashCycles(run);
  MESSAGE(
      fmt::format("replicated crash test: {} cycles, {} acked ops, {} missing from the stream, "
                  "{} lost locally, {} state mismatches; {:.1f} s ({:.1f} s starting servers, "
                  "{:.1f} s checking them)",
                  run.cycles, t.acked_ops, missing, t.lost, t.mismatches, t.seconds,
                  t.start_seconds, t.verify_seconds));
  CHECK(checked == run.cycles * 4);
  CHECK(missing == 0);
  CHECK(t.lost == 0);
  CHECK(t.mismatches == 0);
  CHECK(t.acked_ops > 0);
}

TEST_CASE("cluster: writes go on when a NATS server is killed, and nothing acknowledged is lost") {
  testing::TempDir dir("conv-repl");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("natskill");
  testing::CrashRun run;
  run.cycles = 4;
  run.seed = testing::TestSeed("CONV_REPL_SEED", 20261130);
  run.serve_args = {"--replicate", nats.urls(), "--cluster-name", "natskill"};
  int calls = 0;
  // In the second life of the owner, NATS server 0 (the one it is connected to)
  // dies; the owner goes on writing for 12 s with the other two.
  run.during_load = [&](const testing::ServeProcess&, std::chrono::milliseconds load) {
    if (++calls == 2) {
      nats.Kill(0);
      // Long enough for a stream leader's election and the reconnection to another
      // server on a machine busy with other tests.
      std::this_thread::sleep_for(12s);
    } else {
      std::this_thread::sleep_for(load);
    }
  };
  uint64_t acked_before = 0;
  std::vector<uint64_t> progress;
  run.after_kill = [&](uint64_t cycle, const std::vector<std::pair<std::string, uint64_t>>& acked) {
    uint64_t total = 0;
    for (const auto& a : acked)
      total += a.second;
    progress.push_back(total - acked_before);
    acked_before = total;
    repl::StreamReadReport report;
    StateCollector s = ReadStream(o, &report);
    for (const auto& [source, seq] : acked) {
      CHECK_MESSAGE(s.marks[source] >= seq, "cycle ", cycle, ": ", source);
    }
  };
  testing::CrashTotals t = testing::RunCrashCycles(run);
  REQUIRE(progress.size() == 4);
  MESSAGE("acknowledged ops per owner life (NATS server 0 killed in the second): ",
          fmt::format("{}", fmt::join(progress, ", ")));
  // The second life wrote for 12 s after the kill; the last two (20 to 300 ms each,
  // starting with one NATS server gone) must have got acknowledgements too.
  CHECK(progress[1] > 0);
  CHECK(progress[2] + progress[3] > 0);
  CHECK(t.lost == 0);
  CHECK(t.mismatches == 0);
}

TEST_CASE("cluster: serve refuses a stream ahead of its data dir") {
  testing::TempDir dir("conv-repl");
  testing::NatsCluster nats(dir.path());
  std::vector<std::string> args = {"--replicate", nats.urls(), "--cluster-name",
                                   "ahead",       "--window",  "2ms"};
  testing::ServeProcess owner = testing::StartServe(dir.File("a"), dir.File("a.log"), args);
  testing::OpGenerator gen(engine::PlayerSchema(), 3, 4);
  net::Hello hello;
  hello.source = "w";
  {
    auto c = net::Client::Connect(owner.address, hello, 10s);
    REQUIRE(c.ok());
    REQUIRE((*c)->Send(gen.Frame(0, 1)).ok());
    auto f = (*c)->ReadFrame();
    REQUIRE(f.ok());
    CHECK(f->type == static_cast<uint8_t>(net::FrameType::kAck));
  }
  owner.Stop();
  std::vector<std::string> argv = {CONV_BINARY,   "serve",      "--listen",
                                   "127.0.0.1:0", "--data-dir", dir.File("b")};
  argv.insert(argv.end(), args.begin(), args.end());
  testing::ProcessResult r = testing::RunProcess(argv, 30s);
  CHECK(r.exit_code != 0);
  CHECK_MESSAGE(
      r.err.find("refusing to start: stream CONV_ahead holds windows up to") != std::string::npos,
      r.err);
  CHECK(r.err.find(dir.File("b")) != std::string::npos);
}

TEST_CASE("cluster: replication flags are checked before anything starts") {
  testing::TempDir dir("conv-repl");
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {CONV_BINARY,   "serve",      "--listen",
                                     "127.0.0.1:0", "--data-dir", dir.File("d")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    testing::ProcessResult r = testing::RunProcess(argv, 30s);
    CHECK(r.exit_code != 0);
    return r.err;
  };
  std::string closed = fmt::format("nats://127.0.0.1:{}", testing::ClosedPort());
  CHECK(run({"--replicate", closed}).find("--replicate needs --cluster-name") != std::string::npos);
  CHECK(run({"--cluster-name", "x"}).find("--cluster-name needs --replicate") != std::string::npos);
  CHECK(run({"--replicate", closed, "--cluster-name", "a.b"})
            .find("--cluster-name: 'a.b' has '.' at offset 1") != std::string::npos);
  CHECK(run({"--replicate", closed, "--cluster-name", std::string(65, 'x')})
            .find("must be 1 to 64 characters") != std::string::npos);
  CHECK(run({"--replicate", closed, "--cluster-name", "x", "--replicas", "6"})
            .find("--replicas: 6 is out of range") != std::string::npos);
  CHECK(run({"--replicate", closed + ",," + closed, "--cluster-name", "x"})
            .find(fmt::format("--replicate: '{0},,{0}': empty URL at offset {1}", closed,
                              closed.size() + 1)) != std::string::npos);
  std::string err = run({"--replicate", closed, "--cluster-name", "x"});
  CHECK_MESSAGE(err.find("--replicate: cannot connect to '" + closed + "'") != std::string::npos,
                err);
}

TEST_CASE("cluster: a stream that cannot get its replicas is an error naming the stream") {
  testing::TempDir dir("conv-repl");
  testing::NatsCluster nats(dir.path(), 1);  // one server: three replicas cannot be placed
  repl::ReplicationOptions o = nats.Options("lonely");
  o.setup_timeout = 1s;
  auto t0 = std::chrono::steady_clock::now();
  auto log = repl::JetStreamLog::Open(o, nullptr);
  REQUIRE_FALSE(log.ok());
  CHECK_MESSAGE(log.message().find("--replicate: cannot create stream CONV_lonely with 3 "
                                   "replicas: ") != std::string::npos,
                log.message());
  CHECK(std::chrono::steady_clock::now() - t0 >= 900ms);
  o.replicas = 1;
  auto single = repl::JetStreamLog::Open(o, nullptr);
  CHECK_MESSAGE(single.ok(), (single.ok() ? "" : single.message()));
}

TEST_CASE("cluster: a data dir written without replication is published whole to a new stream") {
  testing::TempDir dir("conv-repl");
  testing::NatsCluster nats(dir.path());
  const std::string data = dir.File("data");
  {
    testing::ServeProcess plain = testing::StartServe(
        data, dir.File("plain.log"), {"--window", "2ms", "--checkpoint-interval", "20ms"});
    testing::OpGenerator gen(engine::PlayerSchema(), 11, 50);
    net::Hello hello;
    hello.source = "adopt-writer";
    auto c = net::Client::Connect(plain.address, hello, 10s);
    REQUIRE(c.ok());
    for (uint64_t seq = 1; seq <= 400; ++seq) {
      REQUIRE((*c)->Send(gen.Frame(0, seq)).ok());
      if (seq % 50 == 0) std::this_thread::sleep_for(30ms);  // windows, and checkpoints
    }
    bool acked = false;
    while (!acked) {
      auto f = (*c)->ReadFrame();
      REQUIRE(f.ok());
      uint64_t seq = 0;
      acked = f->type == static_cast<uint8_t>(net::FrameType::kAck) &&
              net::DecodeAck(f->payload, &seq) && seq == 400;
    }
    plain.Stop();
  }
  auto listing = wal::ListDir(data);
  REQUIRE(listing.ok());
  REQUIRE_FALSE(listing->checkpoints.empty());

  testing::ServeProcess owner = testing::StartServe(
      data, dir.File("owner.log"), {"--replicate", nats.urls(), "--cluster-name", "adopt"});
  owner.Stop();
  repl::StreamReadReport report;
  StateCollector replicated = ReadStream(nats.Options("adopt"), &report);
  StateCollector local;
  wal::RecoveryReport recovery;
  REQUIRE(wal::Recover(data, local, false, &recovery).ok());
  CHECK_MESSAGE(report.used_checkpoint, testing::ReadFileOrEmpty(dir.File("owner.log")),
                " messages ", report.messages, " seqs ", report.first_seq, "-", report.last_seq,
                " windows ", report.windows, " last ", report.last_window, " local ",
                recovery.last_window);
  CHECK(report.torn_window == 0);
  CHECK(report.last_window == recovery.last_window);
  CHECK(replicated.marks["adopt-writer"] == 400);
  CHECK(replicated.claims == local.claims);
  CHECK(replicated.marks == local.marks);
}

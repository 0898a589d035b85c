// End-to-end tests of the server over loopback: WELCOME, pipelined writes and their
// acknowledgements, queries, op-level errors, duplicates, SYNC, STATS and PING.
// Connection-level errors are in server_errors_test.cc; listening, takeover, limits,
// flow control and graceful stop in server_connections_test.cc.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "engine/record.h"
#include "support/test_server.h"
#include "util/clock.h"
#include "util/coding.h"

using namespace conv;
using net::FrameType;
using testing::ErrorOf;
using testing::IsType;
using testing::Player;
using testing::Record;
using testing::Stat;
using testing::WaitForAck;
using testing::WriteFrame;

namespace {

constexpr uint64_t kPlayer = engine::kPlayerSchemaId;

const net::ResultClaim* FindClaim(const net::Result& r, std::string_view source) {
  for (const auto& c : r.claims) {
    if (c.source == source) return &c;
  }
  return nullptr;
}

// One source's op stream over entities of its own, and what its claims end up as.
struct Script {
  std::string frames;
  uint64_t last_seq = 0;
  // entity id -> the fields of the source's claim (absent: retracted or never set)
  std::map<std::string, std::map<std::string, engine::Value>> claims;
  std::vector<std::string> ids;
};

// ASSERT 60%, PATCH 30%, RETRACT 10% over 37 entities, seqs `seq_step` apart.
Script MakeScript(const engine::Schema& player, int source, int ops, uint64_t seq_step) {
  Script s;
  for (int e = 0; e < 37; ++e)
    s.ids.push_back(fmt::format("s{}-e{}", source, e));
  for (int i = 0; i < ops; ++i) {
    const std::string& id = s.ids[static_cast<size_t>(i) % s.ids.size()];
    uint64_t seq = static_cast<uint64_t>(i + 1) * seq_step;
    s.last_seq = seq;
    int kind = (i / 37 + i) % 10;
    if (kind < 6) {
      std::map<std::string, engine::Value> fields = {
          {"name", std::string(fmt::format("{}@{}", id, i))},
          {"x", double(i) / 4},
          {"health", int64_t{100 - i}},
          {"online", i % 2 == 0}};
      engine::RecordBuilder b(player);
      for (const auto& [k, v] : fields)
        REQUIRE(b.Set(k, v).ok());
      s.frames += WriteFrame(FrameType::kAssert, seq, 0, kPlayer, id, b.Encode());
      s.claims[id] = fields;
    } else if (kind < 9) {
      std::map<std::string, engine::Value> fields = {{"score", int64_t{i}},
                                                     {"team", std::string(i % 3 ? "red" : "")}};
      engine::RecordBuilder b(player);
      for (const auto& [k, v] : fields)
        REQUIRE(b.Set(k, v).ok());
      s.frames += WriteFrame(FrameType::kPatch, seq, 0, kPlayer, id, b.Encode());
      for (const auto& [k, v] : fields)
        s.claims[id][k] = v;
    } else {
      s.frames += WriteFrame(FrameType::kRetract, seq, 0, kPlayer, id);
      s.claims.erase(id);
    }
  }
  return s;
}

// Reads ACKs until one reaches `seq`; "" on success, else what went wrong. For use
// off the test thread (no doctest macros).
std::string AwaitAck(net::Client& c, uint64_t seq) {
  for (;;) {
    auto f = c.ReadFrame();
    if (!f.ok()) return f.message();
    if (IsType(*f, FrameType::kError)) return "got an ERROR";
    uint64_t acked = 0;
    if (IsType(*f, FrameType::kAck) && net::DecodeAck(f->payload, &acked) && acked >= seq) {
      return acked == seq ? "" : fmt::format("ACK {} is past the last seq {}", acked, seq);
    }
  }
}

}  // namespace

TEST_CASE("server: WELCOME lists the player schema with its fields and types") {
  testing::TestServerOptions opt;
  opt.schema_text = "ship name:string hull:i64 shield:f64 cloaked:bool key:bytes\n";
  testing::TestServer ts(opt);
  auto c = ts.Connect("w-1");
  const net::Welcome& w = c->welcome();
  CHECK(w.version == 1);
  CHECK(w.server_name == "convergence");
  CHECK(w.last_applied_seq == 0);
  CHECK(w.window_us == 2000);
  CHECK(w.partitions == 2);
  REQUIRE(w.schemas.size() == 2);

  const engine::Schema& p = Player(*c);
  CHECK(p.id == 1);
  using T = engine::FieldType;
  const std::vector<std::pair<std::string, T>> want = {
      {"name", T::kString}, {"team", T::kString}, {"x", T::kF64},
      {"y", T::kF64},       {"z", T::kF64},       {"health", T::kI64},
      {"score", T::kI64},   {"level", T::kI64},   {"online", T::kBool}};
  REQUIRE(p.fields.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    CAPTURE(i);
    CHECK(p.fields[i].name == want[i].first);
    CHECK(p.fields[i].type == want[i].second);
  }

  const engine::Schema* ship = c->FindSchema("ship");
  REQUIRE(ship != nullptr);
  CHECK(ship->id == 2);
  REQUIRE(ship->fields.size() == 5);
  CHECK(ship->fields[1].name == "hull");
  CHECK(ship->fields[1].type == T::kI64);
  CHECK(ship->fields[4].type == T::kBytes);
}

TEST_CASE("server: pipelined writes from several sources are all acknowledged and applied") {
  testing::TestServer ts;
  constexpr int kSources = 4;
  constexpr int kOps = 3000;
  std::vector<std::unique_ptr<net::Client>> clients;
  std::vector<Script> scripts;
  for (int s = 0; s < kSources; ++s) {
    clients.push_back(ts.Connect(fmt::format("game-{}", s)));
    // One source leaves gaps between its seqs, which the protocol allows.
    scripts.push_back(MakeScript(Player(*clients.back()), s, kOps, s == 3 ? 3 : 1));
  }

  // Every source sends all of its frames in one write, without waiting, at once.
  std::vector<std::string> outcome(kSources);
  std::vector<std::thread> threads;
  for (int s = 0; s < kSources; ++s) {
    threads.emplace_back([&, s] {
      net::Client& c = *clients[static_cast<size_t>(s)];
      c.set_timeout(testing::kReplyTimeout);
      auto st = c.Send(scripts[static_cast<size_t>(s)].frames);
      outcome[static_cast<size_t>(s)] =
          st.ok() ? AwaitAck(c, scripts[static_cast<size_t>(s)].last_seq) : st.message();
    });
  }
  for (auto& t : threads)
    t.join();
  for (int s = 0; s < kSources; ++s) {
    CAPTURE(s);
    CHECK(outcome[static_cast<size_t>(s)] == "");
  }

  auto reader = ts.Connect();
  const engine::Schema& p = Player(*reader);
  CHECK(Stat(*reader, "ops_in") == kSources * kOps);
  CHECK(Stat(*reader, "ops_applied") == kSources * kOps);
  CHECK(Stat(*reader, "op_errors") == 0);
  CHECK(Stat(*reader, "duplicates") == 0);
  CHECK(Stat(*reader, "sources") == kSources);
  uint64_t live = 0;
  for (const Script& s : scripts) {
    live += s.claims.size();
    for (const std::string& id : s.ids) {
      CAPTURE(id);
      auto r = reader->Query(p, id, false);
      REQUIRE(r.ok());
      auto it = s.claims.find(id);
      REQUIRE(r->found == (it != s.claims.end()));
      if (!r->found) continue;
      engine::RecordBuilder b(p);
      for (const auto& [k, v] : it->second)
        REQUIRE(b.Set(k, v).ok());
      CHECK(r->record == b.Encode());
    }
  }
  CHECK(Stat(*reader, "entities") == live);
}

TEST_CASE("server: QUERY returns the converged record and, with claims, each source's claim") {
  testing::TestServer ts;
  auto a = ts.Connect("src-a");
  auto b = ts.Connect("src-b");
  auto late = ts.Connect("src-c");
  auto reader = ts.Connect();
  const engine::Schema& p = Player(*reader);

  REQUIRE(
      a
          ->Send(WriteFrame(
              FrameType::kAssert, 1, 100, kPlayer, "p-1",
              Record(p, {{"name", std::string("ann")}, {"team", std::string("red")}, {"x", 1.0}})))
          .ok());
  REQUIRE(b->Send(WriteFrame(FrameType::kPatch, 1, 200, kPlayer, "p-1",
                             Record(p, {{"x", 2.0}, {"health", int64_t{50}}})))
              .ok());
  REQUIRE(a->Send(WriteFrame(FrameType::kPatch, 2, 300, kPlayer, "p-1",
                             Record(p, {{"team", std::string("blue")}})))
              .ok());
  REQUIRE(WaitForAck(*a, 2));
  REQUIRE(WaitForAck(*b, 1));
  // Arrives last but is older: it must not win x.
  REQUIRE(late->Send(WriteFrame(FrameType::kPatch, 1, 150, kPlayer, "p-1", Record(p, {{"x", 3.0}})))
              .ok());
  REQUIRE(WaitForAck(*late, 1));

  const std::string converged = Record(p, {{"name", std::string("ann")},
                                           {"team", std::string("blue")},
                                           {"x", 2.0},
                                           {"health", int64_t{50}}});
  auto r = reader->Query(p, "p-1", false);
  REQUIRE(r.ok());
  CHECK(r->found);
  CHECK(r->record == converged);
  CHECK_FALSE(r->has_claims);
  CHECK(r->claims.empty());

  r = reader->Query(p, "p-1", true);
  REQUIRE(r.ok());
  CHECK(r->found);
  CHECK(r->record == converged);
  REQUIRE(r->claims.size() == 3);
  // Ordered by the server's source id: the order the sources first said HELLO.
  CHECK(r->claims[0].source == "src-a");
  CHECK(r->claims[1].source == "src-b");
  CHECK(r->claims[2].source == "src-c");
  const net::ResultClaim* ca = FindClaim(*r, "src-a");
  const net::ResultClaim* cb = FindClaim(*r, "src-b");
  const net::ResultClaim* cc = FindClaim(*r, "src-c");
  REQUIRE((ca && cb && cc));
  CHECK(ca->ts_max == 300);
  CHECK(ca->record ==
        Record(p, {{"name", std::string("ann")}, {"team", std::string("blue")}, {"x", 1.0}}));
  CHECK(cb->ts_max == 200);
  CHECK(cb->record == Record(p, {{"x", 2.0}, {"health", int64_t{50}}}));
  CHECK(cc->ts_max == 150);
  CHECK(cc->record == Record(p, {{"x", 3.0}}));

  // When b retracts, x falls back to the next newest claim and health goes away.
  REQUIRE(b->Send(WriteFrame(FrameType::kRetract, 2, 400, kPlayer, "p-1")).ok());
  REQUIRE(WaitForAck(*b, 2));
  r = reader->Query(p, "p-1", true);
  REQUIRE(r.ok());
  CHECK(r->record ==
        Record(p, {{"name", std::string("ann")}, {"team", std::string("blue")}, {"x", 3.0}}));
  CHECK(r->claims.size() == 2);
  CHECK(FindClaim(*r, "src-b") == nullptr);

  // The entity exists while any claim does.
  REQUIRE(a->Send(WriteFrame(FrameType::kRetract, 3, 500, kPlayer, "p-1")).ok());
  REQUIRE(late->Send(WriteFrame(FrameType::kRetract, 2, 500, kPlayer, "p-1")).ok());
  REQUIRE(WaitForAck(*a, 3));
  REQUIRE(WaitForAck(*late, 2));
  r = reader->Query(p, "p-1", true);
  REQUIRE(r.ok());
  CHECK_FALSE(r->found);
  r = reader->Query(p, "never-written", false);
  REQUIRE(r.ok());
  CHECK_FALSE(r->found);
}

TEST_CASE("server: op-level errors carry the op's seq and keep the connection open") {
  testing::TestServer ts;
  auto w = ts.Connect("w");
  const engine::Schema& p = Player(*w);
  const std::string good = Record(p, {{"name", std::string("ok")}});
  std::string truncated;  // mask says name is present; its length runs past the end
  util::PutVarint(truncated, 1);
  util::PutVarint(truncated, 10);
  truncated += "abc";
  std::string bool_two;  // online = 2
  util::PutVarint(bool_two, uint64_t{1} << 8);
  util::PutU8(bool_two, 2);
  std::string beyond;  // field 9: player has 9 fields, 0 to 8
  util::PutVarint(beyond, uint64_t{1} << 9);
  std::string bad_utf8;
  util::PutVarint(bad_utf8, 1);
  util::PutStr(bad_utf8, "\xff\xfe");
  std::string trailing = good + "x";
  const std::string long_id(256, 'i');

  std::string frames;
  frames += WriteFrame(FrameType::kAssert, 1, 0, 99, "p-1", good);
  frames += WriteFrame(FrameType::kAssert, 2, 0, kPlayer, "p-2", truncated);
  frames += WriteFrame(FrameType::kAssert, 3, 0, kPlayer, "p-3", bool_two);
  frames += WriteFrame(FrameType::kPatch, 4, 0, kPlayer, "p-4", beyond);
  frames += WriteFrame(FrameType::kAssert, 5, 0, kPlayer, "", good);
  frames += WriteFrame(FrameType::kAssert, 6, 0, kPlayer, long_id, good);
  frames += WriteFrame(FrameType::kRetract, 7, 0, 99, "p-7");
  frames += WriteFrame(FrameType::kRetract, 8, 0, kPlayer, "");
  frames += WriteFrame(FrameType::kPatch, 9, 0, kPlayer, "p-9", bad_utf8);
  frames += WriteFrame(FrameType::kAssert, 10, 0, kPlayer, "p-10", trailing);
  frames += WriteFrame(FrameType::kAssert, 11, 0, kPlayer, "p-ok", good);
  REQUIRE(w->Send(frames).ok());

  std::vector<net::OwnedFrame> others;
  REQUIRE(WaitForAck(*w, 11, &others));
  using E = net::ErrorCode;
  const std::vector<std::pair<uint64_t, E>> want = {
      {1, E::kUnknownSchema}, {2, E::kBadValue}, {3, E::kBadValue},      {4, E::kBadValue},
      {5, E::kBadId},         {6, E::kBadId},    {7, E::kUnknownSchema}, {8, E::kBadId},
      {9, E::kBadValue},      {10, E::kBadValue}};
  REQUIRE(others.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    net::Error e = ErrorOf(others[i]);
    CAPTURE(e.message);
    CHECK(e.seq_or_req == want[i].first);
    CHECK(e.code == static_cast<uint64_t>(want[i].second));
    CHECK_FALSE(e.message.empty());
  }

  // Still open: the valid op was applied, and requests are answered.
  auto r = w->Query(p, "p-ok", false);
  REQUIRE(r.ok());
  CHECK(r->found);
  CHECK(r->record == good);
  for (const char* id : {"p-1", "p-2", "p-3", "p-4", "p-9", "p-10"}) {
    CAPTURE(id);
    r = w->Query(p, id, false);
    REQUIRE(r.ok());
    CHECK_FALSE(r->found);
  }
  CHECK(Stat(*w, "op_errors") == want.size());
  CHECK(Stat(*w, "ops_applied") == 1);

  // A rejected op's seq is consumed: resending it is a duplicate, not an error.
  REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "p-1", good)).ok());
  others.clear();
  REQUIRE(WaitForAck(*w, 11, &others));
  CHECK(others.empty());
  r = w->Query(p, "p-1", false);
  REQUIRE(r.ok());
  CHECK_FALSE(r->found);

  // QUERY errors carry the request id.
  frames.clear();
  frames += testing::QueryFrame(21, 99, "p-ok", false);
  frames += testing::QueryFrame(22, kPlayer, "", false);
  frames += testing::QueryFrame(23, kPlayer, long_id, true);
  frames += testing::QueryFrame(24, kPlayer, "p-ok", false);
  REQUIRE(w->Send(frames).ok());
  const std::vector<std::pair<uint64_t, E>> want_q = {
      {21, E::kUnknownSchema}, {22, E::kBadId}, {23, E::kBadId}};
  for (const auto& [req, code] : want_q) {
    auto f = w->ReadFrame();
    REQUIRE(f.ok());
    net::Error e = ErrorOf(*f);
    CHECK(e.seq_or_req == req);
    CHECK(e.code == static_cast<uint64_t>(code));
  }
  auto f = w->ReadFrame();
  REQUIRE(f.ok());
  REQUIRE(IsType(*f, FrameType::kResult));
  net::Result res;
  REQUIRE(net::DecodeResult(f->payload, p, false, &res));
  CHECK(res.req == 24);
  CHECK(res.found);

  // And the connection still writes.
  REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 12, 0, kPlayer, "p-12", good)).ok());
  REQUIRE(WaitForAck(*w, 12));
  r = w->Query(p, "p-12", false);
  REQUIRE(r.ok());
  CHECK(r->found);
}

TEST_CASE("server: a write on a connection without a source name gets not_a_source") {
  testing::TestServer ts;
  auto reader = ts.Connect();
  const engine::Schema& p = Player(*reader);
  std::string frames;
  frames += WriteFrame(FrameType::kAssert, 5, 0, kPlayer, "p-1", Record(p, {{"x", 1.0}}));
  frames += WriteFrame(FrameType::kPatch, 6, 0, kPlayer, "p-1", Record(p, {{"x", 2.0}}));
  frames += WriteFrame(FrameType::kRetract, 7, 0, kPlayer, "p-1");
  frames += testing::RawFrame(static_cast<uint8_t>(FrameType::kPing), "\x2a");
  REQUIRE(reader->Send(frames).ok());
  for (uint64_t seq : {5, 6, 7}) {
    auto f = reader->ReadFrame();
    REQUIRE(f.ok());
    net::Error e = ErrorOf(*f);
    CHECK(e.seq_or_req == seq);
    CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kNotASource));
  }
  auto f = reader->ReadFrame();
  REQUIRE(f.ok());
  CHECK(IsType(*f, FrameType::kPong));
  auto r = reader->Query(p, "p-1", false);
  REQUIRE(r.ok());
  CHECK_FALSE(r->found);
}

TEST_CASE("server: resent ops are duplicates: acknowledged and counted, never an error") {
  testing::TestServer ts;
  auto w = ts.Connect("dup");
  const engine::Schema& p = Player(*w);
  std::string first, changed;
  for (uint64_t seq = 1; seq <= 100; ++seq) {
    std::string id = fmt::format("d-{}", seq % 10);
    first += WriteFrame(FrameType::kAssert, seq, 0, kPlayer, id,
                        Record(p, {{"score", static_cast<int64_t>(seq)}}));
    changed +=
        WriteFrame(FrameType::kAssert, seq, 0, kPlayer, id, Record(p, {{"score", int64_t{-1}}}));
  }
  // A batch resent before its acknowledgement is covered by the same cumulative ACK.
  REQUIRE(w->Send(first + first).ok());
  std::vector<net::OwnedFrame> others;
  REQUIRE(WaitForAck(*w, 100, &others));
  CHECK(others.empty());
  CHECK(Stat(*w, "duplicates") == 100);

  // Resent after the ACK (with other content): acknowledged at once, not applied.
  REQUIRE(w->Send(changed).ok());
  REQUIRE(WaitForAck(*w, 100, &others));
  CHECK(others.empty());
  CHECK(Stat(*w, "duplicates") == 200);
  CHECK(Stat(*w, "ops_in") == 300);
  CHECK(Stat(*w, "ops_applied") == 100);
  CHECK(Stat(*w, "op_errors") == 0);
  auto r = w->Query(p, "d-0", false);
  REQUIRE(r.ok());
  CHECK(r->record == Record(p, {{"score", int64_t{100}}}));

  // A new seq after duplicates is applied.
  REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 101, 0, kPlayer, "d-0",
                             Record(p, {{"level", int64_t{7}}})))
              .ok());
  REQUIRE(WaitForAck(*w, 101, &others));
  CHECK(others.empty());
  CHECK(Stat(*w, "duplicates") == 200);
  r = w->Query(p, "d-0", false);
  REQUIRE(r.ok());
  CHECK(r->record == Record(p, {{"level", int64_t{7}}}));
}

TEST_CASE("server: a reconnecting source is welcomed with its acknowledged seq") {
  testing::TestServer ts;
  {
    auto w = ts.Connect("re");
    CHECK(w->welcome().last_applied_seq == 0);
    const engine::Schema& p = Player(*w);
    std::string frames;
    for (uint64_t seq = 3; seq <= 60; seq += 3) {
      frames += WriteFrame(FrameType::kAssert, seq, 0, kPlayer, "r-1", Record(p, {}));
    }
    REQUIRE(w->Send(frames).ok());
    REQUIRE(WaitForAck(*w, 60));
  }
  auto w = ts.Connect("re");
  CHECK(w->welcome().last_applied_seq == 60);
  // Resending from the mark on is a duplicate; the next seq is applied.
  const engine::Schema& p = Player(*w);
  REQUIRE(
      w->Send(WriteFrame(FrameType::kAssert, 60, 0, kPlayer, "r-1", Record(p, {{"x", 9.0}}))).ok());
  REQUIRE(
      w->Send(WriteFrame(FrameType::kPatch, 61, 0, kPlayer, "r-1", Record(p, {{"y", 1.0}}))).ok());
  std::vector<net::OwnedFrame> others;
  REQUIRE(WaitForAck(*w, 61, &others));
  CHECK(others.empty());
  auto r = w->Query(p, "r-1", false);
  REQUIRE(r.ok());
  CHECK(r->record == Record(p, {{"y", 1.0}}));
  CHECK(Stat(*w, "duplicates") == 1);
  w.reset();

  auto again = ts.Connect("re");
  CHECK(again->welcome().last_applied_seq == 61);
  CHECK(ts.Connect("someone-else")->welcome().last_applied_seq == 0);
}

TEST_CASE("server: SYNC answers SYNCED after the earlier writes are acknowledged") {
  testing::TestServer ts;
  auto w = ts.Connect("sync");
  const engine::Schema& p = Player(*w);
  std::string frames;
  for (uint64_t seq = 1; seq <= 500; ++seq) {
    frames += WriteFrame(FrameType::kAssert, seq, 0, kPlayer, fmt::format("y-{}", seq % 7),
                         Record(p, {{"level", static_cast<int64_t>(seq)}}));
  }
  std::string sync;
  net::EncodeReq(sync, FrameType::kSync, 77);
  REQUIRE(w->Send(frames + sync).ok());
  uint64_t acked = 0;
  for (;;) {
    auto f = w->ReadFrame();
    REQUIRE(f.ok());
    uint64_t v = 0;
    if (IsType(*f, FrameType::kAck)) {
      REQUIRE(net::DecodeAck(f->payload, &v));
      CHECK(v > acked);
      acked = v;
      continue;
    }
    REQUIRE(IsType(*f, FrameType::kSynced));
    REQUIRE(net::DecodeReq(f->payload, &v));
    CHECK(v == 77);
    break;
  }
  CHECK(acked == 500);
  int64_t last_y3 = 0;
  for (int64_t seq = 1; seq <= 500; ++seq) {
    if (seq % 7 == 3) last_y3 = seq;
  }
  auto r = w->Query(p, "y-3", false);
  REQUIRE(r.ok());
  CHECK(r->record == Record(p, {{"level", last_y3}}));

  // With nothing outstanding, and on a connection that never writes.
  CHECK(w->Sync().ok());
  auto reader = ts.Connect();
  CHECK(reader->Sync().ok());
}

TEST_CASE("server: STATS returns the counters") {
  testing::TestServer ts;
  auto w = ts.Connect("stats-writer");
  auto reader = ts.Connect();
  const engine::Schema& p = Player(*w);
  std::string frames;
  frames += WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "e-1", Record(p, {{"x", 1.0}}));
  frames += WriteFrame(FrameType::kAssert, 2, 0, kPlayer, "e-2", Record(p, {{"x", 2.0}}));
  frames += WriteFrame(FrameType::kAssert, 3, 0, kPlayer, "e-3", Record(p, {{"x", 3.0}}));
  frames += WriteFrame(FrameType::kPatch, 4, 0, kPlayer, "e-1", Record(p, {{"y", 1.0}}));
  frames += WriteFrame(FrameType::kRetract, 5, 0, kPlayer, "e-3");
  frames += WriteFrame(FrameType::kAssert, 6, 0, 42, "e-4", Record(p, {}));
  REQUIRE(w->Send(frames).ok());
  REQUIRE(WaitForAck(*w, 6));
  REQUIRE(reader->Query(p, "e-1", true).ok());
  REQUIRE(reader->Query(p, "e-3", false).ok());

  auto stats = reader->Stats();
  REQUIRE(stats.ok());
  std::map<std::string, uint64_t> s(stats->begin(), stats->end());
  CHECK(s.size() == stats->size());  // no name twice
  CHECK(s["ops_in"] == 5);
  CHECK(s["ops_applied"] == 5);
  CHECK(s["asserts"] == 3);
  CHECK(s["patches"] == 1);
  CHECK(s["retracts"] == 1);
  CHECK(s["duplicates"] == 0);
  CHECK(s["op_errors"] == 1);
  CHECK(s["entities"] == 2);
  CHECK(s["claims"] == 2);
  CHECK(s["claim_bytes"] > 0);
  CHECK(s["sources"] == 1);
  CHECK(s["windows"] >= 1);
  CHECK(s["window_ops"] == 5);
  CHECK(s["partitions"] == 2);
  CHECK(s["io_threads"] == 2);
  CHECK(s["window_us"] == 2000);
  CHECK(s["connections"] == 2);
  CHECK(s["connections_total"] == 2);
  CHECK(s["connections_rejected"] == 0);
  CHECK(s["takeovers"] == 0);
  CHECK(s["queries"] == 2);
  CHECK(s["frames_in"] >= 10);
  CHECK(s["bytes_in"] > 0);
  CHECK(s["bytes_out"] > 0);
}

TEST_CASE("server: PING is answered with PONG carrying its req") {
  testing::TestServer ts;
  auto c = ts.Connect();
  std::string frames;
  for (uint64_t req : {uint64_t{1}, uint64_t{300}, uint64_t{0}, uint64_t{1} << 40})
    net::EncodeReq(frames, FrameType::kPing, req);
  REQUIRE(c->Send(frames).ok());
  for (uint64_t req : {uint64_t{1}, uint64_t{300}, uint64_t{0}, uint64_t{1} << 40}) {
    auto f = c->ReadFrame();
    REQUIRE(f.ok());
    REQUIRE(IsType(*f, FrameType::kPong));
    uint64_t got = 0;
    REQUIRE(net::DecodeReq(f->payload, &got));
    CHECK(got == req);
  }
}

TEST_CASE("server: a client's requests are not failed by op errors that share their number") {
  testing::TestServer ts;
  auto w = ts.Connect("numbers");
  const engine::Schema& p = Player(*w);
  // Ops 1 to 3 fail; the client's own request ids also count from 1.
  std::string frames;
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    frames += WriteFrame(FrameType::kAssert, seq, 0, 99, "n-1", Record(p, {}));
  }
  REQUIRE(w->Send(frames).ok());
  util::Status st = w->Sync();
  CHECK_MESSAGE(st.ok(), st.message());
  auto stats = w->Stats();
  CHECK_MESSAGE(stats.ok(), (stats.ok() ? "" : stats.message()));
  REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 4, 0, kPlayer, "n-1", Record(p, {}))).ok());
  REQUIRE(WaitForAck(*w, 4));
}

TEST_CASE("server: QUERYs race the pruning of the tombstones they look up") {
  // Every seal prunes what the previous windows deleted (retention 1 µs) while a
  // reader queries exactly those ids. The sanitizer build catches a prune that frees
  // a node a QUERY is walking.
  testing::TestServerOptions opt;
  opt.resume_retention = std::chrono::microseconds(1);
  testing::TestServer ts(opt);
  auto w = ts.Connect("pruner");
  const engine::Schema& p = Player(*w);
  constexpr int kIds = 64;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> answered{0}, failed{0};
  std::thread reader([&] {
    auto r = ts.Connect();
    const engine::Schema& rp = Player(*r);
    while (!stop.load()) {
      for (int i = 0; i < kIds; ++i) {
        auto res = r->Query(rp, fmt::format("t-{}", i), false);
        (res.ok() ? answered : failed).fetch_add(1);
      }
    }
  });
  uint64_t seq = 0;
  for (int round = 0; round < 60; ++round) {
    std::string frames;
    for (int i = 0; i < kIds; ++i) {
      frames += WriteFrame(FrameType::kAssert, ++seq, 0, kPlayer, fmt::format("t-{}", i),
                           Record(p, {{"level", int64_t{round}}}));
    }
    REQUIRE(w->Send(frames).ok());
    REQUIRE(WaitForAck(*w, seq));
    frames.clear();
    for (int i = 0; i < kIds; ++i)
      frames += WriteFrame(FrameType::kRetract, ++seq, 0, kPlayer, fmt::format("t-{}", i));
    REQUIRE(w->Send(frames).ok());
    REQUIRE(WaitForAck(*w, seq));
  }
  stop = true;
  reader.join();
  CHECK(failed.load() == 0);
  CHECK(answered.load() > 0);
  MESSAGE(answered.load(), " QUERYs answered during 120 windows of deletes and prunes");
}

TEST_CASE("server: a ts far ahead of the server's clock and a seq step over 2^32 are bad_value") {
  testing::TestServer ts;
  auto w = ts.Connect("future");
  const engine::Schema& p = Player(*w);
  const std::string rec = Record(p, {{"score", int64_t{1}}});
  const uint64_t now = util::WallMicros();
  std::string frames;
  frames += WriteFrame(FrameType::kAssert, 1, now + 120'000'000, kPlayer, "ahead", rec);
  frames += WriteFrame(FrameType::kAssert, 2, ~uint64_t{0}, kPlayer, "ahead", rec);
  frames += WriteFrame(FrameType::kAssert, 3, now + 10'000'000, kPlayer, "near", rec);
  // 2^64-1 would leave the source no seq above it; not consumed.
  frames += WriteFrame(FrameType::kAssert, ~uint64_t{0}, 0, kPlayer, "last", rec);
  // The largest step allowed, then the next op.
  frames += WriteFrame(FrameType::kAssert, 3 + (uint64_t{1} << 32), 0, kPlayer, "step", rec);
  frames += WriteFrame(FrameType::kAssert, 4 + (uint64_t{1} << 32), 0, kPlayer, "after", rec);
  REQUIRE(w->Send(frames).ok());
  std::vector<net::OwnedFrame> others;
  REQUIRE(WaitForAck(*w, 4 + (uint64_t{1} << 32), &others));
  REQUIRE(others.size() == 3);
  std::vector<uint64_t> seqs;
  for (const auto& f : others) {
    net::Error e = ErrorOf(f);
    CAPTURE(e.message);
    CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kBadValue));
    seqs.push_back(e.seq_or_req);
  }
  CHECK(seqs == std::vector<uint64_t>{1, 2, ~uint64_t{0}});
  CHECK(ErrorOf(others[0]).message.find("--max-future-ts") != std::string::npos);
  CHECK(ErrorOf(others[2]).message.find("2^32") != std::string::npos);
  // Queries on another connection: this client has no request id above seq 2^64-1.
  auto reader = ts.Connect();
  for (const char* id : {"near", "step", "after"}) {
    CAPTURE(id);
    auto r = reader->Query(p, id, false);
    REQUIRE(r.ok());
    CHECK(r->found);
  }
  for (const char* id : {"ahead", "last"}) {
    CAPTURE(id);
    auto r = reader->Query(p, id, false);
    REQUIRE(r.ok());
    CHECK_FALSE(r->found);
  }
}

TEST_CASE("server: an equal value sent in another encoding is stored as the same bytes") {
  testing::TestServer ts;
  auto w = ts.Connect("enc");
  const engine::Schema& p = Player(*w);
  // score (field 6) = 5 as an overlong varint (zigzag 10: 8a 80 00), x (field 2) a
  // NaN with a payload.
  std::string odd;
  util::PutVarint(odd, (uint64_t{1} << 2) | (uint64_t{1} << 6));
  util::PutFixed64(odd, 0x7ff8000000000abcull);
  odd += std::string("\x8a\x80\x00", 3);
  REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "enc", odd)).ok());
  REQUIRE(WaitForAck(*w, 1));
  std::string want;
  util::PutVarint(want, (uint64_t{1} << 2) | (uint64_t{1} << 6));
  util::PutFixed64(want, engine::kCanonicalNaN);
  util::PutZigzag(want, 5);
  auto r = w->Query(p, "enc", false);
  REQUIRE(r.ok());
  REQUIRE(r->found);
  CHECK(r->record == want);
}

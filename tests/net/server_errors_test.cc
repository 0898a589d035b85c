// End-to-end tests of the connection-level errors: every frame the server cannot
// accept gets ERROR(0, code) and closes that connection only; what was applied before
// stays applied.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <chrono>
#include <string>
#include <vector>

#include "support/test_server.h"
#include "util/coding.h"

using namespace conv;
using net::ErrorCode;
using net::FrameType;
using testing::ErrorOf;
using testing::IsType;
using testing::RawFrame;
using testing::Record;
using testing::WaitForAck;
using testing::WriteFrame;

namespace {

constexpr uint64_t kPlayer = engine::kPlayerSchemaId;

uint8_t Type(FrameType t) {
  return static_cast<uint8_t>(t);
}

std::string Varint(uint64_t v) {
  std::string out;
  util::PutVarint(out, v);
  return out;
}

bool Exists(net::Client& c, std::string_view id) {
  auto r = c.Query(*c.FindSchema("player"), id, false);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  return r->found;
}

// A writer has one op acknowledged, then sends an op, `bad` and another op in one
// write. It must get ERROR(0, code) as its last frame and be closed; the op before
// `bad` is applied, the one after is not, and a bystander never notices.
void ExpectFrameError(testing::TestServer& ts, const std::string& bad, ErrorCode code) {
  auto bystander = ts.Connect("bystander");
  auto w = ts.Connect("victim");
  const engine::Schema& p = *w->FindSchema("player");
  REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "v-1", Record(p, {}))).ok());
  REQUIRE(WaitForAck(*w, 1));
  REQUIRE(
      bystander->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "b-1", Record(p, {}))).ok());

  std::string frames = WriteFrame(FrameType::kAssert, 2, 0, kPlayer, "v-2", Record(p, {}));
  frames += bad;
  frames += WriteFrame(FrameType::kAssert, 3, 0, kPlayer, "v-3", Record(p, {}));
  REQUIRE(w->Send(frames).ok());
  std::vector<net::OwnedFrame> got;
  CHECK(testing::ReadUntilClosed(*w, &got));
  REQUIRE_FALSE(got.empty());
  net::Error e = ErrorOf(got.back());
  CAPTURE(e.message);
  CHECK(e.seq_or_req == 0);
  CHECK(e.code == static_cast<uint64_t>(code));
  CHECK_FALSE(e.message.empty());
  for (size_t i = 0; i + 1 < got.size(); ++i)
    CHECK(IsType(got[i], FrameType::kAck));

  // The bystander's connection carries on.
  REQUIRE(WaitForAck(*bystander, 1));
  REQUIRE(
      bystander->Send(WriteFrame(FrameType::kAssert, 2, 0, kPlayer, "b-2", Record(p, {}))).ok());
  std::vector<net::OwnedFrame> others;
  REQUIRE(WaitForAck(*bystander, 2, &others));
  CHECK(others.empty());

  // Whatever the victim's session handed to the engine is applied once a window
  // closes after it; force one.
  ts.engine().Flush();
  CHECK(Exists(*bystander, "v-1"));
  CHECK(Exists(*bystander, "v-2"));
  CHECK_FALSE(Exists(*bystander, "v-3"));
  CHECK(Exists(*bystander, "b-2"));

  // The victim may come back; its last acknowledged seq is at least 1.
  auto again = ts.Connect("victim");
  CHECK(again->welcome().last_applied_seq >= 1);
  CHECK(again->welcome().last_applied_seq <= 2);
}

// A fresh connection sends `bytes` (no HELLO before them, or a HELLO the server
// refuses) and must get exactly ERROR(0, code), then be closed.
void ExpectRefused(testing::TestServer& ts, const std::string& bytes, ErrorCode code) {
  testing::RawConnection raw(ts.port());
  REQUIRE(raw.Send(bytes));
  std::vector<net::OwnedFrame> got;
  CHECK(testing::ReadUntilClosed(raw, &got));
  REQUIRE(got.size() == 1);
  net::Error e = ErrorOf(got[0]);
  CAPTURE(e.message);
  CHECK(e.seq_or_req == 0);
  CHECK(e.code == static_cast<uint64_t>(code));
  CHECK_FALSE(e.message.empty());
}

}  // namespace

TEST_CASE("server: a frame of an unknown type is a bad_frame that closes only its connection") {
  testing::TestServer ts;
  uint8_t type = 0;
  SUBCASE("0x7e") {
    type = 0x7e;
  }
  SUBCASE("0xff") {
    type = 0xff;
  }
  SUBCASE("0x00") {
    type = 0x00;
  }
  SUBCASE("0x15, just past CREDIT") {
    type = 0x15;
  }
  SUBCASE("0x35, just past NOTIFY") {
    type = 0x35;
  }
  CAPTURE(type);
  ExpectFrameError(ts, RawFrame(type, Varint(1)), ErrorCode::kBadFrame);
}

TEST_CASE("server: a frame whose payload does not parse is a bad_frame") {
  testing::TestServer ts;
  std::string bad;
  SUBCASE("ASSERT whose id runs past the end") {
    bad = RawFrame(Type(FrameType::kAssert),
                   Varint(5) + Varint(0) + Varint(kPlayer) + Varint(50) + "abc");
  }
  SUBCASE("PATCH cut inside its seq") {
    bad = RawFrame(Type(FrameType::kPatch), "\x80");
  }
  SUBCASE("RETRACT with a byte left over") {
    bad = RawFrame(Type(FrameType::kRetract),
                   Varint(5) + Varint(0) + Varint(kPlayer) + Varint(1) + "r" + "!");
  }
  SUBCASE("a varint of 11 bytes") {
    bad = RawFrame(Type(FrameType::kAssert), std::string(10, '\xff') + "\x01" + Varint(0));
  }
  SUBCASE("QUERY without its flags") {
    bad = RawFrame(Type(FrameType::kQuery), Varint(1) + Varint(kPlayer) + Varint(1) + "q");
  }
  SUBCASE("PING without a req") {
    bad = RawFrame(Type(FrameType::kPing), "");
  }
  SUBCASE("SYNC with a byte left over") {
    bad = RawFrame(Type(FrameType::kSync), "\x01\x02");
  }
  SUBCASE("STATS with a byte left over") {
    bad = RawFrame(Type(FrameType::kStats), "\x01\x02");
  }
  SUBCASE("SUBSCRIBE cut after its sub") {
    bad = RawFrame(Type(FrameType::kSubscribe), Varint(1));
  }
  SUBCASE("UNSUBSCRIBE with a byte left over") {
    bad = RawFrame(Type(FrameType::kUnsubscribe), "\x01\x02");
  }
  ExpectFrameError(ts, bad, ErrorCode::kBadFrame);
}

TEST_CASE("server: a second HELLO is a bad_frame") {
  testing::TestServer ts;
  ExpectFrameError(ts, testing::HelloFrame("victim"), ErrorCode::kBadFrame);
}

TEST_CASE("server: a frame type only the server sends is a bad_frame from a client") {
  testing::TestServer ts;
  FrameType type{};
  SUBCASE("WELCOME") {
    type = FrameType::kWelcome;
  }
  SUBCASE("ERROR") {
    type = FrameType::kError;
  }
  SUBCASE("ACK") {
    type = FrameType::kAck;
  }
  SUBCASE("RESULT") {
    type = FrameType::kResult;
  }
  SUBCASE("SYNCED") {
    type = FrameType::kSynced;
  }
  SUBCASE("STATS_REPLY") {
    type = FrameType::kStatsReply;
  }
  SUBCASE("PONG") {
    type = FrameType::kPong;
  }
  SUBCASE("CREDIT") {
    type = FrameType::kCredit;
  }
  SUBCASE("SNAPSHOT") {
    type = FrameType::kSnapshot;
  }
  SUBCASE("SNAPSHOT_END") {
    type = FrameType::kSnapshotEnd;
  }
  SUBCASE("NOTIFY") {
    type = FrameType::kNotify;
  }
  CAPTURE(net::FrameTypeName(Type(type)));
  // A payload that would parse as the frame's own type.
  std::string frame;
  if (type == FrameType::kError) {
    net::EncodeError(frame, {0, 1, "no"});
  } else {
    net::EncodeReq(frame, type, 1);
  }
  ExpectFrameError(ts, frame, ErrorCode::kBadFrame);
}

TEST_CASE("server: a frame of length 0 is a bad_frame") {
  testing::TestServer ts;
  ExpectFrameError(ts, std::string(4, '\0'), ErrorCode::kBadFrame);
}

TEST_CASE("server: a frame over max_frame gets frame_too_large, one at the limit is served") {
  testing::TestServerOptions opt;
  opt.server.max_frame = 256;
  testing::TestServer ts(opt);

  SUBCASE("declared one byte over, only the header sent") {
    std::string header;
    util::PutFixed32(header, 257);
    header += static_cast<char>(Type(FrameType::kAssert));
    ExpectFrameError(ts, header, ErrorCode::kFrameTooLarge);
  }
  SUBCASE("declared 4 GiB") {
    ExpectFrameError(ts, std::string(4, '\xff'), ErrorCode::kFrameTooLarge);
  }
  SUBCASE("sent whole, one byte over") {
    auto w = ts.Connect("big");
    const engine::Schema& p = *w->FindSchema("player");
    std::string frame;
    for (size_t n = 200; frame.size() != 4 + 257; ++n) {
      REQUIRE(n < 300);
      frame = WriteFrame(FrameType::kAssert, 2, 0, kPlayer, "big",
                         Record(p, {{"name", std::string(n, 'n')}}));
    }
    ExpectFrameError(ts, frame, ErrorCode::kFrameTooLarge);
  }
  SUBCASE("exactly at the limit") {
    auto w = ts.Connect("big");
    const engine::Schema& p = *w->FindSchema("player");
    std::string frame;
    std::string name;
    for (size_t n = 200; frame.size() != 4 + 256; ++n) {
      REQUIRE(n < 300);
      name.assign(n, 'n');
      frame = WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "big", Record(p, {{"name", name}}));
    }
    REQUIRE(w->Send(frame).ok());
    std::vector<net::OwnedFrame> others;
    REQUIRE(WaitForAck(*w, 1, &others));
    CHECK(others.empty());
    auto r = w->Query(p, "big", false);
    REQUIRE(r.ok());
    CHECK(r->record == Record(p, {{"name", name}}));
  }
}

TEST_CASE("server: HELLO with protocol version 2 gets unsupported_version and is closed") {
  testing::TestServer ts;
  ExpectRefused(ts, testing::HelloFrame("v2", "", 2), ErrorCode::kUnsupportedVersion);
  net::Hello h;
  h.version = 2;
  auto c = net::Client::Connect(ts.address(), h, testing::kReplyTimeout);
  REQUIRE_FALSE(c.ok());
  CHECK(c.message().find("unsupported_version") != std::string::npos);
  CHECK(ts.Connect("v1")->welcome().version == 1);
}

TEST_CASE("server: a wrong or missing auth token gets auth_failed and is closed") {
  testing::TestServerOptions opt;
  opt.server.auth_token = "s3cret-token";
  testing::TestServer ts(opt);
  std::string token;
  SUBCASE("missing") {
    token = "";
  }
  SUBCASE("wrong in the last byte") {
    token = "s3cret-tokeN";
  }
  SUBCASE("a prefix") {
    token = "s3cret";
  }
  SUBCASE("longer") {
    token = "s3cret-token-and-more";
  }
  CAPTURE(token);
  ExpectRefused(ts, testing::HelloFrame("w", token), ErrorCode::kAuthFailed);
  net::Hello h;
  h.source = "w";
  h.auth_token = token;
  auto c = net::Client::Connect(ts.address(), h, testing::kReplyTimeout);
  REQUIRE_FALSE(c.ok());
  CHECK(c.message().find("auth_failed") != std::string::npos);

  // The right token is let in, as a writer and as a reader.
  auto w = ts.Connect("w", "s3cret-token");
  CHECK(w->Sync().ok());
  CHECK(ts.Connect("", "s3cret-token")->Sync().ok());
}

TEST_CASE("server: a first frame other than HELLO gets handshake_required and is closed") {
  testing::TestServer ts;
  std::string first;
  SUBCASE("PING") {
    net::EncodeReq(first, FrameType::kPing, 1);
  }
  SUBCASE("ASSERT") {
    first = WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "h-1", "\x00");
  }
  SUBCASE("QUERY") {
    first = testing::QueryFrame(1, kPlayer, "h-1", false);
  }
  SUBCASE("an unknown type") {
    first = RawFrame(0x7e, "");
  }
  ExpectRefused(ts, first, ErrorCode::kHandshakeRequired);
  auto c = ts.Connect();
  CHECK_FALSE(Exists(*c, "h-1"));
}

TEST_CASE("server: a connection without HELLO within the handshake timeout is closed") {
  testing::TestServerOptions opt;
  opt.server.handshake_timeout = std::chrono::milliseconds(200);
  testing::TestServer ts(opt);
  auto greeted = ts.Connect("greeted");

  std::string partial;
  SUBCASE("nothing sent") {}
  SUBCASE("half a HELLO sent") {
    partial = testing::HelloFrame("slow");
    partial.resize(partial.size() / 2);
  }
  auto start = std::chrono::steady_clock::now();
  testing::RawConnection raw(ts.port());
  if (!partial.empty()) REQUIRE(raw.Send(partial));
  std::vector<net::OwnedFrame> got;
  CHECK(testing::ReadUntilClosed(raw, &got));
  auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= std::chrono::milliseconds(190));
  REQUIRE(got.size() == 1);
  net::Error e = ErrorOf(got[0]);
  CHECK(e.seq_or_req == 0);
  CHECK(e.code == static_cast<uint64_t>(ErrorCode::kHandshakeRequired));

  // The deadline is for the handshake only: a connection that said HELLO stays.
  CHECK(greeted->Sync().ok());
  auto stats = greeted->Stats();
  REQUIRE(stats.ok());
}

TEST_CASE("server: a malformed HELLO is a bad_frame") {
  testing::TestServer ts;
  std::string hello = testing::HelloFrame("w");
  SUBCASE("without lease_ms") {
    hello = RawFrame(Type(FrameType::kHello), Varint(1) + Varint(1) + "w" + Varint(0));
  }
  SUBCASE("with a byte left over") {
    hello = RawFrame(Type(FrameType::kHello),
                     Varint(1) + Varint(1) + "w" + Varint(0) + Varint(0) + "!");
  }
  ExpectRefused(ts, hello, ErrorCode::kBadFrame);
}

TEST_CASE("server: a lease_ms over 7 days in HELLO gets bad_value and is closed") {
  testing::TestServer ts;
  for (uint64_t lease : {uint64_t{604'800'001}, ~uint64_t{0}}) {
    CAPTURE(lease);
    ExpectRefused(
        ts,
        RawFrame(Type(FrameType::kHello), Varint(1) + Varint(1) + "w" + Varint(0) + Varint(lease)),
        ErrorCode::kBadValue);
  }
  // The limit itself is accepted.
  testing::RawConnection ok(ts.port());
  REQUIRE(ok.Send(RawFrame(Type(FrameType::kHello),
                           Varint(1) + Varint(1) + "w" + Varint(0) + Varint(604'800'000))));
  auto f = ok.ReadFrame();
  REQUIRE(f.ok());
  CHECK(testing::IsType(*f, FrameType::kWelcome));
}

TEST_CASE("server: a source name over 255 bytes in HELLO gets bad_id and is closed") {
  testing::TestServer ts;
  ExpectRefused(ts, testing::HelloFrame(std::string(256, 's')), ErrorCode::kBadId);
  CHECK(ts.Connect(std::string(255, 's'))->Sync().ok());
}

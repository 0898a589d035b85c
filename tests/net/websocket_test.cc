// WebSocket (RFC 6455) under the framing: the upgrade handshake, the decoder's rules
// one by one with the close code each breach gets, and the same rules end to end
// against a server's --ws-listen, which stays healthy after every bad client.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <random>
#include <string>
#include <vector>

#include "engine/schema.h"
#include "net/http.h"
#include "net/websocket.h"
#include "support/process.h"
#include "support/serve_process.h"
#include "support/test_server.h"
#include "support/ws_client.h"

using namespace conv;
using net::AnswerWsHttp;
using net::FrameType;
using net::HttpParse;
using net::HttpRequest;
using net::WsDecoder;
using net::WsHttpPolicy;
using testing::WsTestClient;

namespace {

constexpr uint64_t kPlayer = engine::kPlayerSchemaId;

HttpRequest Parse(std::string_view head) {
  HttpRequest req;
  REQUIRE(net::ParseHttpRequest(head, 8192, &req) == HttpParse::kOk);
  return req;
}

// What one decoder makes of `bytes`: the protocol bytes, the replies.
struct Decoded {
  std::string data;
  std::string reply;
  uint16_t failure = 0;
  bool closed = false;
  uint16_t peer_code = 0;
  std::string why;
};

Decoded Decode(std::string_view bytes, uint64_t max_message = 1024) {
  WsDecoder d(max_message);
  Decoded out;
  d.Feed(bytes, &out.data, &out.reply);
  out.failure = d.failure();
  out.closed = d.closed();
  out.peer_code = d.peer_code();
  out.why = d.why();
  return out;
}

std::string F(uint8_t opcode, std::string_view payload, bool fin = true, bool masked = true) {
  return WsTestClient::Frame(opcode, payload, fin, masked);
}

std::string ClosePayload(uint16_t code, std::string_view reason = "") {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code));
  p.append(reason);
  return p;
}

}  // namespace

TEST_CASE("websocket: the accept key is the RFC 6455 example's") {
  CHECK(net::WsAcceptKey("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST_CASE("websocket: a good upgrade request gets 101 with the accept key") {
  auto a = AnswerWsHttp(Parse(WsTestClient::UpgradeRequest()), {});
  CHECK(a.upgrade);
  CHECK(a.status == 101);
  CHECK(a.response.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") !=
        std::string::npos);
  // Tokens in any case, listed among others.
  auto b = AnswerWsHttp(Parse("GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: "
                              "keep-alive, Upgrade\r\nSec-WebSocket-Key: "
                              "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"),
                        {});
  CHECK(b.upgrade);
}

TEST_CASE("websocket: bad upgrade requests get 400, 426 or 403 naming the header") {
  auto refuse = [](std::string_view head, int status, std::string_view words) {
    auto a = AnswerWsHttp(Parse(head), {});
    CHECK_FALSE(a.upgrade);
    CHECK(a.status == status);
    CHECK_MESSAGE(a.why.find(words) != std::string::npos, a.why);
    CHECK(a.response.compare(0, 12, fmt::format("HTTP/1.1 {}", status)) == 0);
  };
  const std::string key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
  const std::string ver = "Sec-WebSocket-Version: 13\r\n";
  refuse("POST / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key + ver +
             "\r\n",
         400, "GET");
  refuse(
      "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" + key + ver + "\r\n",
      400, "Upgrade");
  refuse("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n" + key +
             ver + "\r\n",
         400, "Connection");
  refuse("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key + ver + "\r\n",
         400, "Host");
  refuse(
      "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + ver + "\r\n",
      400, "Sec-WebSocket-Key");
  refuse(
      "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: c2hvcnQ=\r\n" +
          ver + "\r\n",
      400, "16 bytes");
  refuse("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key +
             "Sec-WebSocket-Version: 8\r\n\r\n",
         426, "Version 8");
  auto v = AnswerWsHttp(Parse("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: "
                              "Upgrade\r\n" +
                              key + "\r\n"),
                        {});
  CHECK(v.status == 426);
  CHECK(v.response.find("Sec-WebSocket-Version: 13\r\n") != std::string::npos);
  // Not an upgrade at all, on a listener without the console.
  refuse("GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "WebSocket connections only");
}

TEST_CASE("websocket: origins: the listener's own, listed ones or * pass, others get 403") {
  auto with_origin = [](std::string_view origin) {
    return Parse(WsTestClient::UpgradeRequest(fmt::format("Origin: {}\r\n", origin)));
  };
  // UpgradeRequest's Host is 127.0.0.1.
  CHECK(AnswerWsHttp(with_origin("http://127.0.0.1"), {}).upgrade);
  auto other = AnswerWsHttp(with_origin("https://evil.example"), {});
  CHECK(other.status == 403);
  CHECK(other.why.find("https://evil.example") != std::string::npos);
  WsHttpPolicy listed;
  listed.allowed_origins = {"https://ops.example"};
  CHECK(AnswerWsHttp(with_origin("https://OPS.example"), listed).upgrade);
  CHECK(AnswerWsHttp(with_origin("https://evil.example"), listed).status == 403);
  WsHttpPolicy any;
  any.allowed_origins = {"*"};
  CHECK(AnswerWsHttp(with_origin("https://evil.example"), any).upgrade);
}

TEST_CASE("websocket: the console listener serves its page at GET / only") {
  WsHttpPolicy policy;
  policy.console_page = "<!doctype html><p>console</p>";
  auto page = AnswerWsHttp(Parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), policy);
  CHECK(page.status == 200);
  CHECK(page.response.find("text/html") != std::string::npos);
  CHECK(page.response.find("<p>console</p>") != std::string::npos);
  auto head = AnswerWsHttp(Parse("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"), policy);
  CHECK(head.status == 200);
  CHECK(head.response.find("<p>console</p>") == std::string::npos);
  CHECK(AnswerWsHttp(Parse("GET /x HTTP/1.1\r\nHost: h\r\n\r\n"), policy).status == 404);
  CHECK(AnswerWsHttp(Parse("POST / HTTP/1.1\r\nHost: h\r\n\r\n"), policy).status == 405);
  CHECK(AnswerWsHttp(Parse(WsTestClient::UpgradeRequest()), policy).upgrade);
}

TEST_CASE("websocket: masked binary messages, whole or fragmented, carry the bytes") {
  auto d = Decode(F(2, "hello") + F(2, "wor", false) + F(0, "l", false) + F(0, "d"));
  CHECK(d.failure == 0);
  CHECK(d.data == "helloworld");
  // Lengths in the 16-bit and 64-bit forms.
  std::string mid(300, 'm'), big(70'000, 'b');
  auto e = Decode(F(2, mid) + F(2, big), 100'000);
  CHECK(e.failure == 0);
  CHECK(e.data == mid + big);
}

TEST_CASE("websocket: any split of the input decodes the same (property, fixed seed)") {
  const uint32_t seed = 20261130;
  INFO("seed ", seed);
  std::mt19937 rng(seed);
  for (int round = 0; round < 200; ++round) {
    std::string stream, expect, pongs;
    int messages = 1 + static_cast<int>(rng() % 5);
    for (int m = 0; m < messages; ++m) {
      int frags = 1 + static_cast<int>(rng() % 3);
      for (int f = 0; f < frags; ++f) {
        std::string part(rng() % 300, '\0');
        for (char& c : part)
          c = static_cast<char>(rng());
        expect += part;
        stream += F(f == 0 ? 2 : 0, part, f == frags - 1);
        if (rng() % 3 == 0) {
          stream += F(9, "p");  // a ping between fragments
          pongs += std::string("\x8a\x01p", 3);
        }
      }
    }
    WsDecoder d(1 << 20);
    std::string data, reply;
    size_t pos = 0;
    while (pos < stream.size()) {
      size_t n = std::min<size_t>(stream.size() - pos, 1 + rng() % 20);
      d.Feed(std::string_view(stream).substr(pos, n), &data, &reply);
      pos += n;
    }
    REQUIRE(d.failure() == 0);
    CHECK(data == expect);
    CHECK(reply == pongs);
    CHECK(d.offset() == stream.size());
  }
}

TEST_CASE("websocket: an unmasked client frame is a protocol error (1002)") {
  auto d = Decode(F(2, "ab") + F(2, "cd", true, false));
  CHECK(d.failure == 1002);
  CHECK(d.data == "ab");
  CHECK(d.why.find("unmasked") != std::string::npos);
  CHECK(d.why.find("offset 8") != std::string::npos);
}

TEST_CASE("websocket: reserved bits, unknown opcodes and long lengths written short are 1002") {
  std::string rsv = F(2, "x");
  rsv[0] = static_cast<char>(rsv[0] | 0x40);
  CHECK(Decode(rsv).failure == 1002);
  CHECK(Decode(F(3, "x")).failure == 1002);
  CHECK(Decode(F(0xb, "x")).failure == 1002);
  // 5 bytes declared in the 16-bit form.
  std::string loose = std::string("\x82\xfe\x00\x05", 4) + "\x01\x02\x03\x04" + "abcde";
  auto d = Decode(loose);
  CHECK(d.failure == 1002);
  CHECK(d.why.find("shortest") != std::string::npos);
}

TEST_CASE("websocket: a text message is unsupported data (1003)") {
  CHECK(Decode(F(1, "{}")).failure == 1003);
}

TEST_CASE("websocket: fragmentation rules: continuation without a message, a message inside one") {
  CHECK(Decode(F(0, "x")).failure == 1002);
  CHECK(Decode(F(2, "a", false) + F(2, "b")).failure == 1002);
  // A control frame may come between fragments; it may not be fragmented or long.
  CHECK(Decode(F(2, "a", false) + F(9, "", false)).failure == 1002);
  CHECK(Decode(F(9, std::string(126, 'p'))).failure == 1002);
  auto ok = Decode(F(2, "a", false) + F(9, "hi") + F(0, "b"));
  CHECK(ok.failure == 0);
  CHECK(ok.data == "ab");
  CHECK(ok.reply == std::string("\x8a\x02hi", 4));
}

TEST_CASE("websocket: a message over the limit is too big (1009), whole or in fragments") {
  CHECK(Decode(F(2, std::string(1024, 'a'))).failure == 0);
  auto one = Decode(F(2, std::string(1025, 'a')));
  CHECK(one.failure == 1009);
  CHECK(one.data.empty());  // refused from its header, before its payload
  auto frags = Decode(F(2, std::string(1000, 'a'), false) + F(0, std::string(25, 'b'), false));
  CHECK(frags.failure == 1009);
  CHECK(frags.why.find("limit is 1024") != std::string::npos);
}

TEST_CASE("websocket: close frames: code echoed, bad codes 1002, bad reasons 1007") {
  auto c = Decode(F(8, ClosePayload(1000, "bye")) + F(2, "ignored"));
  CHECK(c.closed);
  CHECK(c.peer_code == 1000);
  CHECK(c.data.empty());
  auto none = Decode(F(8, ""));
  CHECK(none.closed);
  CHECK(none.peer_code == 1005);
  CHECK(Decode(F(8, "x")).failure == 1002);
  CHECK(Decode(F(8, ClosePayload(1005))).failure == 1002);
  CHECK(Decode(F(8, ClosePayload(999))).failure == 1002);
  CHECK(Decode(F(8, ClosePayload(5000))).failure == 1002);
  CHECK(Decode(F(8, ClosePayload(4000))).closed);
  CHECK(Decode(F(8, ClosePayload(1000, "\xff\xfe"))).failure == 1007);
  // In the middle of a fragmented message: the connection closes normally.
  auto mid = Decode(F(2, "par", false) + F(8, ClosePayload(1001)));
  CHECK(mid.failure == 0);
  CHECK(mid.closed);
  CHECK(mid.peer_code == 1001);
}

TEST_CASE("websocket: server frames and close frames are well formed") {
  std::string h;
  net::WsAppendHeader(h, net::WsOpcode::kBinary, 5);
  CHECK(h == std::string("\x82\x05", 2));
  h.clear();
  net::WsAppendHeader(h, net::WsOpcode::kBinary, 300);
  CHECK(h == std::string("\x82\x7e\x01\x2c", 4));
  h.clear();
  net::WsAppendHeader(h, net::WsOpcode::kBinary, 70'000);
  CHECK(h == std::string("\x82\x7f\x00\x00\x00\x00\x00\x01\x11\x70", 10));
  std::string close = net::WsCloseFrame(1009, std::string(200, 'r'));
  CHECK(close.size() == 2 + 125);
  CHECK(uint8_t(close[2]) == 0x03);
  CHECK(uint8_t(close[3]) == 0xf1);
}

// End to end, against --ws-listen.

namespace {

testing::TestServerOptions WsServerOptions() {
  testing::TestServerOptions o;
  o.server.ws_listen = "127.0.0.1:0";
  o.server.max_frame = 4096;
  return o;
}

// The server still serves a WebSocket writer and a TCP reader.
void CheckHealthy(testing::TestServer& server) {
  WsTestClient ws(server.server().ws_port());
  ws.Open("healthy");
  auto tcp = server.Connect();
  const auto& player = testing::Player(*tcp);
  REQUIRE(ws.SendMessage(testing::WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "h1",
                                             testing::Record(player, {{"score", int64_t{7}}}))));
  auto ack = ws.ReadFrame();
  REQUIRE(ack.ok());
  CHECK(testing::IsType(*ack, FrameType::kAck));
}

}  // namespace

TEST_CASE("websocket: end to end: writes, queries and frames split across messages") {
  testing::TestServer server(WsServerOptions());
  REQUIRE(server.server().ws_port() != 0);
  WsTestClient ws(server.server().ws_port());
  ws.Open("w1");
  auto tcp = server.Connect();
  const auto& player = testing::Player(*tcp);
  std::string a = testing::WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "p1",
                                      testing::Record(player, {{"score", int64_t{1}}}));
  std::string b = testing::WriteFrame(FrameType::kAssert, 2, 0, kPlayer, "p2",
                                      testing::Record(player, {{"score", int64_t{2}}}));
  // One message with a frame and a half, then the rest in a fragmented message.
  std::string both = a + b;
  size_t cut = a.size() + 3;
  REQUIRE(ws.SendMessage(both.substr(0, cut)));
  REQUIRE(ws.Send(WsTestClient::Frame(2, both.substr(cut, 2), false) +
                  WsTestClient::Frame(0, both.substr(cut + 2))));
  uint64_t acked = 0;
  while (acked < 2) {
    auto f = ws.ReadFrame();
    REQUIRE(f.ok());
    if (testing::IsType(*f, FrameType::kAck)) {
      REQUIRE(net::DecodeAck(f->payload, &acked));
    }
  }
  REQUIRE(ws.SendMessage(testing::QueryFrame(9, kPlayer, "p2", false)));
  auto r = ws.ReadFrame();
  REQUIRE(r.ok());
  REQUIRE(testing::IsType(*r, FrameType::kResult));
  net::Result res;
  REQUIRE(net::DecodeResult(r->payload, player, false, &res));
  CHECK(res.found);
  CHECK(testing::I64Field(player, res.record, "score") == 2);
}

TEST_CASE("websocket: end to end: a reader moves to the read thread and subscribes") {
  testing::TestServer server(WsServerOptions());
  WsTestClient reader(server.server().ws_port());
  reader.Open();  // no source: handed over to the read thread, WebSocket state and all
  auto writer = server.Connect("w");
  const auto& player = testing::Player(*writer);
  std::string sub;
  net::Subscribe subscribe;
  subscribe.sub = 1;
  subscribe.schema_id = kPlayer;
  subscribe.flags = net::kSubscribeBootstrap;
  net::EncodeSubscribe(sub, subscribe);
  REQUIRE(reader.SendMessage(sub + testing::RawFrame(uint8_t(FrameType::kPing), "\x05")));
  bool pong = false, ended = false;
  while (!pong || !ended) {
    auto f = reader.ReadFrame();
    REQUIRE_MESSAGE(f.ok(), (f.ok() ? "" : f.message()));
    pong = pong || testing::IsType(*f, FrameType::kPong);
    ended = ended || testing::IsType(*f, FrameType::kSnapshotEnd);
  }
  REQUIRE(writer
              ->Send(testing::WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "live",
                                         testing::Record(player, {{"score", int64_t{5}}})))
              .ok());
  for (;;) {
    auto f = reader.ReadFrame();
    REQUIRE_MESSAGE(f.ok(), (f.ok() ? "" : f.message()));
    if (testing::IsType(*f, FrameType::kNotify)) break;
  }
  // A WebSocket ping gets its pong.
  REQUIRE(reader.Send(WsTestClient::Frame(9, "ws")));
  for (;;) {
    auto w = reader.ReadWsFrame();
    REQUIRE(w.ok());
    if (w->opcode == 0xa) {
      CHECK(w->payload == "ws");
      break;
    }
  }
}

TEST_CASE("websocket: end to end: an unmasked frame closes with 1002, the server stays up") {
  testing::TestServer server(WsServerOptions());
  WsTestClient ws(server.server().ws_port());
  ws.Open("w1");
  REQUIRE(
      ws.Send(WsTestClient::Frame(2, testing::QueryFrame(1, kPlayer, "x", false), true, false)));
  CHECK(ws.ReadClose() == 1002);
  CHECK(ws.WaitEof());
  CheckHealthy(server);
}

TEST_CASE("websocket: end to end: an oversized message closes with 1009, the server stays up") {
  testing::TestServer server(WsServerOptions());
  WsTestClient ws(server.server().ws_port());
  ws.Open("w1");
  // --max-frame 4096: a message may hold 4100 bytes.
  REQUIRE(ws.SendMessage(std::string(4101, 'x')));
  CHECK(ws.ReadClose() == 1009);
  CHECK(ws.WaitEof());
  CheckHealthy(server);
}

TEST_CASE("websocket: end to end: a close in the middle of a fragmented message") {
  testing::TestServer server(WsServerOptions());
  WsTestClient ws(server.server().ws_port());
  ws.Open("w1");
  std::string q = testing::QueryFrame(1, kPlayer, "x", false);
  REQUIRE(ws.Send(WsTestClient::Frame(2, q.substr(0, 3), false) +
                  WsTestClient::Frame(8, ClosePayload(1000))));
  CHECK(ws.ReadClose() == 1000);
  CHECK(ws.WaitEof());
  CheckHealthy(server);
}

TEST_CASE("websocket: end to end: bad upgrade requests get HTTP errors, the server stays up") {
  testing::TestServer server(WsServerOptions());
  {
    WsTestClient ws(server.server().ws_port());
    std::string head;
    CHECK(ws.Handshake("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", &head) == 400);
    CHECK(head.find("Connection: close") != std::string::npos);
    CHECK(ws.WaitEof());
  }
  {
    WsTestClient ws(server.server().ws_port());
    CHECK(ws.Handshake("\x01\x02garbage\r\n\r\n") == 400);
  }
  {
    WsTestClient ws(server.server().ws_port());
    CHECK(ws.Handshake(WsTestClient::UpgradeRequest("Origin: https://elsewhere.example\r\n")) ==
          403);
  }
  {
    // A request head that never ends within 8 KiB.
    WsTestClient ws(server.server().ws_port());
    std::string head;
    CHECK(ws.Handshake("GET / HTTP/1.1\r\nX-Long: " + std::string(9000, 'a') + "\r\n\r\n", &head) ==
          431);
    CHECK(head.find("Connection: close") != std::string::npos);
  }
  {
    // The protocol spoken bare to the WebSocket port is not HTTP.
    WsTestClient ws(server.server().ws_port());
    CHECK(ws.Handshake(testing::HelloFrame("x") + "\r\n\r\n") == 400);
  }
  CheckHealthy(server);
}

TEST_CASE("websocket: end to end: a protocol error is an ERROR frame, then close 1008") {
  testing::TestServer server(WsServerOptions());
  WsTestClient ws(server.server().ws_port());
  std::string head;
  REQUIRE(ws.Handshake(WsTestClient::UpgradeRequest(), &head) == 101);
  REQUIRE(ws.SendMessage(testing::QueryFrame(1, kPlayer, "x", false)));  // not HELLO
  std::vector<net::OwnedFrame> before;
  CHECK(ws.ReadClose(&before) == 1008);
  REQUIRE(before.size() == 1);
  CHECK(testing::ErrorOf(before[0]).code == uint64_t(net::ErrorCode::kHandshakeRequired));
  CheckHealthy(server);
}

TEST_CASE("websocket: end to end: a graceful stop sends its ERROR, then close 1001") {
  testing::TestServer server(WsServerOptions());
  WsTestClient ws(server.server().ws_port());
  ws.Open("w1");
  server.Shutdown();
  std::vector<net::OwnedFrame> before;
  CHECK(ws.ReadClose(&before) == 1001);
  REQUIRE_FALSE(before.empty());
  CHECK(testing::ErrorOf(before.back()).code == uint64_t(net::ErrorCode::kShuttingDown));
}

TEST_CASE("websocket: end to end: the console listener serves the page and WebSocket") {
  testing::TestServerOptions o;
  o.server.console_listen = "127.0.0.1:0";
  o.server.console_page = "<!doctype html><title>t</title>";
  testing::TestServer server(o);
  REQUIRE(server.server().console_port() != 0);
  {
    WsTestClient page(server.server().console_port());
    std::string head;
    CHECK(page.Handshake("GET / HTTP/1.1\r\nHost: h\r\n\r\n", &head) == 200);
    CHECK(head.find("text/html") != std::string::npos);
  }
  WsTestClient ws(server.server().console_port());
  ws.Open();
}

namespace {

// What Server::Listen says about `so`'s listeners (it must refuse them).
std::string ListenError(net::ServerOptions so) {
  engine::SchemaSet schemas;
  engine::SourceTable sources;
  engine::EngineOptions eo;
  eo.partitions = 1;
  eo.lanes = 1;
  engine::Engine engine(eo, schemas, sources);
  util::Logger log(util::LogLevel::kOff);
  so.listen = "127.0.0.1:0";
  net::Server server(engine, so, log);
  auto st = server.Listen();
  REQUIRE_FALSE(st.ok());
  return st.message();
}

}  // namespace

TEST_CASE("websocket: listeners follow the loopback rule of --listen") {
  net::ServerOptions so;
  so.ws_listen = "0.0.0.0:0";
  std::string message = ListenError(so);
  CHECK(message.find("--ws-listen") != std::string::npos);
  CHECK(message.find("without authentication") != std::string::npos);
}

TEST_CASE("websocket: a console listener needs a page") {
  net::ServerOptions so;
  so.console_listen = "127.0.0.1:0";
  CHECK(ListenError(so) == "--console: this build has no console page");
}

TEST_CASE("websocket: the binary's flags: listeners printed, errors named") {
  using testing::RunProcess;
  testing::TempDir dir("conv-ws-cli");
  auto serve = [&](std::vector<std::string> flags) {
    std::vector<std::string> argv = {CONV_BINARY,   "serve",      "--listen",
                                     "127.0.0.1:0", "--data-dir", dir.File("data")};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return RunProcess(argv);
  };
  auto r = serve({"--ws-allowed-origins", "https://a.example"});
  CHECK(r.exit_code == 2);
  CHECK_MESSAGE(
      r.err.find("--ws-allowed-origins needs --ws-listen or --console") != std::string::npos,
      r.err);
  r = serve({"--console", "0.0.0.0:0"});
  CHECK(r.exit_code == 2);
  CHECK_MESSAGE(r.err.find("--console: refusing to listen on 0.0.0.0:0") != std::string::npos,
                r.err);
  r = serve({"--ws-listen", "nowhere:1"});
  CHECK(r.exit_code == 2);
  CHECK_MESSAGE(r.err.find("--ws-listen: 'nowhere' is not an IP address") != std::string::npos,
                r.err);

  // Both listeners, printed after `listening on`; the page is served at /.
  auto s = testing::StartServe(dir.File("data"), dir.File("serve.log"),
                               {"--ws-listen", "127.0.0.1:0", "--console", "127.0.0.1:0"});
  auto ws_line = s.process->WaitForLine("websocket on ws://127.0.0.1:", testing::kReplyTimeout);
  REQUIRE_MESSAGE(ws_line.ok(), (ws_line.ok() ? "" : ws_line.message()));
  auto console_line =
      s.process->WaitForLine("console on http://127.0.0.1:", testing::kReplyTimeout);
  REQUIRE_MESSAGE(console_line.ok(), (console_line.ok() ? "" : console_line.message()));
  std::string port = console_line->substr(console_line->rfind(':') + 1);
  port = port.substr(0, port.find('/'));
  WsTestClient page(static_cast<uint16_t>(std::stoi(port)));
  std::string head;
  CHECK(page.Handshake("GET / HTTP/1.1\r\nHost: h\r\n\r\n", &head) == 200);
  CHECK(head.find("text/html") != std::string::npos);
  s.Stop();
}

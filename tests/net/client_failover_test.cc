// net::Client given several servers (ClientOptions): the list is parsed with the
// entry that is wrong named, tried in order for a bounded time, failing with every
// address tried; with reconnect, a lost connection is replaced and every op not
// acknowledged is sent again and applied once. Takeover by a standby is in
// tests/repl/takeover_test.cc.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "net/address.h"
#include "net/client.h"
#include "support/durable_server.h"
#include "support/op_model.h"
#include "support/process.h"
#include "support/test_server.h"

using namespace conv;
using namespace std::chrono_literals;

namespace {

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("client: an address list is split, a malformed entry named by its position") {
  auto one = net::ParseAddressList("127.0.0.1:3727");
  REQUIRE(one.ok());
  CHECK(*one == std::vector<std::string>{"127.0.0.1:3727"});
  auto three = net::ParseAddressList("a:1,[::1]:2,b.example:3");
  REQUIRE(three.ok());
  CHECK(*three == std::vector<std::string>{"a:1", "[::1]:2", "b.example:3"});

  auto empty = net::ParseAddressList("");
  CHECK(Contains(empty.message(), "the server list is empty"));
  auto hole = net::ParseAddressList("a:1,,b:2");
  CHECK(hole.message() == "'a:1,,b:2': entry 2 is empty; give HOST:PORT[,HOST:PORT...]");
  auto trailing = net::ParseAddressList("a:1,");
  CHECK(Contains(trailing.message(), "entry 2 is empty"));
  auto no_port = net::ParseAddressList("a:1,b:2,c");
  CHECK(Contains(no_port.message(), "'a:1,b:2,c': entry 3: 'c' is not HOST:PORT"));
  auto bad_port = net::ParseAddressList("a:1,b:99999");
  CHECK(Contains(bad_port.message(), "entry 2: 'b:99999' has port '99999'"));

  // Connect reads the same list.
  auto c = net::Client::Connect("127.0.0.1:1,nohost", net::Hello{}, 1s);
  REQUIRE(!c.ok());
  CHECK(Contains(c.message(), "entry 2: 'nohost' is not HOST:PORT"));
  net::ClientOptions none;
  CHECK(net::Client::Connect(none, net::Hello{}).message() == "no server address to connect to");
}

TEST_CASE("client: every server of the list down: the error names each address and why") {
  std::string a = fmt::format("127.0.0.1:{}", testing::ClosedPort());
  std::string b = fmt::format("127.0.0.1:{}", testing::ClosedPort());
  net::ClientOptions o;
  o.servers = {a, b};
  o.timeout = 1s;
  o.retry_for = 400ms;
  auto start = std::chrono::steady_clock::now();
  auto c = net::Client::Connect(o, net::Hello{});
  auto took = std::chrono::steady_clock::now() - start;
  REQUIRE(!c.ok());
  MESSAGE(c.message());
  CHECK(Contains(c.message(), "no server took the connection (2 tried, "));
  CHECK(Contains(c.message(), fmt::format("{}: cannot connect to {}: Connection refused", a, a)));
  CHECK(Contains(c.message(), fmt::format("{}: cannot connect to {}: Connection refused", b, b)));
  // Tried for retry_for, in several rounds, and no longer than a little past it.
  CHECK(took >= 400ms);
  CHECK(took < 3s);
  CHECK(!Contains(c.message(), " 1 round(s)"));

  // One round (retry_for 0) over one address keeps that address's own error.
  o.servers = {a};
  o.retry_for = 0ms;
  CHECK(net::Client::Connect(o, net::Hello{}).message() ==
        fmt::format("cannot connect to {}: Connection refused", a));
}

TEST_CASE("client: the first server down, the next one of the list takes the connection") {
  testing::TestServer ts;
  std::string closed = fmt::format("127.0.0.1:{}", testing::ClosedPort());
  std::string live = fmt::format("127.0.0.1:{}", ts.port());
  auto c = net::Client::Connect(closed + "," + live, net::Hello{}, 2s);
  REQUIRE_MESSAGE(c.ok(), c.message());
  CHECK((*c)->server() == live);
  CHECK((*c)->FindSchema("player") != nullptr);
}

TEST_CASE("client: a HELLO refused for a wrong token is not tried on the next server") {
  testing::TestServerOptions so;
  so.server.auth_token = "right";
  testing::TestServer ts(so);
  std::string live = fmt::format("127.0.0.1:{}", ts.port());
  std::string closed = fmt::format("127.0.0.1:{}", testing::ClosedPort());
  net::ClientOptions o;
  o.servers = {live, closed};
  o.retry_for = 5s;
  net::Hello hello;
  hello.auth_token = "wrong";
  auto start = std::chrono::steady_clock::now();
  auto c = net::Client::Connect(o, hello);
  REQUIRE(!c.ok());
  CHECK(Contains(c.message(), "(auth_failed)"));
  CHECK(!Contains(c.message(), closed));
  CHECK(std::chrono::steady_clock::now() - start < 2s);
}

TEST_CASE("client: with reconnect, a restarted server gets every unacknowledged op once") {
  testing::TempDir dir("conv-client-failover");
  const uint64_t seed = testing::TestSeed("CONV_SEED", 20261203);
  MESSAGE("client reconnect: seed ", seed, " (CONV_SEED)");
  testing::DurableServerOptions so;
  so.data_dir = dir.File("data");
  so.port = testing::ClosedPort();
  auto server = std::make_unique<testing::DurableServer>(so);
  testing::OpGenerator gen(engine::PlayerSchema(), seed, 16);
  net::ClientOptions o;
  o.servers = {fmt::format("127.0.0.1:{}", testing::ClosedPort()), server->address()};
  o.timeout = 5s;
  o.retry_for = 10s;
  o.reconnect = true;
  net::Hello hello;
  hello.source = "failover";
  auto connected = net::Client::Connect(o, hello);
  REQUIRE_MESSAGE(connected.ok(), connected.message());
  net::Client& c = **connected;
  for (uint64_t seq = 1; seq <= 100; ++seq)
    REQUIRE(c.Send(gen.Frame(0, seq)).ok());
  REQUIRE(c.Sync().ok());
  CHECK(c.unacked() == 0);

  // The server stops; ops are sent meanwhile (into the closed connection, or, once
  // the loss is seen, to the next server of the list while none listens); it comes
  // back on the same port 300 ms later.
  server.reset();
  std::thread restart([&] {
    std::this_thread::sleep_for(300ms);
    server = std::make_unique<testing::DurableServer>(so);
  });
  for (uint64_t seq = 101; seq <= 200; ++seq) {
    auto st = c.Send(gen.Frame(0, seq));
    if (!st.ok()) {
      restart.join();
      FAIL(st.message());
    }
  }
  auto synced = c.Sync();
  restart.join();
  REQUIRE_MESSAGE(synced.ok(), synced.message());
  CHECK(c.unacked() == 0);
  CHECK(c.reconnects() >= 1);
  CHECK(c.server() == server->address());

  testing::StateModel model(gen.schema());
  for (uint64_t seq = 1; seq <= 200; ++seq)
    model.Apply("failover", gen.Op(0, seq));
  auto reader = server->Connect();
  auto got = testing::QueryState(*reader, gen.schema(), gen.EntityIds());
  REQUIRE(got.ok());
  CHECK_MESSAGE(*got == model.State(), testing::DescribeDifference(model.State(), *got));
  auto again = server->Connect("failover");
  CHECK(again->welcome().last_applied_seq == 200);
}

TEST_CASE("client: with reconnect, every server gone fails the next read naming them") {
  testing::TempDir dir("conv-client-failover");
  testing::DurableServerOptions so;
  so.data_dir = dir.File("data");
  auto server = std::make_unique<testing::DurableServer>(so);
  std::string address = server->address();
  net::ClientOptions o;
  o.servers = {address};
  o.timeout = 2s;
  o.retry_for = 300ms;
  o.reconnect = true;
  net::Hello hello;
  hello.source = "gone";
  auto connected = net::Client::Connect(o, hello);
  REQUIRE_MESSAGE(connected.ok(), connected.message());
  net::Client& c = **connected;
  server.reset();
  // The stop's ERROR shutting_down may come first; then the loss.
  util::Status failed = util::Status::Ok();
  for (int i = 0; i < 4 && failed.ok(); ++i) {
    auto f = c.ReadFrame();
    if (!f.ok()) failed = f.status();
  }
  REQUIRE(!failed.ok());
  CHECK(Contains(failed.message(), fmt::format("lost the connection to {} (", address)));
  CHECK(Contains(failed.message(), "and found no server: no server took the connection"));
  CHECK(Contains(failed.message(), address + ": cannot connect to " + address));
}

TEST_CASE("client: with reconnect, a Send that ends inside a frame is refused") {
  testing::TestServer ts;
  net::ClientOptions o;
  o.servers = {fmt::format("127.0.0.1:{}", ts.port())};
  o.reconnect = true;
  net::Hello hello;
  hello.source = "halves";
  auto connected = net::Client::Connect(o, hello);
  REQUIRE_MESSAGE(connected.ok(), connected.message());
  testing::OpGenerator gen(engine::PlayerSchema(), 1, 4);
  std::string frame = gen.Frame(0, 1);
  auto st = (*connected)->Send(std::string_view(frame).substr(0, frame.size() - 3));
  CHECK(st.message() ==
        fmt::format("Send of {} bytes ends inside a frame (its last {} bytes): a client that "
                    "reconnects takes whole frames",
                    frame.size() - 3, frame.size() - 3));
  CHECK((*connected)->unacked() == 0);
}

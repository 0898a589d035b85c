#pragma once

// An in-process server on a free loopback port, for end-to-end tests, and the small
// helpers those tests share.

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "engine/record.h"
#include "net/client.h"
#include "net/server.h"
#include "util/log.h"
#include "util/status.h"

namespace conv::testing {

// How long a test waits for anything the server should send promptly. Generous, as
// sanitizer builds on a shared 2-core machine are slow; a passing test never waits
// it out.
constexpr std::chrono::milliseconds kReplyTimeout{10'000};

struct TestServerOptions {
  uint32_t partitions = 2;
  uint32_t io_threads = 2;
  std::chrono::microseconds window{2'000};
  std::chrono::microseconds resume_retention{600'000'000};
  net::ServerOptions server;
  std::string schema_text;  // extra schemas, schema-file syntax
};

class TestServer {
 public:
  explicit TestServer(TestServerOptions options = {});
  ~TestServer();

  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  uint16_t port() const { return server_->port(); }
  engine::Engine& engine() { return *engine_; }
  net::Server& server() { return *server_; }
  void Shutdown() { server_->Shutdown(); }

  // Connects and says HELLO as `source` (empty: a reader). Fails the test on error.
  std::unique_ptr<net::Client> Connect(const std::string& source = "",
                                       const std::string& token = "");

 private:
  util::Logger log_{util::LogLevel::kWarn};
  engine::SchemaSet schemas_;
  engine::SourceTable sources_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<net::Server> server_;
};

// Makes a blocking send on `fd` give up after kReplyTimeout without progress, for
// raw sends: RawConnection does this for its socket, and a test that writes to a
// net::Client's fd() itself calls it (Client::Send has its own timeout).
void BoundSends(int fd);

// A TCP connection that speaks no protocol by itself, for what a well-behaved client
// never sends: no HELLO, a HELLO the server refuses, broken frames.
class RawConnection {
 public:
  // Connects to 127.0.0.1:`port`; fails the test when it cannot.
  explicit RawConnection(uint16_t port);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  // Writes all of `bytes`; false when the connection is gone.
  bool Send(std::string_view bytes);
  // The next frame. Fails on timeout, or when the connection ended (then closed()).
  util::Result<net::OwnedFrame> ReadFrame(std::chrono::milliseconds timeout = kReplyTimeout);
  bool closed() const { return closed_; }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string in_;
  bool closed_ = false;
};

// Reads frames until the server ends the connection (EOF or reset), appending them to
// `frames` when given. False when the connection is still open after kReplyTimeout.
bool ReadUntilClosed(net::Client& c, std::vector<net::OwnedFrame>* frames = nullptr);
bool ReadUntilClosed(RawConnection& c, std::vector<net::OwnedFrame>* frames = nullptr);

// A frame built by hand: u32 length (of type and payload), u8 type, payload.
std::string RawFrame(uint8_t type, std::string_view payload);
// A HELLO frame.
std::string HelloFrame(std::string_view source, std::string_view token = "",
                       uint64_t version = net::kProtocolVersion);
// An ASSERT, PATCH or RETRACT frame (`record` is ignored for RETRACT).
std::string WriteFrame(net::FrameType type, uint64_t seq, uint64_t ts, uint64_t schema,
                       std::string_view id, std::string_view record = "");
// A QUERY frame.
std::string QueryFrame(uint64_t req, uint64_t schema, std::string_view id, bool with_claims);
// A record of `schema` with the given fields set; fails the test on an unknown field or
// a value of the wrong type.
std::string Record(const engine::Schema& schema,
                   std::initializer_list<std::pair<std::string_view, engine::Value>> fields);
// The i64 field `field` of `record` (mask + values, as RESULT carries it); -1 when the
// field is not set. Fails the test when the record does not parse or the schema has no
// such field.
int64_t I64Field(const engine::Schema& schema, std::string_view record, std::string_view field);
// Reads frames until an ACK of at least `seq` arrives, appending every other frame to
// `others` when given. False when the connection fails or kReplyTimeout passes first.
bool WaitForAck(net::Client& c, uint64_t seq, std::vector<net::OwnedFrame>* others = nullptr);
// STATS, as a lookup; fails the test when the server does not answer or lacks `name`.
uint64_t Stat(net::Client& c, std::string_view name);

// The built-in player schema as `c`'s WELCOME described it; fails the test without it.
const engine::Schema& Player(net::Client& c);

// This process's resident set size, in KiB (VmRSS).
uint64_t RssKiB();
// Checks that RSS grew by less than `limit_kib` from `before_kib` to `after_kib`; under
// AddressSanitizer (whose quarantine keeps freed memory resident) it only says so.
void CheckRssGrowth(uint64_t before_kib, uint64_t after_kib, uint64_t limit_kib);

// The ERROR carried by `f`; fails the test when `f` is not a well-formed ERROR.
net::Error ErrorOf(const net::OwnedFrame& f);
bool IsType(const net::OwnedFrame& f, net::FrameType type);

}  // namespace conv::testing

#pragma once

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/engine.h"
#include "net/address.h"
#include "net/credit.h"
#include "net/fanout.h"
#include "net/messages.h"
#include "net/tls.h"
#include "net/websocket.h"
#include "util/histogram.h"
#include "util/log.h"
#include "util/status.h"

namespace conv::net {

class Session;

struct ServerOptions {
  std::string listen = "127.0.0.1:3727";  // port 0: any free port
  std::string server_name = "convergence";
  std::string auth_token;  // empty: no authentication
  // Non-null: connections speak TLS (--tls-cert); with a client CA (mutual TLS) a
  // non-loopback listen needs no auth token.
  std::shared_ptr<TlsServerContext> tls;
  uint32_t max_frame = kDefaultMaxFrame;
  uint32_t max_connections = 10'000;
  std::chrono::milliseconds handshake_timeout{5'000};
  std::chrono::milliseconds idle_timeout{600'000};  // 0: never
  // How far past the server's clock an op's ts may be (--max-future-ts); 0: any. A ts
  // far in the future would win every field against every other source for good.
  std::chrono::microseconds max_future_ts{60'000'000};
  // How long a window's cut may wait behind queued ops before writers' credits shrink
  // (net/credit.h); 0: CreditBudget::DefaultGoal, a quarter of the window.
  std::chrono::microseconds queue_goal{0};
  // Bytes of replies queued for one connection past which the server stops reading
  // its requests until the client has read some.
  size_t output_high_water = 8u << 20;
  // Unsent subscription bytes of one connection past which its subscriptions are
  // conflated (--subscriber-backlog).
  size_t subscriber_backlog = 8u << 20;
  // How long a source with no connection and no claim keeps its seq mark before it
  // may be forgotten to make room for a new name (--source-retention). A source
  // that never had an op applied may go at once.
  std::chrono::microseconds source_retention{3'600'000'000};
  // WebSocket listeners (docs/protocol.md, "WebSocket"), HOST:PORT, empty: none.
  // --ws-listen speaks WebSocket only; --console also serves console_page at GET /.
  // Both follow the rules of `listen` (token, loopback, TLS).
  std::string ws_listen;
  std::string console_listen;
  std::string_view console_page;
  // Origins a browser page may connect from besides the listener's own ("*": any).
  std::vector<std::string> ws_allowed_origins;
  // How long a snapshot may wait for its subscriber to read (Fanout).
  std::chrono::microseconds snapshot_stall_limit = Fanout::kDefaultStallLimit;
  // Set on a read replica (serve --follow): a HELLO with a source gets ERROR
  // `not_owner` whose message names what this returns, the owner's address (empty:
  // not known yet). Called on an I/O thread.
  std::function<std::string()> owner_address;
  // Appends figures the server does not keep itself to STATS (replication: role,
  // epoch). Called on the thread answering STATS or scraping metrics.
  std::function<void(StatList&)> extra_stats;
};

// Counters kept by the network layer; the engine keeps its own.
struct ServerCounters {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> connections_total{0};
  std::atomic<uint64_t> connections_rejected{0};
  std::atomic<uint64_t> frames_in{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
  std::atomic<uint64_t> op_errors{0};
  std::atomic<uint64_t> duplicates{0};  // skipped at the session: seq not above its mark
  std::atomic<uint64_t> queries{0};
  std::atomic<uint64_t> takeovers{0};
  std::atomic<uint64_t> lease_expirations{0};  // leased sources whose claims were retracted
  std::atomic<uint64_t> credit_waits{0};       // reads a writer over its credit left unhandled
  // ERROR frames sent, by code: index = the code's value (codes past the end are
  // counted at 0). STATS `errors_<code name>`.
  std::array<std::atomic<uint64_t>, 32> errors{};
  void CountError(ErrorCode code) {
    auto i = static_cast<size_t>(code);
    errors[i < errors.size() ? i : 0].fetch_add(1, std::memory_order_relaxed);
  }
};

// One I/O thread: an io_context, the sessions it runs and the engine lane it feeds.
struct IoThread {
  explicit IoThread(engine::Lane* l) : lane(l) {}
  asio::io_context ctx{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  engine::Lane* lane;
  std::unordered_map<Session*, std::shared_ptr<Session>> sessions;  // this thread only
  std::thread thread;
  // Lease timers armed on this thread; a graceful stop cancels them (this thread only).
  std::unordered_map<asio::steady_timer*, std::shared_ptr<asio::steady_timer>> leases;
  // Lease retractions sent by this thread's lane, each with the window it is in: the
  // source's next WELCOME waits until that window is durable (this thread only).
  std::vector<std::pair<uint32_t, uint64_t>> retractions;
  // Server-side QUERY service time (frame handled to RESULT encoded), in ns. Written by
  // this thread, read by STATS from any: guarded by query_mu (never contended long).
  std::mutex query_mu;
  util::Histogram query_ns;
  CreditBudget budget;  // this thread's writers' credits
};

// The TCP front end: accepts connections, runs sessions on `io_threads` threads and
// relays the engine's window events to them.
class Server : private engine::WindowListener {
 public:
  // The engine must have one lane per I/O thread and must outlive the server.
  Server(engine::Engine& engine, ServerOptions options, util::Logger& log);
  ~Server() override;

  // Checks the options (a non-loopback address needs an auth token or mutual TLS),
  // binds and listens. After it succeeds port() is the bound port.
  util::Status Listen();
  uint16_t port() const { return port_; }
  // The bound ports of --ws-listen and --console (0: not listening).
  uint16_t ws_port() const { return ws_port_; }
  uint16_t console_port() const { return console_port_; }
  // Starts the engine and the I/O threads. REQUIRES: Listen() succeeded.
  void Start();
  // Graceful stop, from any thread but an I/O thread: stop accepting and reading,
  // close one last window, send every session its final ACK and a shutting_down
  // error, close, join. Idempotent.
  void Shutdown();

  // A deposed owner (docs/replication.md, "Fencing"), from any thread: every
  // writer connection gets ERROR not_owner naming `owner` and is closed, and every
  // later HELLO with a source gets the same error. Readers go on. Idempotent.
  void Fence(const std::string& owner);
  // The owner a fenced server names; nullopt while not fenced.
  std::optional<std::string> fenced_owner();

  // For sessions.
  engine::Engine& engine() { return engine_; }
  const ServerOptions& options() const { return options_; }
  ServerCounters& counters() { return counters_; }
  util::Logger& log() { return log_; }
  bool stopping() const { return stopping_.load(std::memory_order_relaxed); }
  // Hand-over between the connections of one source (see docs/protocol.md, WELCOME):
  // ClaimSource finds (or registers) source `name`'s id, makes `s` its live session
  // and counts it among the source's sessions that may still hand ops to the
  // engine, all at once, so that the source is not forgotten in between; the
  // previous session, if any, is told it was taken over (on its own thread). When
  // the source table is full, the sources idle past --source-retention are forgotten
  // first. `*reused`: the id was a forgotten source's (the session resets it in the
  // partitions, Lane::ResetSource, before its first op). A session calls
  // StopConsuming once it will hand no more ops to the engine, with the highest seq
  // it handed over; the live session is then asked (on its thread) to check
  // HandoverSeq again. HandoverSeq: false while another session of the source may
  // still send; otherwise true with *seq the highest seq any earlier session handed
  // to the engine (WELCOME waits until that is durable).
  util::Result<uint32_t> ClaimSource(std::string_view name, const std::shared_ptr<Session>& s,
                                     bool* reused);
  void StopConsuming(uint32_t source, uint64_t sent_seq);
  bool HandoverSeq(uint32_t source, uint64_t* seq);
  // Forgets `s` as the live session of `source`; false when it no longer was (it was
  // taken over): then its lease is not its to start.
  bool ReleaseSource(uint32_t source, const Session* s);
  // Called when the session of a source with a lease ended: unless a session of the
  // same source says HELLO within `lease`, every claim of the source is retracted
  // (through `io`'s lane, after everything the ended session sent).
  void StartLease(uint32_t source, std::chrono::milliseconds lease, IoThread& io);
  Fanout& fanout() { return *fanout_; }
  StatList Stats();
  // The I/O thread of connections without a source (readers, subscribers). A session
  // elsewhere that gets such a HELLO hands its socket over: Adopt (any thread)
  // starts a session for `fd` there, with `input` read after the HELLO.
  IoThread* read_thread() { return read_io_; }
  // `tls` and `ws`: the connection's TLS and WebSocket state, which the descriptor
  // carries along.
  void Adopt(int fd, asio::ip::tcp protocol, std::string input,
             std::chrono::steady_clock::time_point connected_at, SslPtr tls,
             std::unique_ptr<WsConnection> ws);

 private:
  // Descriptors kept beyond one per connection (log, checkpoints, listeners, threads).
  static constexpr uint32_t kReservedDescriptors = 64;
  util::Status FitDescriptorLimit();
  void OnCut(uint64_t w) override;
  void OnDurable(uint64_t w) override;
  void OnChanges(uint64_t w, std::vector<std::string> changes) override;
  // Accepts on `acceptor`: the protocol over TCP, or with `ws` over WebSocket (with
  // `console`, the console page too).
  void Accept(asio::ip::tcp::acceptor& acceptor, bool ws, bool console);

  engine::Engine& engine_;
  const ServerOptions options_;
  util::Logger& log_;
  ServerCounters counters_;
  uint32_t max_connections_;  // --max-connections, or less when descriptors are short
  std::vector<std::unique_ptr<IoThread>> io_;  // one per lane, then the read thread
  IoThread* read_io_ = nullptr;
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
  uint16_t port_ = 0;
  std::unique_ptr<asio::ip::tcp::acceptor> ws_acceptor_;
  std::unique_ptr<asio::ip::tcp::acceptor> console_acceptor_;
  uint16_t ws_port_ = 0;
  uint16_t console_port_ = 0;
  size_t next_io_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> fenced_{false};
  std::mutex fence_mu_;
  std::string fenced_owner_;  // guarded by fence_mu_
  bool started_ = false;
  bool shut_down_ = false;

  // What the server knows of one source's connections.
  struct SourceSlot {
    std::weak_ptr<Session> owner;  // the live session
    uint64_t gen = 0;              // HELLOs so far (and forgets), never reset
    uint32_t consuming = 0;        // sessions that may still hand ops to the engine
    uint64_t sent = 0;             // highest seq handed over by a session that stopped
    uint64_t active_us = 0;        // last HELLO or end of a session (monotonic clock)
  };
  SourceSlot& Slot(uint32_t source);  // REQUIRES: owners_mu_ held
  // Forgets the sources with no claim, no connection and nothing in flight that were
  // idle past --source-retention, or never had an op applied. REQUIRES: owners_mu_.
  size_t ForgetIdleSources();
  uint64_t started_us_ = 0;
  static constexpr uint64_t kSweepPause = 100'000;  // us after a sweep that found nothing
  uint64_t empty_sweep_us_ = 0;                     // guarded by owners_mu_
  std::mutex owners_mu_;
  std::vector<SourceSlot> slots_;  // by source id; guarded by owners_mu_
  std::unique_ptr<Fanout> fanout_;
};

}  // namespace conv::net

#pragma once

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "engine/engine.h"
#include "net/credit.h"
#include "net/fanout.h"
#include "net/messages.h"
#include "net/tls.h"
#include "net/websocket.h"

namespace conv::net {

class Server;
struct IoThread;

// One client connection. Runs entirely on its I/O thread: a reader coroutine that
// cuts frames and handles them, a writer coroutine that drains the outgoing buffer,
// and a watchdog for the handshake and idle deadlines. Nothing here is thread-safe;
// other threads reach a session only by posting to its io_context.
class Session : public std::enable_shared_from_this<Session> {
 public:
  // `adopted`: handed over by another I/O thread (Server::Adopt), already counted.
  // `tls`: the connection's TLS state (server's --tls-cert); its handshake is done
  // when `adopted`, otherwise the reader does it first.
  // `ws`: the connection speaks WebSocket (docs/protocol.md, "WebSocket"); its HTTP
  // upgrade comes first, after the TLS handshake if any.
  Session(asio::ip::tcp::socket socket, IoThread& io, Server& server, bool adopted = false,
          SslPtr tls = nullptr, std::unique_ptr<WsConnection> ws = nullptr);
  ~Session();

  void Start();
  // Starts a connection handed over by another I/O thread right after its HELLO
  // (Server::Adopt): sends WELCOME, then handles `input`, the bytes read after
  // HELLO, before reading more.
  void StartAdopted(std::string_view input, std::chrono::steady_clock::time_point connected_at);
  asio::io_context& context();

  // Window events relayed by the server (on this session's thread).
  void OnCut(uint64_t window);
  // Returns the ops this acknowledged (net/credit.h).
  uint64_t OnDurable(uint64_t window);
  // A writer that used at least half of its credit lately, and its share of the
  // thread's credit budget (announced with CREDIT when it matters).
  bool credit_constrained() const;
  void OfferCredit(uint64_t share);
  // The kernel's smoothed round-trip time of the connection, us (0: unknown).
  uint64_t rtt_us() const;
  // A session of the same source stopped sending: if this one waits to send its
  // WELCOME (the hand-over, docs/protocol.md), check whether it may now.
  void CheckWelcome();
  // Sends a connection-level error, then closes once it is written.
  void Fail(ErrorCode code, std::string message);
  // Stops reading new frames (graceful shutdown, first step).
  void StopReading();
  // A writer's connection (its HELLO named a source).
  bool writer() const { return source_ != 0; }

 private:
  asio::awaitable<void> ReadLoop();
  asio::awaitable<void> WriteLoop();
  asio::awaitable<void> Watchdog();
  // The TLS handshake; false when it failed (then the connection is closing).
  asio::awaitable<bool> AcceptTls();
  // Writes `buffers` through TLS (plain TCP writes them with one asio::async_write).
  asio::awaitable<std::tuple<asio::error_code, size_t>> WriteTls(
      const std::vector<asio::const_buffer>& buffers);

  // Reads what the socket has (through TLS if any) into `into`.
  asio::awaitable<std::tuple<asio::error_code, size_t>> ReadSome(asio::mutable_buffer into);
  // WebSocket: takes `raw` bytes as read (the HTTP upgrade, then frames); false once
  // the connection is closing.
  bool FeedWs(std::string_view raw);
  // WebSocket: moves decoded bytes into the input buffer, as many as fit.
  void TakeWsData();
  // WebSocket: whether something besides messages is waiting to be sent.
  bool WsControlPending() const { return ws_ != nullptr && !ws_->control.empty(); }
  // WebSocket: sets the close frame's code, unless one is set.
  void SetWsClose(WsCloseCode code, std::string reason);

  // Handles the whole frames in the input buffer; stops at a fatal error, and holds
  // the rest (held_) while a WELCOME waits for the hand-over or the output is over
  // its limit (ShouldPause then keeps the reader waiting).
  void ProcessInput();
  // false: the connection is being closed.
  bool HandleFrame(const Frame& frame);
  bool HandleHello(std::string_view payload);
  // True once no earlier session of the source can send and everything they sent is
  // durable; otherwise asks for a window so that it becomes durable.
  bool HandoverDone();
  void SendWelcome();
  // Tells the server this session hands no more ops to the engine (once).
  void StopConsuming();
  bool HandleWrite(FrameType type, std::string_view payload);
  bool HandleQuery(std::string_view payload);
  bool HandleSubscribe(std::string_view payload);
  bool HandleUnsubscribe(std::string_view payload);
  void OpError(uint64_t seq_or_req, ErrorCode code, std::string message);
  // The schema a frame names; null after an unknown_schema ERROR for `seq_or_req`
  // (its message starts with `context`).
  const engine::Schema* SchemaOrError(uint64_t seq_or_req, uint64_t schema_id,
                                      std::string_view context);
  // Whether `id` is a valid entity id; false after a bad_id ERROR for `seq_or_req`.
  bool IdOrError(uint64_t seq_or_req, std::string_view id);
  void Close();
  void Kick();
  void Resume();
  bool ShouldPause() const;
  // Largest frame accepted now: --max-frame, or far less before HELLO.
  uint32_t FrameLimit() const;

  asio::ip::tcp::socket socket_;
  SslPtr tls_;                        // null: plain TCP
  bool tls_ready_ = false;            // the TLS handshake is done
  std::string tls_out_;               // TLS: the pieces of one write gathered into one buffer
  std::unique_ptr<WsConnection> ws_;  // null: the protocol's frames go bare
  std::string ws_out_;                // WebSocket: control frames and a message's header
  IoThread& io_;
  Server& server_;
  asio::steady_timer write_signal_;
  asio::steady_timer resume_signal_;
  asio::steady_timer drain_signal_;  // the writer waits on it for the peer's close
  asio::steady_timer watchdog_;

  std::string in_;
  size_t in_len_ = 0;
  std::string out_;
  std::string writing_;
  bool writer_idle_ = false;
  bool reader_paused_ = false;
  bool closing_ = false;
  bool reading_stopped_ = false;
  bool writer_done_ = false;
  bool hand_off_ = false;    // HELLO without a source: move to the read thread
  bool handed_off_ = false;  // moved to the read thread after HELLO: this object only ends
  // Gives the socket to the read thread (Server::Adopt); false when it cannot.
  bool HandOff();
  bool peer_closed_ = false;  // the reader saw the end of the input
  std::chrono::steady_clock::time_point connected_at_;
  std::chrono::steady_clock::time_point last_activity_;
  uint64_t now_us_ = 0;       // receive time of the input being processed, for ts = 0
  uint64_t now_mono_us_ = 0;  // the same on the monotonic clock

  bool hello_done_ = false;
  bool welcome_pending_ = false;  // HELLO taken, WELCOME waits for the hand-over
  bool held_ = false;             // whole frames were left in in_ by a pause
  uint32_t source_ = 0;           // 0: not a writer
  bool consuming_ = false;        // counted by Server::ClaimSource, not yet stopped
  uint64_t sent_seq_ = 0;         // highest seq handed to the engine
  uint64_t last_seq_ = 0;         // highest seq consumed (applied, duplicate or rejected)
  uint64_t cut_seq_ = 0;          // last_seq_ at the last cut
  uint64_t acked_seq_ = 0;        // highest seq acknowledged
  bool dup_ack_due_ = false;      // a duplicate of an already acknowledged op arrived
  WriterCredit credit_;           // counts the ops consumed and acknowledged
  uint64_t refused_seq_ = 0;      // first op refused for a full disk and not sent again yet
  struct PendingAck {
    uint64_t window;
    uint64_t seq;
    uint64_t ops;  // credit_.consumed() at the cut
  };
  std::deque<PendingAck> pending_acks_;
  struct PendingSync {
    uint64_t window;  // 0 until the next cut assigns one
    uint64_t req;
  };
  std::deque<PendingSync> pending_syncs_;
  engine::QueryResult query_result_;  // reused to keep reads allocation-free
  std::string canonical_;             // a write's values re-encoded (CanonicalizeValues)

  uint64_t lease_ms_ = 0;                 // HELLO's lease: 0 = claims are durable
  std::shared_ptr<FeedSink> sink_;        // subscription output; made at the first SUBSCRIBE
  std::unordered_set<uint64_t> subs_;     // live subscription ids
  std::vector<uint64_t> ended_subs_;      // scratch: subscriptions the server ended
  std::vector<FeedSink::Piece> feeding_;  // pieces being written
};

}  // namespace conv::net

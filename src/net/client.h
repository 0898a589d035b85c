#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/schema.h"
#include "net/messages.h"
#include "net/tls.h"
#include "util/status.h"

namespace conv::net {

// A frame read by the client, owning its bytes.
struct OwnedFrame {
  uint8_t type = 0;
  std::string payload;
};

// A blocking protocol v1 client over one TCP connection: connect and handshake,
// send encoded frames (pipelining is the caller's choice), read frames with a
// timeout, and a few request/response helpers. One thread at a time.
//
// Timeouts: the timeout (Connect's argument, set_timeout) bounds every wait: a
// ReadFrame that gets no whole frame within it fails, and so does a Send that
// makes no progress within it (the server is not reading, for instance because it
// paused reading until this client reads its replies: a client that pipelines
// without reading gets an error instead of a deadlock).
//
// Credit (docs/protocol.md, "Flow control"): a writer connection keeps at most its
// credit of ops unacknowledged. The client counts the ops sent through Send and the
// ACKs and CREDITs read, and Send waits, reading and keeping the frames that arrive
// meanwhile for ReadFrame, until an ACK brings the connection under its credit (at
// most the timeout). Ops handed to one Send go together, so a Send of many ops may
// pass the credit by its own; the server tolerates up to twice the credit and then
// only stops reading. Frames written to fd() directly are not counted.
//
// Several servers (ClientOptions::servers: an owner and its standbys, or read
// replicas): Connect tries them in order, following not_owner answers, and goes on
// trying the list for ClientOptions::retry_for before it fails with every address
// tried and why each failed. With ClientOptions::reconnect, a connection lost while
// in use (the server died or was deposed) is replaced the same way, the owner a
// not_owner ERROR named first, and every write op sent and not acknowledged is sent
// again on the new connection, unchanged and in order: the server's seq
// de-duplication applies each once and acknowledges the ones it already had. A
// request (Query, Stats, Sync) waiting for its reply is sent again too; a
// subscription is not renewed (reconnects() tells the caller it is gone).
//
// Request ids: ERROR carries an op's seq or a request's req in the same field
// (docs/protocol.md), so the ids Query, Stats and Sync choose are above every
// number any frame sent through Send so far has carried (op seq, req, sub). An
// ERROR carrying such an id can only be that request's; ERRORs for ops are
// skipped like the other frames in between. Frames written to fd() directly are not
// seen and may collide.
// How Client::Connect reaches a server; see "Several servers" above.
struct ClientOptions {
  // HOST:PORT addresses, tried in this order (ParseAddressList reads "a:1,b:2").
  std::vector<std::string> servers;
  // Bounds each wait: a connection attempt, a reply, room to send, credit.
  std::chrono::milliseconds timeout{5000};
  // TLS (MakeTlsClientContext): every server's certificate must name its host.
  SslCtxPtr tls;
  // How long Connect (and a reconnect) goes on trying the list, with a pause between
  // rounds that grows from 50 ms to 500 ms; 0: one round.
  std::chrono::milliseconds retry_for{0};
  // Replace a connection lost while in use and resend what is not acknowledged.
  bool reconnect = false;
};

class Client {
 public:
  // The largest frame (its declared length) the client accepts unless told
  // otherwise. Replies to writes and requests of the default --max-frame stay far
  // below it; a RESULT with the claims of many large records may not.
  static constexpr uint32_t kDefaultMaxFrame = 64u << 20;
  static constexpr int kMaxOwnerRedirects = 3;

  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects to HOST:PORT, sends `hello` and waits for WELCOME. An ERROR instead of
  // WELCOME becomes a failed Result carrying the server's code and message. A
  // writer's HELLO refused with `not_owner` (a read replica) is sent again to the
  // owner it names, following at most kMaxOwnerRedirects such answers. With
  // `tls` (MakeTlsClientContext) the connection speaks TLS, and the server's
  // certificate must name HOST.
  // `server` is one HOST:PORT or a comma-separated list of them (ParseAddressList),
  // tried in order once (retry_for 0, no reconnect).
  static util::Result<std::unique_ptr<Client>> Connect(
      const std::string& server, const Hello& hello,
      std::chrono::milliseconds timeout = std::chrono::seconds(5), const SslCtxPtr& tls = nullptr);
  // Connects to the first of options.servers that takes `hello` (see "Several
  // servers"). Fails when none did within options.retry_for, naming each address
  // tried (those of the list, and owners that not_owner answers named) and its last
  // error; at once when a server refuses the HELLO for another reason than not_owner,
  // shutting_down or overloaded (a wrong token is wrong everywhere).
  static util::Result<std::unique_ptr<Client>> Connect(const ClientOptions& options,
                                                       const Hello& hello);

  const Welcome& welcome() const { return welcome_; }
  const engine::Schema* FindSchema(std::string_view name) const;
  const engine::Schema* FindSchema(uint64_t id) const;

  // Writes all of `bytes` (one or more frames; a frame may be split over calls).
  // Fails when no byte could be written for the timeout, or the connection failed;
  // some of `bytes` may have been sent then.
  util::Status Send(std::string_view bytes);
  // The next frame; fails on timeout, a closed connection or a malformed stream (a
  // frame of length 0, or one declaring more than max_frame() bytes: such a frame
  // is refused as soon as its length arrives, never buffered).
  util::Result<OwnedFrame> ReadFrame();
  // Waits up to `wait` for the next frame, for loops that also watch something else
  // (a stop flag): true with *frame set when one arrived; false when `wait` passed or
  // a signal interrupted the wait, which are not errors. Fails when the connection
  // closed (then closed() is true) or the stream is malformed.
  util::Result<bool> TryReadFrame(std::chrono::milliseconds wait, OwnedFrame* frame);
  // True once the server was seen to close the connection (end of stream or reset).
  bool closed() const { return closed_; }
  // True when a whole frame is already buffered (ReadFrame will not block).
  bool HasBufferedFrame() const;
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }
  // The largest frame length (type and payload) ReadFrame accepts; kDefaultMaxFrame
  // unless set.
  void set_max_frame(uint32_t bytes) { max_frame_ = bytes; }
  uint32_t max_frame() const { return max_frame_; }
  int fd() const { return fd_; }
  // The connection's reads and writes (through TLS when it has it), for callers that
  // take the socket over after the handshake.
  Transport& transport() { return transport_; }
  // Hands over bytes read but not yet returned as frames, for callers that take the
  // socket over (transport()) after the handshake.
  std::string TakeBuffered();

  // QUERY and wait for its RESULT (other frames in between are skipped). A server
  // ERROR for the request (see "Request ids" above) becomes a failed Result with its
  // message, as does a connection-level ERROR.
  util::Result<Result> Query(const engine::Schema& schema, std::string_view id, bool with_claims);
  util::Result<StatList> Stats();
  // SYNC and wait for SYNCED: everything sent before is durable.
  util::Status Sync();
  // Sends SUBSCRIBE. What follows (SNAPSHOT, SNAPSHOT_END, NOTIFY, or an ERROR
  // carrying s.sub) is read with ReadFrame / TryReadFrame and decoded by the caller,
  // who has the schema and knows whether previous records were asked for.
  util::Status Subscribe(const net::Subscribe& s);

  // The credit the server announced (WELCOME, then CREDIT frames); 0: not a writer.
  uint64_t credit() const { return credit_; }
  // Ops sent through Send with a seq above the last ACK read.
  uint64_t unacked() const { return unacked_.size(); }
  // False: Send never waits for credit (for tests of what the server does then).
  void set_obey_credit(bool on) { obey_credit_ = on; }

  // The server's ERROR, when the last failure was one (code 0 otherwise).
  uint64_t last_error_code() const { return last_error_code_; }

  // The address of the server this connection is to (after redirects and reconnects).
  const std::string& server() const { return server_; }
  // Connections replaced since Connect (ClientOptions::reconnect).
  uint64_t reconnects() const { return reconnects_; }

 private:
  Client() = default;
  // One connection and HELLO; on an ERROR instead of WELCOME, `*code` is its code and,
  // for not_owner, `*owner` the owner it names.
  static util::Result<std::unique_ptr<Client>> ConnectOnce(const std::string& server,
                                                           const Hello& hello,
                                                           std::chrono::milliseconds timeout,
                                                           const SslCtxPtr& tls, uint64_t* code,
                                                           std::string* owner);
  // Connects as Connect(options) does, trying `first` (an owner a not_owner ERROR
  // named) before the list when it is not empty.
  static util::Result<std::unique_ptr<Client>> ConnectAny(const ClientOptions& options,
                                                          const Hello& hello,
                                                          const std::string& first);
  // Replaces the lost connection (ClientOptions::reconnect) and resends every write
  // op not acknowledged.
  util::Status Reconnect(const std::string& why);
  util::Status ReconnectAndResend(const std::string& why);
  // Whether a failure of the connection is to be met with Reconnect.
  bool reconnecting() const { return options_.reconnect; }
  // The id for the next request: above every number sent so far. Fails only when a
  // frame carried the largest u64.
  util::Result<uint64_t> NextReq();
  // Notes the leading number (seq, req or sub) of each frame in `bytes`, which
  // continue what earlier calls saw.
  void NoteSent(std::string_view bytes);
  // Reads until the reply of type `type` to request `req`; sends `request` again
  // after a reconnect.
  util::Result<OwnedFrame> WaitFor(FrameType type, uint64_t req, std::string_view request);
  enum class ReadOutcome { kFrame, kTimeout, kInterrupted };
  // Reads until a whole frame is buffered (returned in *frame) or `deadline_ns`
  // (monotonic) passes; with `return_on_signal` a signal ends the wait early.
  util::Result<ReadOutcome> ReadUntil(uint64_t deadline_ns, bool return_on_signal,
                                      OwnedFrame* frame);
  util::Result<ReadOutcome> ReadSocket(uint64_t deadline_ns, bool return_on_signal,
                                       OwnedFrame* frame);
  // Notes an ACK or CREDIT frame read.
  void NoteReceived(const OwnedFrame& f);
  // Reads (keeping the frames in held_) until `sending` more ops fit the credit, or
  // nothing is unacknowledged.
  util::Status WaitForCredit(uint64_t sending);
  // The write ops in `bytes` (whole frames; a partial frame counts as one op, as does
  // a send that starts inside a frame).
  uint64_t CountWrites(std::string_view bytes) const;

  int fd_ = -1;
  Transport transport_;
  std::chrono::milliseconds timeout_{5000};
  std::string in_;
  size_t in_pos_ = 0;
  Welcome welcome_;
  uint32_t max_frame_ = kDefaultMaxFrame;
  uint64_t next_req_ = 1;
  uint64_t max_sent_ = 0;  // the largest seq, req or sub sent
  std::string out_head_;   // the head (length, type, first varint) of the frame being sent
  uint64_t out_skip_ = 0;  // bytes of that frame after its head still to come
  uint64_t last_error_code_ = 0;
  bool closed_ = false;
  uint64_t credit_ = 0;
  bool obey_credit_ = true;
  // An op sent and not acknowledged; its frame is kept with ClientOptions::reconnect.
  struct Unacked {
    uint64_t seq = 0;
    std::string frame;
  };
  std::deque<Unacked> unacked_;  // in send order
  ClientOptions options_;        // servers, and how to reconnect
  Hello hello_;                  // sent again by Reconnect
  std::string server_;           // connected to
  std::string redirect_;         // the owner a connection-level not_owner named
  uint64_t reconnects_ = 0;
  bool in_reconnect_ = false;    // no reconnect from inside one
  std::deque<OwnedFrame> held_;  // frames read while waiting for credit
};

}  // namespace conv::net

#pragma once

// The NATS client's handles as owned C++ objects, and the connection both the
// publisher and the reader use. Internal to src/repl.

#include <nats/nats.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "util/status.h"

namespace conv::repl {

struct NatsDeleter {
  void operator()(natsConnection* c) const { natsConnection_Destroy(c); }
  void operator()(jsCtx* j) const { jsCtx_Destroy(j); }
  void operator()(natsMsg* m) const { natsMsg_Destroy(m); }
  void operator()(jsStreamInfo* i) const { jsStreamInfo_Destroy(i); }
  void operator()(natsSubscription* s) const {
    natsSubscription_Unsubscribe(s);
    natsSubscription_Destroy(s);
  }
};
using ConnPtr = std::unique_ptr<natsConnection, NatsDeleter>;
using JsPtr = std::unique_ptr<jsCtx, NatsDeleter>;
using MsgPtr = std::unique_ptr<natsMsg, NatsDeleter>;
using StreamInfoPtr = std::unique_ptr<jsStreamInfo, NatsDeleter>;
using SubPtr = std::unique_ptr<natsSubscription, NatsDeleter>;

// What went wrong, for messages: the status text, and JetStream's code if any.
std::string NatsError(natsStatus s, jsErrCode code = static_cast<jsErrCode>(0));

// Connects to the first reachable server of `urls` (comma-separated); reconnects
// go on forever, 100 ms apart.
util::Result<ConnPtr> Connect(const std::string& urls);
util::Result<JsPtr> JetStream(natsConnection* nc);
// Connect, then the connection's JetStream context (released first: declared last).
struct JetStreamLink {
  ConnPtr nc;
  JsPtr js;
};
util::Result<JetStreamLink> ConnectJetStream(const std::string& urls);

// A message header parsed as a number; false when absent or not a number.
bool HeaderNumber(natsMsg* m, const char* key, uint64_t* out);
// "i/n" of Conv-Part; false when absent or malformed.
bool HeaderPart(natsMsg* m, uint64_t* index, uint64_t* count);

}  // namespace conv::repl

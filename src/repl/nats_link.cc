#include "repl/nats_link.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <vector>

namespace conv::repl {

std::string NatsError(natsStatus s, jsErrCode code) {
  std::string text = natsStatus_GetText(s);
  const char* last = nats_GetLastError(nullptr);
  if (last != nullptr && *last != '\0' && text != last) text = fmt::format("{} ({})", text, last);
  if (code != 0) text += fmt::format(", JetStream error {}", static_cast<int>(code));
  return text;
}

util::Result<ConnPtr> Connect(const std::string& urls) {
  natsOptions* opts = nullptr;
  if (natsStatus s = natsOptions_Create(&opts); s != NATS_OK) {
    return util::Status::Error(fmt::format("cannot set up the NATS client: {}", NatsError(s)));
  }
  std::unique_ptr<natsOptions, void (*)(natsOptions*)> guard(opts, natsOptions_Destroy);
  // Every URL of the list (natsOptions_SetURL takes only one in this client version).
  std::vector<std::string> list;
  for (size_t start = 0; start <= urls.size();) {
    size_t comma = std::min(urls.find(',', start), urls.size());
    std::string url = urls.substr(start, comma - start);
    if (url.empty()) {
      return util::Status::Error(
          fmt::format("'{}': empty URL at offset {} (a list is URL,URL,...)", urls, start));
    }
    list.push_back(std::move(url));
    start = comma + 1;
  }
  std::vector<const char*> servers;
  for (const auto& u : list)
    servers.push_back(u.c_str());
  natsStatus s = natsOptions_SetServers(opts, servers.data(), static_cast<int>(servers.size()));
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 100);
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 2000);
  if (s == NATS_OK) s = natsOptions_SetNoRandomize(opts, false);
  if (s != NATS_OK) {
    return util::Status::Error(fmt::format("'{}': {}", urls, NatsError(s)));
  }
  natsConnection* nc = nullptr;
  s = natsConnection_Connect(&nc, opts);
  if (s != NATS_OK) {
    return util::Status::Error(fmt::format("cannot connect to '{}': {}", urls, NatsError(s)));
  }
  return ConnPtr(nc);
}

util::Result<JsPtr> JetStream(natsConnection* nc) {
  jsCtx* js = nullptr;
  if (natsStatus s = natsConnection_JetStream(&js, nc, nullptr); s != NATS_OK) {
    return util::Status::Error(fmt::format("cannot use JetStream: {}", NatsError(s)));
  }
  return JsPtr(js);
}

util::Result<JetStreamLink> ConnectJetStream(const std::string& urls) {
  auto nc = Connect(urls);
  if (!nc.ok()) return nc.status();
  auto js = JetStream(nc->get());
  if (!js.ok()) return js.status();
  return JetStreamLink{std::move(nc).value(), std::move(js).value()};
}

namespace {

bool ParseU64(std::string_view text, uint64_t* out) {
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && p == text.data() + text.size() && !text.empty();
}

}  // namespace

bool HeaderNumber(natsMsg* m, const char* key, uint64_t* out) {
  const char* v = nullptr;
  if (natsMsgHeader_Get(m, key, &v) != NATS_OK || v == nullptr) return false;
  return ParseU64(v, out);
}

bool HeaderPart(natsMsg* m, uint64_t* index, uint64_t* count) {
  const char* v = nullptr;
  if (natsMsgHeader_Get(m, "Conv-Part", &v) != NATS_OK || v == nullptr) return false;
  std::string_view text(v);
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return false;
  return ParseU64(text.substr(0, slash), index) && ParseU64(text.substr(slash + 1), count) &&
         *index < *count;
}

}  // namespace conv::repl

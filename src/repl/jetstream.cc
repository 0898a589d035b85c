#include "repl/jetstream.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "repl/nats_link.h"
#include "util/clock.h"

namespace conv::repl {

util::Status ValidateOptions(const ReplicationOptions& o) {
  const std::string& n = o.cluster_name;
  if (n.empty() || n.size() > 64) {
    return util::Status::Error(fmt::format("--cluster-name: '{}' must be 1 to 64 characters", n));
  }
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) {
      return util::Status::Error(fmt::format(
          "--cluster-name: '{}' has '{}' at offset {}; only letters, digits, '_' and '-' are "
          "allowed",
          n, c, i));
    }
  }
  if (o.replicas < 1 || o.replicas > 5) {
    return util::Status::Error(
        fmt::format("--replicas: {} is out of range; JetStream keeps 1 to 5", o.replicas));
  }
  if (o.urls.empty()) return util::Status::Error("--replicate: no NATS server URL");
  return util::Status::Ok();
}

std::string StreamName(std::string_view cluster_name) {
  return fmt::format("CONV_{}", cluster_name);
}
std::string LogSubject(std::string_view cluster_name) {
  return fmt::format("conv.{}.log", cluster_name);
}
std::string CheckpointSubject(std::string_view cluster_name) {
  return fmt::format("conv.{}.ckpt", cluster_name);
}

struct JetStreamLog::State {
  ReplicationOptions options;
  util::Logger* log = nullptr;
  std::string stream;
  std::string log_subject;
  std::string ckpt_subject;
  ConnPtr nc;
  JsPtr js;       // the WAL thread's asynchronous publishes
  JsPtr ckpt_js;  // the checkpoint thread's synchronous ones
  size_t chunk = 0;
  uint64_t round_start_ns = 0;  // WAL thread: first Publish of the round (0: none)
  uint64_t round_last_window = 0;
  std::string unsent;  // WAL thread: why a chunk of the round could not be built

  std::mutex mu;
  std::vector<natsMsg*> failed;  // owned: publishes to do again (guarded)
  std::string last_error;        // guarded
  // Lowest stream sequence of each window's chunks, in window order, for the purge
  // after a checkpoint (guarded).
  std::vector<std::pair<uint64_t, uint64_t>> window_seqs;
  ReplicationCounters counters;  // guarded

  ~State() {
    for (natsMsg* m : failed)
      natsMsg_Destroy(m);
  }

  // Called by the client library's thread for every publish ack or failure.
  static void OnAck(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    auto* s = static_cast<State*>(closure);
    std::lock_guard lock(s->mu);
    if (pa != nullptr) {
      uint64_t window = 0;
      if (HeaderNumber(msg, "Conv-Window", &window)) s->NoteSeq(window, pa->Sequence);
      natsMsg_Destroy(msg);
      return;
    }
    s->last_error =
        pae != nullptr
            ? fmt::format("{}{}", NatsError(pae->Err, pae->ErrCode),
                          pae->ErrText != nullptr ? fmt::format(": {}", pae->ErrText) : "")
            : "publish failed";
    s->failed.push_back(msg);  // kept: Confirm publishes it again
  }

  void NoteSeq(uint64_t window, uint64_t seq) {  // under mu
    auto it = std::lower_bound(window_seqs.begin(), window_seqs.end(),
                               std::make_pair(window, uint64_t{0}));
    if (it != window_seqs.end() && it->first == window) {
      it->second = std::min(it->second, seq);
    } else {
      window_seqs.insert(it, {window, seq});
    }
  }

  // Publishes `m` asynchronously; on failure keeps it for the next try.
  void PublishAsync(natsMsg* m) {
    natsStatus st = js_PublishMsgAsync(js.get(), &m, nullptr);
    if (st == NATS_OK) return;
    std::lock_guard lock(mu);
    last_error = NatsError(st);
    failed.push_back(m);
  }
};

namespace {

util::Result<MsgPtr> MakeChunk(const std::string& subject, std::string_view body,
                               const std::string& id, const char* number_header, uint64_t number,
                               size_t part, size_t parts) {
  natsMsg* m = nullptr;
  natsStatus s =
      natsMsg_Create(&m, subject.c_str(), nullptr, body.data(), static_cast<int>(body.size()));
  MsgPtr msg(m);
  std::string number_text = std::to_string(number);
  std::string part_text = fmt::format("{}/{}", part, parts);
  if (s == NATS_OK) s = natsMsgHeader_Set(m, "Nats-Msg-Id", id.c_str());
  if (s == NATS_OK) s = natsMsgHeader_Set(m, number_header, number_text.c_str());
  if (s == NATS_OK) s = natsMsgHeader_Set(m, "Conv-Part", part_text.c_str());
  if (s != NATS_OK)
    return util::Status::Error(fmt::format("cannot build a message: {}", NatsError(s)));
  return msg;
}

size_t Parts(size_t bytes, size_t chunk) {
  return std::max<size_t>(1, (bytes + chunk - 1) / chunk);
}

}  // namespace

util::Result<std::unique_ptr<JetStreamLog>> JetStreamLog::Open(const ReplicationOptions& options,
                                                               util::Logger* log) {
  if (auto st = ValidateOptions(options); !st.ok()) return st;
  auto s = std::make_unique<State>();
  s->options = options;
  s->log = log;
  s->stream = StreamName(options.cluster_name);
  s->log_subject = LogSubject(options.cluster_name);
  s->ckpt_subject = CheckpointSubject(options.cluster_name);
  auto nc = Connect(options.urls);
  if (!nc.ok()) return util::Status::Error(fmt::format("--replicate: {}", nc.message()));
  s->nc = std::move(nc).value();

  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.AckHandler = &State::OnAck;
  jo.PublishAsync.AckHandlerClosure = s.get();
  jo.PublishAsync.MaxPending = 4096;
  jsCtx* js = nullptr;
  if (natsStatus st = natsConnection_JetStream(&js, s->nc.get(), &jo); st != NATS_OK) {
    return util::Status::Error(fmt::format("--replicate: cannot use JetStream: {}", NatsError(st)));
  }
  s->js.reset(js);
  auto ckpt_js = JetStream(s->nc.get());
  if (!ckpt_js.ok()) return util::Status::Error(fmt::format("--replicate: {}", ckpt_js.message()));
  s->ckpt_js = std::move(ckpt_js).value();

  // The stream: created, or its replica count brought to --replicas.
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  const char* subjects[] = {s->log_subject.c_str(), s->ckpt_subject.c_str()};
  cfg.Name = s->stream.c_str();
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 2;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = options.replicas;
  cfg.Duplicates = int64_t{120} * 1'000'000'000;  // resends within 2 min are de-duplicated
  // Tried again until --replicate's confirm timeout: a NATS cluster that is starting
  // may not have its peers for the replicas yet.
  const uint64_t deadline =
      util::MonoNanos() + static_cast<uint64_t>(options.confirm_timeout.count()) * 1'000'000;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus st = NATS_OK;
  for (;;) {
    jerr = static_cast<jsErrCode>(0);
    jsStreamInfo* info = nullptr;
    st = js_AddStream(&info, s->js.get(), &cfg, nullptr, &jerr);
    if (st != NATS_OK && jerr == JSStreamNameExistErr) {
      jsStreamInfo_Destroy(info);
      info = nullptr;
      jerr = static_cast<jsErrCode>(0);
      st = js_UpdateStream(&info, s->js.get(), &cfg, nullptr, &jerr);
    }
    jsStreamInfo_Destroy(info);
    if (st == NATS_OK || util::MonoNanos() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (st != NATS_OK) {
    return util::Status::Error(
        fmt::format("--replicate: cannot create stream {} with {} replicas: {}", s->stream,
                    options.replicas, NatsError(st, jerr)));
  }
  int64_t max_payload = natsConnection_GetMaxPayload(s->nc.get());
  s->chunk = options.max_chunk != 0
                 ? options.max_chunk
                 : static_cast<size_t>(std::max<int64_t>(4096, max_payload - 1024));
  if (log != nullptr) {
    log->Info("replicating to stream {} ({} replicas) on {}, chunks of at most {} bytes", s->stream,
              options.replicas, options.urls, s->chunk);
  }
  return std::unique_ptr<JetStreamLog>(new JetStreamLog(std::move(s)));
}

JetStreamLog::JetStreamLog(std::unique_ptr<State> state) : s_(std::move(state)) {}

JetStreamLog::~JetStreamLog() {
  if (s_ != nullptr && s_->nc != nullptr) natsConnection_FlushTimeout(s_->nc.get(), 1000);
}

void JetStreamLog::Publish(uint64_t window, std::string_view blocks) {
  if (s_->round_start_ns == 0) s_->round_start_ns = util::MonoNanos();
  s_->round_last_window = window;
  size_t parts = Parts(blocks.size(), s_->chunk);
  for (size_t i = 0; i < parts; ++i) {
    std::string_view body = blocks.substr(i * s_->chunk, s_->chunk);
    auto m = MakeChunk(s_->log_subject, body,
                       fmt::format("{}-w{}-{}", s_->options.cluster_name, window, i), "Conv-Window",
                       window, i, parts);
    if (!m.ok()) {  // only when memory runs out: the round must not be acknowledged
      if (s_->unsent.empty()) s_->unsent = fmt::format("window {}: {}", window, m.message());
      continue;
    }
    s_->PublishAsync(m->release());
  }
  std::lock_guard lock(s_->mu);
  ++s_->counters.windows;
  s_->counters.chunks += parts;
  s_->counters.bytes += blocks.size();
}

wal::WriteOutcome JetStreamLog::Confirm() {
  const uint64_t start = util::MonoNanos();
  const uint64_t deadline =
      start + static_cast<uint64_t>(s_->options.confirm_timeout.count()) * 1'000'000;
  if (!s_->unsent.empty()) {
    wal::WriteOutcome failed{wal::WriteErrc::kIo,
                             fmt::format("cannot publish to JetStream: {}", s_->unsent)};
    s_->unsent.clear();
    s_->round_start_ns = 0;
    return failed;
  }
  for (;;) {
    uint64_t now = util::MonoNanos();
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = static_cast<int64_t>(
        std::clamp<uint64_t>((deadline > now ? deadline - now : 0) / 1'000'000, 1, 1000));
    natsStatus st = js_PublishAsyncComplete(s_->js.get(), &po);
    if (st == NATS_TIMEOUT) {
      // No ack within the wait (a server died, a leader is being elected): take the
      // messages back and publish them again; Nats-Msg-Id makes a resend harmless.
      natsMsgList pending;
      if (js_PublishAsyncGetPendingList(&pending, s_->js.get()) == NATS_OK) {
        std::lock_guard lock(s_->mu);
        for (int i = 0; i < pending.Count; ++i) {
          s_->failed.push_back(pending.Msgs[i]);
          pending.Msgs[i] = nullptr;
        }
        natsMsgList_Destroy(&pending);
        s_->last_error = "no publish ack in time";
      }
    }
    std::vector<natsMsg*> retry;
    std::string error;
    {
      std::lock_guard lock(s_->mu);
      retry.swap(s_->failed);
      error = s_->last_error;
    }
    if (st == NATS_OK && retry.empty()) break;
    if (util::MonoNanos() >= deadline) {
      for (natsMsg* m : retry)
        natsMsg_Destroy(m);
      return {
          wal::WriteErrc::kIo,
          fmt::format("JetStream did not confirm window {} within {} ms: {}", s_->round_last_window,
                      s_->options.confirm_timeout.count(), error.empty() ? NatsError(st) : error)};
    }
    if (!retry.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      {
        std::lock_guard lock(s_->mu);
        s_->counters.resends += retry.size();
      }
      for (natsMsg* m : retry)
        s_->PublishAsync(m);
    }
  }
  uint64_t dt = s_->round_start_ns != 0 ? util::MonoNanos() - s_->round_start_ns : 0;
  std::lock_guard lock(s_->mu);
  ++s_->counters.rounds;
  s_->counters.ack_ns += dt;
  s_->counters.ack_max_ns = std::max(s_->counters.ack_max_ns, dt);
  s_->counters.last_window = std::max(s_->counters.last_window, s_->round_last_window);
  s_->round_start_ns = 0;
  s_->last_error.clear();
  return {};
}

util::Status JetStreamLog::PublishCheckpoint(uint64_t window, const std::string& path) {
  std::string data;
  {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return util::Status::Error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
    }
    char buf[1 << 16];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        ::close(fd);
        return util::Status::Error(fmt::format("cannot read '{}': {}", path, std::strerror(err)));
      }
      if (n == 0) break;
      data.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
  }
  const uint64_t deadline =
      util::MonoNanos() + static_cast<uint64_t>(s_->options.confirm_timeout.count()) * 1'000'000;
  size_t parts = Parts(data.size(), s_->chunk);
  uint64_t first_seq = 0;
  for (size_t i = 0; i < parts; ++i) {
    std::string id = fmt::format("{}-c{}-{}", s_->options.cluster_name, window, i);
    for (;;) {
      auto m = MakeChunk(s_->ckpt_subject, std::string_view(data).substr(i * s_->chunk, s_->chunk),
                         id, "Conv-Checkpoint", window, i, parts);
      if (!m.ok()) return m.status();
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MaxWait = 2000;
      jsPubAck* pa = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      natsStatus st = js_PublishMsg(&pa, s_->ckpt_js.get(), m->get(), &po, &jerr);
      if (st == NATS_OK) {
        if (i == 0) first_seq = pa->Sequence;
        jsPubAck_Destroy(pa);
        break;
      }
      if (util::MonoNanos() >= deadline) {
        return util::Status::Error(fmt::format("chunk {} of {} not confirmed within {} ms: {}", i,
                                               parts, s_->options.confirm_timeout.count(),
                                               NatsError(st, jerr)));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  // Everything older than the oldest chunk of a window after the checkpoint, and
  // than the checkpoint itself, is replaced by it: windows up to `window` and older
  // checkpoints.
  uint64_t below = first_seq;
  {
    std::lock_guard lock(s_->mu);
    auto it = std::upper_bound(s_->window_seqs.begin(), s_->window_seqs.end(),
                               std::make_pair(window, UINT64_MAX));
    for (auto j = it; j != s_->window_seqs.end(); ++j)
      below = std::min(below, j->second);
    s_->window_seqs.erase(s_->window_seqs.begin(), it);
    ++s_->counters.checkpoints;
    s_->counters.checkpoint_window = window;
  }
  // Nothing older than `below` left: no purge (nats-server 2.9 purges everything
  // when asked to purge below its first sequence).
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsStreamInfo* info = nullptr;
  natsStatus info_st =
      js_GetStreamInfo(&info, s_->ckpt_js.get(), s_->stream.c_str(), nullptr, &jerr);
  StreamInfoPtr info_guard(info);
  if (info_st != NATS_OK) {
    return util::Status::Error(
        fmt::format("cannot read stream {}: {}", s_->stream, NatsError(info_st, jerr)));
  }
  if (below <= info->State.FirstSeq) return util::Status::Ok();
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Stream.Purge.Sequence = below;
  jerr = static_cast<jsErrCode>(0);
  if (natsStatus st = js_PurgeStream(s_->ckpt_js.get(), s_->stream.c_str(), &jo, &jerr);
      st != NATS_OK) {
    return util::Status::Error(fmt::format("cannot purge stream {} below sequence {}: {}",
                                           s_->stream, below, NatsError(st, jerr)));
  }
  std::lock_guard lock(s_->mu);
  s_->counters.purged_below = below;
  return util::Status::Ok();
}

util::Result<uint64_t> JetStreamLog::LastReplicatedWindow() {
  uint64_t newest = 0;
  for (const auto& [subject, header] : {std::pair{s_->log_subject, "Conv-Window"},
                                        std::pair{s_->ckpt_subject, "Conv-Checkpoint"}}) {
    natsMsg* m = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus st =
        js_GetLastMsg(&m, s_->ckpt_js.get(), s_->stream.c_str(), subject.c_str(), nullptr, &jerr);
    MsgPtr guard(m);
    if (st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) continue;
    if (st != NATS_OK) {
      return util::Status::Error(
          fmt::format("cannot read the last message of {}: {}", subject, NatsError(st, jerr)));
    }
    uint64_t w = 0;
    if (!HeaderNumber(m, header, &w)) {
      return util::Status::Error(
          fmt::format("the last message of {} has no valid {} header", subject, header));
    }
    newest = std::max(newest, w);
  }
  return newest;
}

ReplicationCounters JetStreamLog::counters() const {
  std::lock_guard lock(s_->mu);
  return s_->counters;
}

}  // namespace conv::repl

#include "repl/jetstream.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "repl/compression.h"
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
std::string EpochSubject(std::string_view cluster_name) {
  return fmt::format("conv.{}.epoch", cluster_name);
}

namespace {
constexpr const char* kExpectedLastSeq = "Nats-Expected-Last-Sequence";
// A checkpoint's chunks are at most this big (a window's take the server's max
// payload): each holds up the windows behind it for one JetStream round.
constexpr size_t kCheckpointChunk = 256 * 1024;

// The sequence `m` must follow in the stream (0: none, an empty stream).
void SetExpected(natsMsg* m, uint64_t last_seq) {
  if (last_seq != 0) natsMsgHeader_Set(m, kExpectedLastSeq, std::to_string(last_seq).c_str());
}
uint64_t Expected(natsMsg* m) {
  uint64_t v = 0;
  HeaderNumber(m, kExpectedLastSeq, &v);
  return v;
}
}  // namespace

struct JetStreamLog::State {
  ReplicationOptions options;
  util::Logger* log = nullptr;
  std::string stream;
  std::string log_subject;
  std::string ckpt_subject;
  std::string epoch_subject;
  ConnPtr nc;
  JsPtr js;        // the WAL thread's asynchronous publishes
  JsPtr ckpt_js;   // the checkpoint thread's synchronous ones
  JsPtr check_js;  // the WAL thread's look at the stream when a publish is refused
  size_t chunk = 0;
  Compressor compressor;  // Publish's: called by one thread at a time (the WAL thread)

  // Every message is numbered (Nats-Expected-Last-Sequence) and sent under this
  // lock, so the stream stores them in the order they were numbered.
  std::mutex publish_mu;
  uint64_t last_seq = 0;  // guarded by publish_mu: the sequence the next must follow
  // The epoch this owner writes in: its own once its marker is in the stream, until
  // then the newest marker's when opened (a restart republishing its own windows).
  std::atomic<uint64_t> epoch{0};
  std::atomic<bool> fenced{false};

  // A window published and not yet returned by a Confirm: which of its chunks were
  // acknowledged (by their Conv-Part index).
  struct Unconfirmed {
    uint64_t window = 0;
    uint64_t published_ns = 0;
    std::vector<bool> acked;
    size_t missing = 0;
  };

  std::mutex mu;
  std::condition_variable cv;           // an ack, a failure, fencing
  std::string fenced_owner;             // guarded
  OwnerCheck owner_check;               // guarded
  bool wrong_seq = false;               // guarded: a publish was refused out of order
  std::vector<natsMsg*> failed;         // owned: publishes to do again (guarded)
  std::string last_error;               // guarded
  std::string unsent;                   // guarded: why a chunk could not be built
  std::deque<Unconfirmed> unconfirmed;  // guarded, in window order
  uint64_t published_through = 0;       // guarded: the newest window published
  // The checkpoint being published (by the checkpoint thread): its chunks' acks.
  struct CheckpointAcks {
    uint64_t window = 0;
    std::vector<bool> acked;
    size_t missing = 0;
    uint64_t first_seq = 0;  // the lowest stream sequence of its chunks
  };
  CheckpointAcks checkpoint;  // guarded
  uint64_t last_ack_ns = 0;   // guarded: when the newest ack came
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
    s->cv.notify_all();
    if (pa != nullptr) {
      uint64_t window = 0;
      uint64_t part = 0;
      uint64_t parts = 0;
      if (HeaderNumber(msg, "Conv-Window", &window)) {
        s->NoteSeq(window, pa->Sequence);
        if (HeaderPart(msg, &part, &parts)) s->NoteAck(window, part);
      } else if (HeaderNumber(msg, "Conv-Checkpoint", &window) && HeaderPart(msg, &part, &parts)) {
        s->NoteCheckpointAck(window, part, pa->Sequence);
      }
      s->last_ack_ns = util::MonoNanos();
      natsMsg_Destroy(msg);
      return;
    }
    if (pae != nullptr && pae->ErrCode == JSStreamWrongLastSequenceErr) s->wrong_seq = true;
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

  // Chunk `part` of `window` is in the stream (a resend's ack may come twice).
  void NoteAck(uint64_t window, uint64_t part) {  // under mu
    auto it = std::lower_bound(unconfirmed.begin(), unconfirmed.end(), window,
                               [](const Unconfirmed& u, uint64_t w) { return u.window < w; });
    if (it == unconfirmed.end() || it->window != window || part >= it->acked.size()) return;
    if (it->acked[part]) return;
    it->acked[part] = true;
    --it->missing;
  }

  void NoteCheckpointAck(uint64_t window, uint64_t part, uint64_t seq) {  // under mu
    CheckpointAcks& c = checkpoint;
    if (window != c.window || part >= c.acked.size() || c.acked[part]) return;
    c.acked[part] = true;
    --c.missing;
    if (c.first_seq == 0 || seq < c.first_seq) c.first_seq = seq;
  }

  // The newest window up to which every published window is in the stream.
  uint64_t AckedThrough() const {  // under mu
    for (const Unconfirmed& u : unconfirmed) {
      if (u.missing != 0) return u.window - 1;
    }
    return published_through;
  }

  void Fence(const std::string& owner) {
    std::lock_guard lock(mu);
    cv.notify_all();
    if (fenced) return;
    fenced_owner = owner;
    fenced = true;
    if (log != nullptr) {
      log->Error("fenced: {} owns cluster {} now; nothing more is acknowledged here",
                 owner.empty() ? "another owner" : owner, options.cluster_name);
    }
  }

  // What a publish refused out of order means (Resync).
  enum class Refusal {
    kFenced,     // another owner wrote: nothing more is confirmed
    kRenumber,   // this owner's own resends came out of order: number them again
    kUndecided,  // the stream or the record could not be read: sent again as numbered,
                 // refused again, asked again
  };

  // After a publish was refused out of order: either another owner wrote (its
  // epoch marker is in the stream, or the owner record names it: this one is
  // fenced), or this owner's own resends came out of order (its numbering starts
  // again from the stream's last sequence). The stream's last sequence is read
  // before looking for a marker, so a marker written after the look is above it,
  // and the next publish is refused again. The caller holds publish_mu.
  Refusal Resync() {
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsStreamInfo* info = nullptr;
    natsStatus st = js_GetStreamInfo(&info, check_js.get(), stream.c_str(), nullptr, &jerr);
    StreamInfoPtr guard(info);
    if (st != NATS_OK) return Refusal::kUndecided;
    OwnerCheck check;
    {
      std::lock_guard lock(mu);
      check = owner_check;
    }
    if (check) {
      auto owner = check();
      // Numbered again only once the record says this one still owns the name: the
      // newest marker is no proof alone, the new owner's first checkpoint purges it.
      if (!owner.ok()) return Refusal::kUndecided;
      if (owner->has_value()) {
        Fence(**owner);
        return Refusal::kFenced;
      }
    }
    natsMsg* m = nullptr;
    jerr = static_cast<jsErrCode>(0);
    st = js_GetLastMsg(&m, check_js.get(), stream.c_str(), epoch_subject.c_str(), nullptr, &jerr);
    MsgPtr marker(m);
    uint64_t marker_epoch = 0;
    if (st == NATS_OK && HeaderNumber(m, "Conv-Epoch", &marker_epoch)) {
      if (marker_epoch > epoch) {
        std::string body(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
        constexpr std::string_view kAddress = "address ";
        Fence(body.rfind(kAddress, 0) == 0 ? body.substr(kAddress.size()) : "");
        return Refusal::kFenced;
      }
    }
    last_seq = info->State.LastSeq;
    std::lock_guard lock(mu);
    ++counters.resyncs;
    return Refusal::kRenumber;
  }

  std::string FencedMessage() {
    std::lock_guard lock(mu);
    return fmt::format("fenced: another owner ({}) wrote to stream {}",
                       fenced_owner.empty() ? "address unknown" : fenced_owner, stream);
  }

  // Publishes `m` asynchronously; on failure keeps it for the next try.
  void PublishAsync(natsMsg* m) {
    natsStatus st = js_PublishMsgAsync(js.get(), &m, nullptr);
    if (st == NATS_OK) return;
    std::lock_guard lock(mu);
    last_error = NatsError(st);
    failed.push_back(m);
    cv.notify_all();
  }

  // After a failed publish, or a second without any ack: publishes again every chunk
  // not in the stream yet, in the order they were numbered (numbered again from the
  // stream's last sequence after a refusal out of order). New publishes wait
  // meanwhile, and the outstanding ones are waited for first (a second; then taken
  // back), so that every chunk not in the stream is among those sent again: none
  // numbered before them can land after them.
  Refusal Recover(bool stalled) {
    if (!stalled) {
      // A server that refuses at once (no responders during an election) is not
      // asked again in a tight loop.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::lock_guard publish_lock(publish_mu);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = stalled ? 1 : 1000;
    if (js_PublishAsyncComplete(js.get(), &po) == NATS_TIMEOUT) {
      // No ack in time (a server died, a leader is being elected): take the messages
      // back and publish them again; Nats-Msg-Id makes a resend harmless.
      natsMsgList pending;
      if (js_PublishAsyncGetPendingList(&pending, js.get()) == NATS_OK) {
        std::lock_guard lock(mu);
        for (int i = 0; i < pending.Count; ++i) {
          failed.push_back(pending.Msgs[i]);
          pending.Msgs[i] = nullptr;
        }
        natsMsgList_Destroy(&pending);
        last_error = "no publish ack in time";
      }
      po.MaxWait = 200;  // acks being handled as the list was taken
      js_PublishAsyncComplete(js.get(), &po);
    }
    std::vector<natsMsg*> retry;
    bool refused = false;
    {
      std::lock_guard lock(mu);
      retry.swap(failed);
      refused = std::exchange(wrong_seq, false);
    }
    // A refusal out of order: another owner's marker (fenced: nothing more is
    // confirmed), or this owner's resends out of order (numbered again below).
    const Refusal refusal = refused ? Resync() : Refusal::kUndecided;
    if (refusal == Refusal::kFenced) {
      for (natsMsg* m : retry)
        natsMsg_Destroy(m);
      return refusal;
    }
    {
      std::lock_guard lock(mu);
      counters.resends += retry.size();
    }
    std::stable_sort(retry.begin(), retry.end(),
                     [](natsMsg* a, natsMsg* b) { return Expected(a) < Expected(b); });
    for (natsMsg* m : retry) {
      if (refusal == Refusal::kRenumber) SetExpected(m, last_seq++);
      PublishAsync(m);
    }
    return refusal;
  }

  enum class Awaited { kDone, kFenced, kTimeout };
  // Waits until `done` (asked under mu) holds, sending again what failed, or what
  // had no ack for a second, meanwhile (Recover); for at most the confirm timeout.
  // On a timeout `error` says what went wrong last.
  template <typename Done>
  Awaited AwaitAcks(Done done, std::string* error) {
    constexpr uint64_t kQuiet = 1'000'000'000;  // no ack for this long: resend
    const uint64_t start = util::MonoNanos();
    const uint64_t deadline =
        start + static_cast<uint64_t>(options.confirm_timeout.count()) * 1'000'000;
    uint64_t quiet_since = start;
    for (;;) {
      bool trouble = false;
      bool stalled = false;
      {
        std::unique_lock lock(mu);
        for (;;) {
          if (fenced) return Awaited::kFenced;
          if (done()) return Awaited::kDone;
          trouble = !failed.empty() || wrong_seq;
          if (trouble) break;
          uint64_t quiet_end = std::max(quiet_since, last_ack_ns) + kQuiet;
          uint64_t now = util::MonoNanos();
          if (now >= deadline) {
            *error = last_error.empty() ? "no publish ack" : last_error;
            return Awaited::kTimeout;
          }
          if (now >= quiet_end) {
            stalled = true;
            break;
          }
          cv.wait_for(lock, std::chrono::nanoseconds(std::min(deadline, quiet_end) - now));
        }
      }
      if (util::MonoNanos() >= deadline) {
        std::lock_guard lock(mu);
        *error = last_error.empty() ? "no publish ack" : last_error;
        return Awaited::kTimeout;
      }
      if (Recover(stalled) == Refusal::kFenced) return Awaited::kFenced;
      quiet_since = util::MonoNanos();
    }
  }
};

namespace {

// `encoding`: kZstd when the chunks are of a compressed frame, else empty.
util::Result<MsgPtr> MakeChunk(const std::string& subject, std::string_view body,
                               const std::string& id, const char* number_header, uint64_t number,
                               size_t part, size_t parts, uint64_t epoch,
                               std::string_view encoding) {
  natsMsg* m = nullptr;
  natsStatus s =
      natsMsg_Create(&m, subject.c_str(), nullptr, body.data(), static_cast<int>(body.size()));
  MsgPtr msg(m);
  std::string number_text = std::to_string(number);
  std::string part_text = fmt::format("{}/{}", part, parts);
  std::string epoch_text = std::to_string(epoch);
  if (s == NATS_OK) s = natsMsgHeader_Set(m, "Nats-Msg-Id", id.c_str());
  if (s == NATS_OK) s = natsMsgHeader_Set(m, number_header, number_text.c_str());
  if (s == NATS_OK) s = natsMsgHeader_Set(m, "Conv-Part", part_text.c_str());
  if (s == NATS_OK) s = natsMsgHeader_Set(m, "Conv-Epoch", epoch_text.c_str());
  if (s == NATS_OK && !encoding.empty()) {
    s = natsMsgHeader_Set(m, kEncodingHeader, std::string(encoding).c_str());
  }
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
  s->epoch_subject = EpochSubject(options.cluster_name);
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
  auto check_js = JetStream(s->nc.get());
  if (!check_js.ok())
    return util::Status::Error(fmt::format("--replicate: {}", check_js.message()));
  s->check_js = std::move(check_js).value();

  // The stream: created, or its replica count brought to --replicas.
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  const char* subjects[] = {s->log_subject.c_str(), s->ckpt_subject.c_str(),
                            s->epoch_subject.c_str()};
  cfg.Name = s->stream.c_str();
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 3;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = options.replicas;
  cfg.Duplicates = int64_t{120} * 1'000'000'000;  // resends within 2 min are de-duplicated
  // Tried again for up to the set-up timeout: a NATS cluster that is starting may
  // not have its peers for the replicas yet.
  const uint64_t deadline =
      util::MonoNanos() + static_cast<uint64_t>(options.setup_timeout.count()) * 1'000'000;
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
    if (st == NATS_OK && info != nullptr) s->last_seq = info->State.LastSeq;
    jsStreamInfo_Destroy(info);
    if (st == NATS_OK || util::MonoNanos() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (st != NATS_OK) {
    return util::Status::Error(
        fmt::format("--replicate: cannot create stream {} with {} replicas: {}", s->stream,
                    options.replicas, NatsError(st, jerr)));
  }
  // The epoch the stream is in: its newest marker's.
  {
    natsMsg* m = nullptr;
    jerr = static_cast<jsErrCode>(0);
    st = js_GetLastMsg(&m, s->check_js.get(), s->stream.c_str(), s->epoch_subject.c_str(), nullptr,
                       &jerr);
    MsgPtr marker(m);
    uint64_t epoch = 0;
    if (st == NATS_OK && HeaderNumber(m, "Conv-Epoch", &epoch)) s->epoch = epoch;
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
  if (s_->fenced) return;  // sends nothing more; Confirm fails
  const std::string_view compressed = s_->compressor.Compress(blocks);
  const std::string_view encoding = compressed.empty() ? "" : kZstd;
  const size_t size = blocks.size();
  if (!compressed.empty()) blocks = compressed;
  size_t parts = Parts(blocks.size(), s_->chunk);
  {
    std::lock_guard lock(s_->mu);
    s_->unconfirmed.push_back({window, util::MonoNanos(), std::vector<bool>(parts), parts});
    s_->published_through = std::max(s_->published_through, window);
    ++s_->counters.windows;
    s_->counters.chunks += parts;
    s_->counters.bytes += size;
    s_->counters.sent_bytes += blocks.size();
  }
  std::lock_guard publish_lock(s_->publish_mu);
  for (size_t i = 0; i < parts; ++i) {
    std::string_view body = blocks.substr(i * s_->chunk, s_->chunk);
    auto m = MakeChunk(
        s_->log_subject, body,
        fmt::format("{}-e{}-w{}-{}", s_->options.cluster_name, s_->epoch.load(), window, i),
        "Conv-Window", window, i, parts, s_->epoch, encoding);
    if (!m.ok()) {  // only when memory runs out: the window must not be acknowledged
      std::lock_guard lock(s_->mu);
      if (s_->unsent.empty()) s_->unsent = fmt::format("window {}: {}", window, m.message());
      continue;
    }
    SetExpected(m->get(), s_->last_seq++);
    s_->PublishAsync(m->release());
  }
}

wal::WriteOutcome JetStreamLog::Confirm() {
  uint64_t through = 0;
  {
    std::lock_guard lock(s_->mu);
    through = s_->published_through;
  }
  return Confirm(through);
}

wal::WriteOutcome JetStreamLog::Confirm(uint64_t through) {
  auto fenced = [&]() -> wal::WriteOutcome { return {wal::WriteErrc::kIo, s_->FencedMessage()}; };
  {
    std::lock_guard lock(s_->mu);
    if (!s_->unsent.empty()) {
      wal::WriteOutcome failed{wal::WriteErrc::kIo,
                               fmt::format("cannot publish to JetStream: {}", s_->unsent)};
      s_->unsent.clear();
      return failed;
    }
  }
  std::string error;
  // Done even when later windows' chunks failed: the next Confirm sends them again.
  switch (s_->AwaitAcks([&] { return s_->AckedThrough() >= through; }, &error)) {
    case State::Awaited::kDone:
      break;
    case State::Awaited::kFenced:
      return fenced();
    case State::Awaited::kTimeout:
      return {wal::WriteErrc::kIo,
              fmt::format("JetStream did not confirm window {} within {} ms: {}", through,
                          s_->options.confirm_timeout.count(), error)};
  }
  std::lock_guard lock(s_->mu);
  uint64_t first_published = 0;
  while (!s_->unconfirmed.empty() && s_->unconfirmed.front().window <= through) {
    if (first_published == 0) first_published = s_->unconfirmed.front().published_ns;
    s_->unconfirmed.pop_front();
  }
  uint64_t dt = first_published != 0 ? util::MonoNanos() - first_published : 0;
  ++s_->counters.rounds;
  s_->counters.ack_ns += dt;
  s_->counters.ack_max_ns = std::max(s_->counters.ack_max_ns, dt);
  s_->counters.last_window = std::max(s_->counters.last_window, through);
  s_->last_error.clear();
  return {};
}

util::Status JetStreamLog::PublishCheckpoint(uint64_t window, const std::string& path) {
  std::string data;
  std::string_view encoding;
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
  if (std::string compressed = Compress(data); !compressed.empty()) {
    data = std::move(compressed);
    encoding = kZstd;
  }
  if (s_->fenced) return util::Status::Error(s_->FencedMessage());
  // Sent one chunk at a time, each after the previous one's ack, in chunks smaller
  // than the windows': the windows published meanwhile wait behind one chunk at most.
  const size_t chunk = std::min(s_->chunk, kCheckpointChunk);
  const size_t parts = Parts(data.size(), chunk);
  uint64_t published_before = 0;  // the newest window published before the checkpoint
  auto fail = [&](State::Awaited awaited, const std::string& error) {
    if (awaited == State::Awaited::kFenced) return util::Status::Error(s_->FencedMessage());
    return util::Status::Error(
        fmt::format("checkpoint {} ({} chunks) not confirmed within {} ms: {}", window, parts,
                    s_->options.confirm_timeout.count(), error));
  };
  for (size_t i = 0; i < parts; ++i) {
    auto m = MakeChunk(
        s_->ckpt_subject, std::string_view(data).substr(i * chunk, chunk),
        fmt::format("{}-e{}-c{}-{}", s_->options.cluster_name, s_->epoch.load(), window, i),
        "Conv-Checkpoint", window, i, parts, s_->epoch, encoding);
    if (!m.ok()) return m.status();
    {
      // Numbered after every window chunk sent before it, and sent like them.
      std::lock_guard publish_lock(s_->publish_mu);
      if (i == 0) {
        std::lock_guard lock(s_->mu);
        published_before = s_->published_through;
        s_->checkpoint = {window, std::vector<bool>(parts), parts, 0};
      }
      SetExpected(m->get(), s_->last_seq++);
      s_->PublishAsync(m->release());
    }
    std::string error;
    auto awaited = s_->AwaitAcks([&] { return s_->checkpoint.acked[i]; }, &error);
    if (awaited != State::Awaited::kDone) return fail(awaited, error);
  }
  // Everything older than the oldest chunk of a window after the checkpoint, and
  // than the checkpoint itself, is replaced by it: windows up to `window` and older
  // checkpoints. The windows published before the checkpoint are in the stream
  // before it, and their acks say where: they are waited for too.
  std::string error;
  auto awaited = s_->AwaitAcks(
      [&] { return s_->checkpoint.missing == 0 && s_->AckedThrough() >= published_before; },
      &error);
  if (awaited != State::Awaited::kDone) return fail(awaited, error);
  uint64_t below = 0;
  {
    std::lock_guard lock(s_->mu);
    below = s_->checkpoint.first_seq;
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

util::Status JetStreamLog::PublishEpochMarker(uint64_t epoch, const std::string& address) {
  natsMsg* raw = nullptr;
  std::string body = fmt::format("address {}", address);
  natsStatus st = natsMsg_Create(&raw, s_->epoch_subject.c_str(), nullptr, body.data(),
                                 static_cast<int>(body.size()));
  MsgPtr m(raw);
  std::string id = fmt::format("{}-e{}", s_->options.cluster_name, epoch);
  std::string epoch_text = std::to_string(epoch);
  if (st == NATS_OK) st = natsMsgHeader_Set(raw, "Nats-Msg-Id", id.c_str());
  if (st == NATS_OK) st = natsMsgHeader_Set(raw, "Conv-Epoch", epoch_text.c_str());
  if (st != NATS_OK) {
    return util::Status::Error(fmt::format("cannot build the epoch marker: {}", NatsError(st)));
  }
  const uint64_t deadline =
      util::MonoNanos() + static_cast<uint64_t>(s_->options.confirm_timeout.count()) * 1'000'000;
  std::lock_guard publish_lock(s_->publish_mu);
  SetExpected(raw, s_->last_seq);
  for (;;) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 2000;
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    st = js_PublishMsg(&pa, s_->ckpt_js.get(), raw, &po, &jerr);
    if (st == NATS_OK) {
      s_->last_seq = pa->Sequence;
      s_->epoch = epoch;
      jsPubAck_Destroy(pa);
      if (s_->log != nullptr) {
        s_->log->Info("epoch {} marker at sequence {} of stream {}", epoch, s_->last_seq,
                      s_->stream);
      }
      return util::Status::Ok();
    }
    if (jerr == JSStreamWrongLastSequenceErr) {
      return util::Status::Error(fmt::format(
          "stream {} was written after sequence {} by another writer (another owner): {}",
          s_->stream, s_->last_seq, NatsError(st, jerr)));
    }
    if (util::MonoNanos() >= deadline) {
      return util::Status::Error(fmt::format("the epoch marker was not confirmed within {} ms: {}",
                                             s_->options.confirm_timeout.count(),
                                             NatsError(st, jerr)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void JetStreamLog::SetOwnerCheck(OwnerCheck check) {
  std::lock_guard lock(s_->mu);
  s_->owner_check = std::move(check);
}

void JetStreamLog::Fence(const std::string& owner) {
  s_->Fence(owner);
}

bool JetStreamLog::fenced() const {
  return s_->fenced;
}

std::string JetStreamLog::fenced_owner() const {
  std::lock_guard lock(s_->mu);
  return s_->fenced_owner;
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

#include "repl/stream_reader.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <vector>

#include "repl/compression.h"
#include "repl/nats_link.h"
#include "util/clock.h"
#include "wal/checkpoint.h"
#include "wal/files.h"
#include "wal/replay.h"

namespace conv::repl {

namespace {

// The most a window's or a checkpoint's compressed chunks may stand for: a frame
// saying more is damaged (its bytes are not allocated).
constexpr size_t kMaxDecodedWindow = size_t{1} << 30;
constexpr size_t kMaxDecodedCheckpoint = size_t{1} << 36;

// The chunks of one window or checkpoint, as they arrive.
struct Pieces {
  std::vector<std::string> parts;
  std::vector<bool> have;
  uint64_t received = 0;
  uint64_t first_seq = 0;  // lowest stream sequence of its chunks
  std::string encoding;    // Conv-Encoding of its chunks (empty: none)
  bool complete() const { return !parts.empty() && received == parts.size(); }
  // The window's blocks or the checkpoint file: the chunks joined, decompressed.
  util::Result<std::string> Join(std::string_view what, size_t max_size) const {
    std::string out;
    for (const auto& p : parts)
      out += p;
    return Decode(encoding, std::move(out), what, max_size);
  }
};

util::Status AddPiece(std::map<uint64_t, Pieces>& into, natsMsg* m, const char* header,
                      uint64_t seq) {
  uint64_t number = 0, index = 0, count = 0;
  if (!HeaderNumber(m, header, &number) || !HeaderPart(m, &index, &count)) {
    return util::Status::Error(
        fmt::format("stream message {} has no valid {} or Conv-Part header", seq, header));
  }
  const char* encoding = nullptr;
  if (natsMsgHeader_Get(m, kEncodingHeader, &encoding) != NATS_OK || encoding == nullptr) {
    encoding = "";
  }
  Pieces& p = into[number];
  if (p.first_seq == 0 || seq < p.first_seq) p.first_seq = seq;
  if (p.parts.empty()) {
    p.parts.resize(count);
    p.have.resize(count);
    p.encoding = encoding;
  } else if (p.parts.size() != count) {
    return util::Status::Error(
        fmt::format("stream message {}: {} {} has {} parts here and {} before", seq, header, number,
                    count, p.parts.size()));
  } else if (p.encoding != encoding) {
    return util::Status::Error(
        fmt::format("stream message {}: {} {} has {} '{}' here and '{}' before", seq, header,
                    number, kEncodingHeader, encoding, p.encoding));
  }
  if (!p.have[index]) {  // a resend that escaped de-duplication is the same bytes
    p.parts[index].assign(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
    p.have[index] = true;
    ++p.received;
  }
  return util::Status::Ok();
}

// Epochs (docs/replication.md, "Fencing"): a marker of a newer epoch than any before
// it starts that epoch. What a deposed owner had not completed by then was never
// acknowledged (torn: dropped), and any chunk of an older epoch after it is a
// deposed owner's that slipped in (skipped). False: `m` is to be skipped.
bool TakeEpoch(natsMsg* m, const std::string& epoch_subject, uint64_t* epoch,
               std::map<uint64_t, Pieces>& pending, std::map<uint64_t, Pieces>* checkpoints) {
  uint64_t e = 0;
  if (epoch_subject == natsMsg_GetSubject(m)) {
    if (HeaderNumber(m, "Conv-Epoch", &e) && e > *epoch) {
      *epoch = e;
      std::erase_if(pending, [](const auto& p) { return !p.second.complete(); });
      if (checkpoints != nullptr) {
        std::erase_if(*checkpoints, [](const auto& p) { return !p.second.complete(); });
      }
    }
    return false;
  }
  HeaderNumber(m, "Conv-Epoch", &e);  // none: written before epochs were marked
  return e >= *epoch;
}

// A cluster that lost a server, or is slow under load, answers once it has elected
// the stream's leader again: a request that timed out is tried again for up to the
// confirm timeout.
template <typename Request>
natsStatus RetryTimeouts(const ReplicationOptions& options, Request request) {
  const uint64_t deadline =
      util::MonoNanos() + static_cast<uint64_t>(options.confirm_timeout.count()) * 1'000'000;
  natsStatus st;
  do {
    st = request();
  } while (st == NATS_TIMEOUT && util::MonoNanos() < deadline);
  return st;
}

// An ordered consumer of the cluster's subjects (log, checkpoints, epoch markers)
// from stream sequence `from_seq` on: the library recreates it on a gap, from where
// it was.
util::Result<SubPtr> FollowStream(const ReplicationOptions& options, jsCtx* js, uint64_t from_seq) {
  const std::string stream = StreamName(options.cluster_name);
  const std::string subject = fmt::format("conv.{}.*", options.cluster_name);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Ordered = true;
  so.Config.DeliverPolicy = js_DeliverByStartSequence;
  so.Config.OptStartSeq = std::max<uint64_t>(from_seq, 1);
  natsSubscription* sub = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  // nats-server up to 2.11 places an ephemeral consumer on any server of the
  // stream's, an offline one too (nats-server#7165: the request then times out), and
  // picks again on each try: short tries, so that a cluster with a server down gets
  // several within the confirm timeout.
  jsOptions jo;
  jsOptions_Init(&jo);
  natsStatus st = RetryTimeouts(options, [&] {
    jerr = static_cast<jsErrCode>(0);
    jo.Wait = jo.Wait == 0 ? 1000 : 2000;
    return js_SubscribeSync(&sub, js, subject.c_str(), &jo, &so, &jerr);
  });
  if (st != NATS_OK) {
    return util::Status::Error(fmt::format("cannot follow {} of stream {} from sequence {}: {}",
                                           subject, stream, from_seq, NatsError(st, jerr)));
  }
  natsSubscription_SetPendingLimits(sub, -1, -1);
  return SubPtr(sub);
}

// A delivered message's stream sequence (0: no metadata).
uint64_t StreamSeq(natsMsg* m) {
  jsMsgMetaData* meta = nullptr;
  uint64_t seq = 0;
  if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
    seq = meta->Sequence.Stream;
    jsMsgMetaData_Destroy(meta);
  }
  return seq;
}

// Where a read of the stream found a sequence missing (expected == 0: none).
struct SeqGap {
  uint64_t expected = 0;
  uint64_t came = 0;
};

// One read of the stream from its first sequence to its last into `windows` and
// `checkpoints`. A gap: a message came with a sequence past the one expected, so the
// stream was purged below it while it was read (its windows are in a checkpoint
// published after the sequences read): nothing read is to be used.
util::Result<SeqGap> CollectStream(const ReplicationOptions& options, JetStreamLink& link,
                                   StreamReadReport* report, std::map<uint64_t, Pieces>& windows,
                                   std::map<uint64_t, Pieces>& checkpoints,
                                   const std::function<void()>& before_messages) {
  const std::string stream = StreamName(options.cluster_name);
  const std::string log_subject = LogSubject(options.cluster_name);
  const std::string epoch_subject = EpochSubject(options.cluster_name);
  jsStreamInfo* info = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus st = RetryTimeouts(options, [&] {
    jerr = static_cast<jsErrCode>(0);
    return js_GetStreamInfo(&info, link.js.get(), stream.c_str(), nullptr, &jerr);
  });
  StreamInfoPtr info_guard(info);
  if (st != NATS_OK) {
    return util::Status::Error(
        fmt::format("cannot read stream {}: {}", stream, NatsError(st, jerr)));
  }
  const uint64_t restarts = report->restarts;
  *report = {};
  report->restarts = restarts;
  report->first_seq = info->State.FirstSeq;
  report->last_seq = info->State.LastSeq;
  report->resume_seq = report->last_seq + 1;
  if (before_messages) before_messages();
  if (report->first_seq == 0 || report->first_seq > report->last_seq) return SeqGap{};
  // Delivered in bursts by an ordered consumer: asking for one message at a time
  // cost a round trip to the stream's leader per message.
  auto sub = FollowStream(options, link.js.get(), report->first_seq);
  if (!sub.ok()) return sub.status();
  // The stream's subjects are all in the consumer's filter and nothing is deleted
  // from it but by a purge: its sequences come one after the other.
  uint64_t expected = report->first_seq;
  for (;;) {
    natsMsg* m = nullptr;
    natsStatus next = natsSubscription_NextMsg(
        &m, sub->get(), static_cast<int64_t>(options.confirm_timeout.count()));
    MsgPtr guard(m);
    if (next != NATS_OK) {
      return util::Status::Error(fmt::format("cannot read stream {} up to sequence {}: {}", stream,
                                             report->last_seq, NatsError(next)));
    }
    const uint64_t seq = StreamSeq(m);
    if (seq != expected) return SeqGap{expected, seq};
    ++expected;
    if (seq > report->last_seq) break;  // published since the read began
    if (TakeEpoch(m, epoch_subject, &report->epoch, windows, &checkpoints)) {
      ++report->messages;
      bool is_log = log_subject == natsMsg_GetSubject(m);
      if (auto s = AddPiece(is_log ? windows : checkpoints, m,
                            is_log ? "Conv-Window" : "Conv-Checkpoint", seq);
          !s.ok()) {
        return s;
      }
    }
    if (seq == report->last_seq) break;
  }
  return SeqGap{};
}

}  // namespace

util::Status ReadReplicatedLog(const ReplicationOptions& options, wal::RecordVisitor& visitor,
                               StreamReadReport* report,
                               const std::function<void()>& before_messages) {
  *report = {};
  auto link = ConnectJetStream(options.urls);
  if (!link.ok()) return link.status();
  const std::string stream = StreamName(options.cluster_name);
  std::map<uint64_t, Pieces> windows, checkpoints;
  // An owner purges the stream after each replicated checkpoint: a read it overtook
  // starts again from the stream's new first sequence, for up to the confirm timeout.
  const uint64_t deadline =
      util::MonoNanos() + static_cast<uint64_t>(options.confirm_timeout.count()) * 1'000'000;
  for (;;) {
    windows.clear();
    checkpoints.clear();
    auto gap = CollectStream(options, *link, report, windows, checkpoints, before_messages);
    if (!gap.ok()) return gap.status();
    if (gap->expected == 0) break;
    ++report->restarts;
    if (util::MonoNanos() >= deadline) {
      return util::Status::Error(fmt::format(
          "cannot read stream {}: purged below sequences not read yet {} times within {} ms "
          "(the last read, from sequence {}, got sequence {} where {} was expected)",
          stream, report->restarts, options.confirm_timeout.count(), report->first_seq, gap->came,
          gap->expected));
    }
  }
  uint64_t from = 0;  // windows up to this are in the checkpoint
  for (auto it = checkpoints.rbegin(); it != checkpoints.rend(); ++it) {
    if (!it->second.complete()) continue;  // being written, or cut by a purge
    uint64_t window = 0;
    const std::string what = fmt::format("checkpoint {} of stream {}", it->first, stream);
    auto image = it->second.Join(what, kMaxDecodedCheckpoint);
    if (!image.ok()) return image.status();
    if (auto s =
            wal::ReplayCheckpointImage(*image, fmt::format("{} of stream {}", it->first, stream),
                                       visitor, &window, &report->checkpoint_records);
        !s.ok()) {
      return s;
    }
    report->used_checkpoint = true;
    report->checkpoint_window = from = window;
    report->last_window = window;
    break;
  }
  for (const auto& [window, pieces] : windows) {
    if (window <= from) continue;
    if (!pieces.complete()) {
      // A round is acknowledged only once every chunk of it and of every round
      // before it is stored: from a window with a chunk missing on, nothing was
      // acknowledged (the owner died while publishing), so nothing is replayed.
      report->torn_window = window;
      report->resume_seq = pieces.first_seq;
      return util::Status::Ok();
    }
    uint64_t records = 0;
    auto image =
        pieces.Join(fmt::format("stream {}: window {}", stream, window), kMaxDecodedWindow);
    if (!image.ok()) return image.status();
    if (auto s = wal::ReplayWindowImage(*image, window, visitor, &records); !s.ok()) {
      return util::Status::Error(fmt::format("stream {}: {}", stream, s.message()));
    }
    ++report->windows;
    report->records += records;
    report->last_window = window;
  }
  return util::Status::Ok();
}

namespace {

// The state a log replays to, as records.
class StateImage : public wal::RecordVisitor {
 public:
  void OnClaim(const wal::ClaimRecord& r) override {
    std::string& out = claims_[Key(r.schema, r.id, r.source)];
    out.clear();
    wal::PutClaim(out, r.schema, r.id, r.source, r.mask, r.uniform, r.ts_max,
                  r.uniform ? nullptr : r.ts, r.values);
  }
  void OnRetract(const wal::RetractRecord& r) override {
    claims_.erase(Key(r.schema, r.id, r.source));
  }
  void OnSource(const wal::SourceRecord& r) override {
    uint64_t& m = marks_[std::string(r.source)];
    m = std::max(m, r.seq);
  }
  void OnSchema(const wal::SchemaRecord& r) override {
    std::string& out = schemas_[r.id];
    out.clear();
    wal::PutSchema(out, r.id, r.name, r.n_fields, r.field_names, r.field_types);
  }
  void OnLease(const wal::LeaseRecord& r) override {
    if (r.lease_ms == 0) {
      leases_.erase(std::string(r.source));
    } else {
      leases_[std::string(r.source)] = r.lease_ms;
    }
  }

  util::Status Write(const std::string& dir, uint64_t window) const {
    std::string schemas;
    for (const auto& [id, rec] : schemas_)
      schemas += rec;
    auto cp = wal::CheckpointWriter::Begin(dir, window, schemas, schemas_.size());
    if (!cp.ok()) return cp.status();
    std::string run;
    uint64_t count = 0;
    auto flush = [&]() -> util::Status {
      if (count == 0) return util::Status::Ok();
      auto st = (*cp)->Add(run, count);
      run.clear();
      count = 0;
      return st;
    };
    for (const auto& [key, rec] : claims_) {
      run += rec;
      if (++count == 4096)
        if (auto st = flush(); !st.ok()) return st;
    }
    for (const auto& [source, seq] : marks_) {
      wal::PutSource(run, source, seq);
      ++count;
    }
    for (const auto& [source, lease] : leases_) {
      wal::PutLease(run, source, lease);
      ++count;
    }
    if (auto st = flush(); !st.ok()) return st;
    return (*cp)->Finish();
  }

 private:
  static std::string Key(uint32_t schema, std::string_view id, std::string_view source) {
    return fmt::format("{}\n{}\n{}", schema, id, source);
  }
  std::map<std::string, std::string> claims_;
  std::map<std::string, uint64_t> marks_;
  std::map<uint32_t, std::string> schemas_;
  std::map<std::string, uint64_t> leases_;
};

}  // namespace

util::Status WriteStreamCheckpoint(const ReplicationOptions& options, const std::string& dir,
                                   StreamReadReport* report) {
  auto listing = wal::ListDir(dir);
  if (!listing.ok()) return listing.status();
  if (!listing->segments.empty() || !listing->checkpoints.empty()) {
    return util::Status::Error(
        fmt::format("the data dir '{}' holds a log or a checkpoint already", dir));
  }
  StateImage image;
  if (auto st = ReadReplicatedLog(options, image, report); !st.ok()) return st;
  if (report->last_window == 0) return util::Status::Ok();
  return image.Write(dir, report->last_window);
}

struct StreamTail::State {
  ConnPtr nc;
  JsPtr js;
  SubPtr sub;
  uint64_t next_window = 0;  // the window to hand out next
  uint64_t epoch = 0;        // the newest marker's
  std::string epoch_subject;
  std::string log_subject;
  std::map<uint64_t, Pieces> pending;
};

util::Result<std::unique_ptr<StreamTail>> StreamTail::Open(const ReplicationOptions& options,
                                                           uint64_t from_seq, uint64_t after_window,
                                                           uint64_t epoch) {
  auto s = std::make_unique<State>();
  auto link = ConnectJetStream(options.urls);
  if (!link.ok()) return link.status();
  s->nc = std::move(link->nc);
  s->js = std::move(link->js);
  s->next_window = after_window + 1;
  s->epoch = epoch;
  s->epoch_subject = EpochSubject(options.cluster_name);
  s->log_subject = LogSubject(options.cluster_name);
  // The log and the epoch markers (and the checkpoints, skipped: one filter subject
  // takes all three).
  auto sub = FollowStream(options, s->js.get(), from_seq);
  if (!sub.ok()) return sub.status();
  s->sub = std::move(sub).value();
  return std::unique_ptr<StreamTail>(new StreamTail(std::move(s)));
}

StreamTail::StreamTail(std::unique_ptr<State> s) : s_(std::move(s)) {}
StreamTail::~StreamTail() = default;

util::Result<bool> StreamTail::Next(std::chrono::milliseconds wait, uint64_t* window,
                                    std::string* blocks) {
  const uint64_t deadline = util::MonoNanos() + static_cast<uint64_t>(wait.count()) * 1'000'000;
  for (;;) {
    auto it = s_->pending.find(s_->next_window);
    if (it != s_->pending.end() && it->second.complete()) {
      *window = it->first;
      auto image = it->second.Join(fmt::format("window {}", it->first), kMaxDecodedWindow);
      if (!image.ok()) return image.status();
      *blocks = std::move(image).value();
      s_->pending.erase(s_->pending.begin(), std::next(it));
      ++s_->next_window;
      return true;
    }
    size_t held = 0;
    for (const auto& [w, p] : s_->pending)
      held += p.complete() ? 1 : 0;
    if (held > kMaxHeldWindows) {
      return util::Status::Error(fmt::format(
          "window {} is missing from the stream while {} later windows are complete (purged "
          "before this replica read it)",
          s_->next_window, held));
    }
    uint64_t now = util::MonoNanos();
    if (now >= deadline) return false;
    natsMsg* m = nullptr;
    natsStatus st = natsSubscription_NextMsg(
        &m, s_->sub.get(),
        std::max<int64_t>(1, static_cast<int64_t>((deadline - now) / 1'000'000)));
    MsgPtr guard(m);
    if (st == NATS_TIMEOUT) return false;
    if (st != NATS_OK) {
      return util::Status::Error(fmt::format("cannot read the stream: {}", NatsError(st)));
    }
    const uint64_t seq = StreamSeq(m);
    if (!TakeEpoch(m, s_->epoch_subject, &s_->epoch, s_->pending, nullptr)) continue;
    if (s_->log_subject != natsMsg_GetSubject(m)) {
      // A checkpoint: an owner publishes one at window W once every window up to W is
      // in the stream before it, and purges them after it. One at or after the window
      // wanted next, which has not come whole, replaces windows purged before they
      // were read (or never published: a data dir's checkpoint put in a new stream).
      uint64_t at = 0;
      if (HeaderNumber(m, "Conv-Checkpoint", &at) && at >= s_->next_window) {
        return util::Status::Error(fmt::format(
            "{} not in the stream: checkpoint {} (stream message {}) replaced {} before this "
            "replica read {}",
            at == s_->next_window ? fmt::format("window {} is", at)
                                  : fmt::format("windows {} to {} are", s_->next_window, at),
            at, seq, at == s_->next_window ? "it" : "them", at == s_->next_window ? "it" : "them"));
      }
      continue;
    }
    uint64_t number = 0;
    if (!HeaderNumber(m, "Conv-Window", &number)) {
      return util::Status::Error(
          fmt::format("stream message {} has no valid Conv-Window header", seq));
    }
    newest_seen_ = std::max(newest_seen_, number);
    if (number < s_->next_window) continue;  // handed out already (a resend)
    if (auto added = AddPiece(s_->pending, m, "Conv-Window", seq); !added.ok()) return added;
  }
}

}  // namespace conv::repl

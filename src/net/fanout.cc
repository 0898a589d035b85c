#include "net/fanout.h"

#include <algorithm>

#include <fmt/format.h>

#include "engine/changes.h"
#include "util/clock.h"

namespace conv::net {

namespace {
// Body bytes per SNAPSHOT / merged NOTIFY frame (clients' default frame limit is 1 MiB).
constexpr size_t kMaxBody = 256 * 1024;

// Frame bodies of at most about kMaxBody bytes, each with its number of entries.
class Parts {
 public:
  std::string* body() { return cur_.get(); }
  // One entry was appended to body().
  void Added() {
    ++n_;
    if (cur_->size() >= kMaxBody) Cut();
  }
  std::vector<std::pair<std::shared_ptr<const std::string>, uint64_t>>& Finish() {
    Cut();
    return parts_;
  }

 private:
  void Cut() {
    if (n_ == 0) return;
    parts_.emplace_back(std::move(cur_), n_);
    cur_ = std::make_shared<std::string>();
    n_ = 0;
  }
  std::shared_ptr<std::string> cur_ = std::make_shared<std::string>();
  uint64_t n_ = 0;
  std::vector<std::pair<std::shared_ptr<const std::string>, uint64_t>> parts_;
};
}  // namespace

void FeedSink::Push(std::string header, std::shared_ptr<const std::string> body) {
  Piece p{std::move(header), std::move(body)};
  size_t n = p.bytes();
  bytes_.fetch_add(n, std::memory_order_relaxed);
  total_->fetch_add(n, std::memory_order_relaxed);
  bool wake;
  {
    std::lock_guard lock(mu_);
    pieces_.push_back(std::move(p));
    wake = !wake_pending_;
    wake_pending_ = true;
  }
  if (wake) wake_();
}

void FeedSink::Take(std::vector<Piece>* out) {
  std::lock_guard lock(mu_);
  for (auto& p : pieces_)
    out->push_back(std::move(p));
  pieces_.clear();
  wake_pending_ = false;
}

// A change waiting to be sent: the entity's latest state, merged since the last
// one the subscriber got.
struct Fanout::Held {
  engine::ChangeKind kind = engine::ChangeKind::kUpsert;
  uint64_t changed_mask = 0;
  uint64_t ts = 0;
  uint64_t mask = 0;
  std::string values;
  bool had_prev = false;
  uint64_t prev_mask = 0;
  std::string prev_values;
};

struct Fanout::Sub {
  std::shared_ptr<FeedSink> sink;
  net::Subscribe req;
  const engine::Schema* schema = nullptr;
  uint64_t interval_us = 0;
  bool include_prev = false;

  bool started = false;  // the boundary was reached: start_window is set
  uint64_t start_window = 0;
  bool live = false;  // SNAPSHOT_END sent
  bool reset = false;
  uint64_t total = 0;
  std::vector<std::shared_ptr<engine::FeedWalk>> walks;
  std::deque<std::string> chunks;  // taken from the walks, not sent yet
  std::shared_ptr<std::atomic<bool>> progress_pending = std::make_shared<std::atomic<bool>>(false);

  bool conflating = false;
  struct IdHash {
    using is_transparent = void;
    size_t operator()(std::string_view id) const { return std::hash<std::string_view>{}(id); }
  };
  std::unordered_map<std::string, Held, IdHash, std::equal_to<>> held;
  uint64_t held_window = 0;       // newest window merged into held
  uint64_t delivered_window = 0;  // everything up to it is out
  uint64_t next_flush_us = 0;     // interval subscriptions
  uint64_t stalled_since_us = 0;  // snapshot waiting for the sink to drain since (0: not)
  bool removed = false;

  bool direct() const { return live && !conflating && interval_us == 0; }
};

Fanout::Fanout(engine::Engine& engine, size_t backlog_limit, std::chrono::microseconds stall_limit)
    : engine_(engine),
      limit_(backlog_limit),
      stall_limit_us_(static_cast<uint64_t>(stall_limit.count())) {}

Fanout::~Fanout() {
  Stop();
}

void Fanout::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Fanout::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  for (auto& s : subs_) {
    for (auto& w : s->walks)
      w->cancelled = true;
  }
  subs_.clear();
}

void Fanout::Post(std::function<void()> f) {
  std::lock_guard lock(mu_);
  events_.push_back(std::move(f));
  cv_.notify_all();
}

util::Histogram Fanout::LagMicros() const {
  std::lock_guard lock(lag_mu_);
  return lag_us_;
}

util::Histogram Fanout::DelayMicros() const {
  std::lock_guard lock(lag_mu_);
  return delay_us_;
}

void Fanout::Run() {
  for (;;) {
    std::deque<std::function<void()>> events;
    {
      std::unique_lock lock(mu_);
      uint64_t due = NextDue();
      auto ready = [&] { return stop_ || !events_.empty(); };
      if (due == 0) {
        cv_.wait(lock, ready);
      } else {
        uint64_t now = util::MonoNanos() / 1000;
        if (due > now) cv_.wait_for(lock, std::chrono::microseconds(due - now), ready);
      }
      if (stop_) return;
      events.swap(events_);
    }
    for (auto& e : events)
      e();
    FlushDue();
    EndStalled();
  }
}

void Fanout::Subscribe(std::shared_ptr<FeedSink> sink, const net::Subscribe& req) {
  Post([this, sink = std::move(sink), req] {
    auto s = std::make_shared<Sub>();
    s->sink = sink;
    s->req = req;
    s->schema = engine_.schemas().Find(static_cast<uint32_t>(req.schema_id));
    s->interval_us = req.interval_ms * 1000;
    s->include_prev = (req.flags & kSubscribeIncludePrev) != 0;
    subs_.push_back(s);
    counters_.subscribers.fetch_add(1, std::memory_order_relaxed);
    counters_.subscriptions_total.fetch_add(1, std::memory_order_relaxed);
    bool bootstrap = (req.flags & kSubscribeBootstrap) != 0;
    if (req.resume_window == 0) {
      Begin(s, bootstrap, 0, bootstrap);
    } else if (req.resume_window >= engine_.retained_from() &&
               req.resume_window <= engine_.last_window()) {
      Begin(s, true, req.resume_window, false);
    } else {
      // Deletions after that window may be forgotten, or the window is not one of
      // this server's: only the full state is safe.
      counters_.resets.fetch_add(1, std::memory_order_relaxed);
      Begin(s, true, 0, true);
    }
  });
}

void Fanout::Begin(const SubPtr& s, bool walk, uint64_t since, bool reset) {
  s->reset = reset;
  s->started = false;
  s->total = 0;
  s->walks.clear();
  s->chunks.clear();
  s->held.clear();
  std::weak_ptr<Sub> weak = s;
  if (walk) {
    for (uint32_t p = 0; p < engine_.partition_count(); ++p) {
      auto w = std::make_shared<engine::FeedWalk>();
      w->schema = s->schema->id;
      w->prefix = s->req.id_prefix;
      w->since = since;
      w->on_progress = [this, weak, pending = s->progress_pending] {
        if (pending->exchange(true)) return;
        Post([this, weak] {
          if (auto sub = weak.lock(); sub && !sub->removed) Pump(sub);
        });
      };
      s->walks.push_back(std::move(w));
    }
  }
  engine_.StartFeed(s->schema->id, s->walks, [this, weak](uint64_t w) {
    Post([this, weak, w] {
      auto sub = weak.lock();
      if (!sub || sub->removed) return;
      sub->started = true;
      sub->start_window = w;
      sub->delivered_window = w;
      sub->held_window = w;
      Pump(sub);
    });
  });
}

void Fanout::Unsubscribe(const FeedSink* sink, uint64_t sub) {
  Post([this, sink, sub] {
    for (auto& s : subs_) {
      if (s->sink.get() == sink && s->req.sub == sub) {
        Remove(s);
        break;
      }
    }
  });
}

void Fanout::CloseSink(const FeedSink* sink) {
  Post([this, sink] {
    std::vector<SubPtr> gone;
    for (auto& s : subs_) {
      if (s->sink.get() == sink) gone.push_back(s);
    }
    for (auto& s : gone)
      Remove(s);
  });
}

void Fanout::EndFeed(Sub& s) {
  for (uint32_t p = 0; p < s.walks.size(); ++p) {
    s.walks[p]->cancelled = true;
    engine_.WakePartition(p);
  }
  engine_.StopFeed(s.schema->id);
}

void Fanout::Remove(const SubPtr& s) {
  s->removed = true;
  EndFeed(*s);
  subs_.erase(std::find(subs_.begin(), subs_.end(), s));
  counters_.subscribers.fetch_sub(1, std::memory_order_relaxed);
}

void Fanout::Drained(const FeedSink* sink) {
  Post([this, sink] {
    for (size_t i = 0; i < subs_.size(); ++i) {
      SubPtr s = subs_[i];
      if (s->sink.get() != sink) continue;
      if (!s->live) {
        Pump(s);
      } else if (s->conflating && s->interval_us == 0) {
        if (s->sink->backlog() < limit_ / 2) {
          FlushHeld(*s);
          s->conflating = false;
        } else {
          WantDrain(*s);
        }
      }
    }
  });
}

// Sends what the walks produced while the sink has room; ends the snapshot when all
// of it is out and its window is durable.
void Fanout::Pump(const SubPtr& s) {
  s->progress_pending->store(false);
  if (!s->started || s->live) return;
  // Nothing goes out until every partition reached the window: one of them may yet
  // find the resume too old, and then only a full state will do.
  bool too_old = false;
  for (auto& w : s->walks) {
    std::lock_guard lock(w->mu);
    if (w->too_old) {
      too_old = true;
      break;
    }
    if (!w->started) return;
  }
  if (too_old) {
    // Not under the walk's lock: Begin drops the walks, and with them the mutex.
    EndFeed(*s);
    counters_.resets.fetch_add(1, std::memory_order_relaxed);
    Begin(s, true, 0, true);
    return;
  }
  std::string scratch;
  bool pushed = false;
  while (s->sink->backlog() < limit_) {
    if (s->chunks.empty()) {
      for (uint32_t p = 0; p < s->walks.size(); ++p) {
        size_t before = s->chunks.size();
        s->walks[p]->Take(&s->chunks);
        if (s->chunks.size() > before) engine_.WakePartition(p);
      }
      if (s->chunks.empty()) break;
    }
    std::string chunk = std::move(s->chunks.front());
    s->chunks.pop_front();
    engine::ChangeReader reader(chunk);
    engine::ChangeView c;
    Parts parts;
    while (reader.Next(&c)) {
      uint64_t mask = 0;
      std::string_view values =
          engine::Project(*s->schema, c.mask, c.values, s->req.field_mask, &mask, &scratch);
      AppendSnapshotEntry(*parts.body(), static_cast<uint8_t>(c.kind), c.id, mask, values);
      parts.Added();
    }
    for (auto& [body, n] : parts.Finish()) {
      std::string header;
      EncodeSnapshotHeader(header, s->req.sub, n, body->size());
      s->sink->Push(std::move(header), std::move(body));
      counters_.snapshot_entries.fetch_add(n, std::memory_order_relaxed);
      s->total += n;
      pushed = true;
    }
  }
  if (s->sink->backlog() >= limit_) {
    // Stalled since the last time the subscriber made room for more.
    if (pushed || s->stalled_since_us == 0) s->stalled_since_us = util::MonoNanos() / 1000;
    WantDrain(*s);
  } else {
    s->stalled_since_us = 0;
  }
  MaybeFinish(s);
}

void Fanout::MaybeFinish(const SubPtr& s) {
  if (!s->started || s->live || durable_ < s->start_window || !s->chunks.empty()) return;
  for (auto& w : s->walks) {
    std::lock_guard lock(w->mu);
    if (!w->done || !w->chunks.empty()) return;
  }
  std::string end;
  EncodeSnapshotEnd(end, {s->req.sub, s->total, s->start_window, s->reset});
  s->sink->Push(std::move(end), nullptr);
  if (!s->walks.empty()) counters_.snapshots.fetch_add(1, std::memory_order_relaxed);
  s->walks.clear();
  s->live = true;
  // Changes that arrived meanwhile were held; send them unless the subscriber is
  // already behind or paced.
  if (s->interval_us != 0) return;
  if (s->sink->backlog() < limit_) {
    FlushHeld(*s);
  } else {
    s->conflating = true;
    WantDrain(*s);
    counters_.conflations.fetch_add(1, std::memory_order_relaxed);
  }
}

void Fanout::OnChanges(uint64_t w, std::vector<std::string> changes) {
  Post([this, w, changes = std::move(changes), at = util::MonoNanos()] {
    std::vector<engine::ChangeView> views;
    for (const auto& frag : changes) {
      engine::ChangeReader r(frag);
      engine::ChangeView c;
      while (r.Next(&c))
        views.push_back(c);
    }
    Window(w, views);
    std::lock_guard lock(lag_mu_);
    delay_us_.Record((util::MonoNanos() - at) / 1000);
  });
}

bool Fanout::AppendChange(const Sub& s, const engine::ChangeView& c, std::string* body) {
  if (c.schema != s.schema->id || !c.id.starts_with(s.req.id_prefix)) return false;
  uint64_t fm = s.req.field_mask;
  uint64_t changed = fm != 0 ? c.changed_mask & fm : c.changed_mask;
  if (c.kind == engine::ChangeKind::kUpsert && changed == 0) return false;
  uint64_t mask = 0, prev_mask = 0;
  std::string_view values = engine::Project(*s.schema, c.mask, c.values, fm, &mask, &scratch_);
  std::string_view prev;
  if (s.include_prev && c.had_prev) {
    prev = engine::Project(*s.schema, c.prev_mask, c.prev_values, fm, &prev_mask, &prev_scratch_);
  }
  AppendNotifyChange(*body, static_cast<uint8_t>(c.kind), c.id, changed, c.ts, mask, values,
                     s.include_prev, c.had_prev, prev_mask, prev);
  return true;
}

void Fanout::Window(uint64_t w, const std::vector<engine::ChangeView>& changes) {
  durable_ = w;
  // Direct subscribers by shape; everyone else merges.
  std::unordered_map<std::string, std::vector<Sub*>> shapes;
  for (size_t i = 0; i < subs_.size(); ++i) {
    SubPtr s = subs_[i];
    if (!s->started || w <= s->start_window) continue;
    if (s->direct() && s->sink->backlog() > limit_) {
      s->conflating = true;
      WantDrain(*s);
      counters_.conflations.fetch_add(1, std::memory_order_relaxed);
    }
    if (s->direct()) {
      std::string key;
      key.append(reinterpret_cast<const char*>(&s->schema->id), sizeof(s->schema->id));
      key.append(reinterpret_cast<const char*>(&s->req.field_mask), sizeof(s->req.field_mask));
      key.push_back(s->include_prev ? 1 : 0);
      key.append(s->req.id_prefix);
      shapes[key].push_back(s.get());
      continue;
    }
    for (const auto& c : changes) {
      if (c.schema == s->schema->id && c.id.starts_with(s->req.id_prefix)) Merge(*s, c, w);
    }
    s->held_window = w;
  }
  uint64_t now = util::WallMicros();
  for (auto& [key, subs] : shapes) {
    // The window's body for this shape, encoded once for all its subscribers.
    Parts parts;
    const Sub& shape = *subs.front();
    {
      std::lock_guard lock(lag_mu_);
      for (const auto& c : changes) {
        if (!AppendChange(shape, c, parts.body())) continue;
        parts.Added();
        if (c.ts <= now) lag_us_.Record(now - c.ts);
      }
    }
    const auto& bodies = parts.Finish();
    for (Sub* s : subs) {
      s->held_window = w;
      SendNotify(*s, bodies);
    }
  }
  for (size_t i = 0; i < subs_.size(); ++i) {
    SubPtr s = subs_[i];
    if (s->started && !s->live) MaybeFinish(s);
  }
}

void Fanout::Merge(Sub& s, const engine::ChangeView& c, uint64_t w) {
  auto it = s.held.find(c.id);  // no allocation for an entity already held
  bool fresh = it == s.held.end();
  if (fresh) it = s.held.try_emplace(std::string(c.id)).first;
  Held& h = it->second;
  if (fresh) {
    h.kind = c.kind;
    h.changed_mask = c.changed_mask;
    h.ts = c.ts;
    h.mask = c.mask;
    h.values.assign(c.values);
    h.had_prev = c.had_prev;
    h.prev_mask = c.prev_mask;
    h.prev_values.assign(c.prev_values);
    return;
  }
  counters_.conflated_changes.fetch_add(1, std::memory_order_relaxed);
  h.ts = std::max(h.ts, c.ts);
  if (c.kind == engine::ChangeKind::kDelete) {
    if (!h.had_prev) {  // created and gone since the subscriber last heard
      s.held.erase(it);
      return;
    }
    h.kind = engine::ChangeKind::kDelete;
    h.mask = 0;
    h.values.clear();
    h.changed_mask = h.prev_mask;
    return;
  }
  h.kind = engine::ChangeKind::kUpsert;
  h.mask = c.mask;
  h.values.assign(c.values);
  if (!h.had_prev) {
    h.changed_mask = c.mask;
    return;
  }
  h.changed_mask = engine::ChangedFields(*s.schema, h.prev_mask, h.prev_values, h.mask, h.values);
  if (h.changed_mask == 0) s.held.erase(it);  // back to what the subscriber has
}

// Sends the held changes, merged up to s.held_window.
void Fanout::FlushHeld(Sub& s) {
  Parts parts;
  for (const auto& [id, h] : s.held) {
    engine::ChangeView c;
    c.schema = s.schema->id;
    c.kind = h.kind;
    c.id = id;
    c.changed_mask = h.changed_mask;
    c.ts = h.ts;
    c.mask = h.mask;
    c.values = h.values;
    c.had_prev = h.had_prev;
    c.prev_mask = h.prev_mask;
    c.prev_values = h.prev_values;
    if (AppendChange(s, c, parts.body())) parts.Added();
  }
  s.held.clear();
  SendNotify(s, parts.Finish());
}

void Fanout::SendNotify(
    Sub& s, const std::vector<std::pair<std::shared_ptr<const std::string>, uint64_t>>& bodies) {
  for (size_t i = 0; i < bodies.size(); ++i) {
    const auto& [body, n] = bodies[i];
    uint64_t window = i + 1 == bodies.size() ? s.held_window : s.delivered_window;
    std::string header;
    EncodeNotifyHeader(header, s.req.sub, window, n, body->size());
    s.sink->Push(std::move(header), body);
    counters_.notifications.fetch_add(n, std::memory_order_relaxed);
    counters_.notify_frames.fetch_add(1, std::memory_order_relaxed);
  }
  s.delivered_window = s.held_window;
}

void Fanout::WantDrain(Sub& s) {
  s.sink->drain_wanted = true;
  // The session may have written its last bytes just before the flag was up; then
  // nobody else would say the sink drained.
  if (s.sink->backlog() < limit_ / 2 && s.sink->drain_wanted.exchange(false)) {
    Drained(s.sink.get());
  }
}

uint64_t Fanout::NextDue() const {
  uint64_t due = 0;
  for (const auto& s : subs_) {
    if (!s->live && s->stalled_since_us != 0) {
      uint64_t end = s->stalled_since_us + stall_limit_us_;
      if (due == 0 || end < due) due = std::max<uint64_t>(end, 1);
    }
    if (s->interval_us == 0 || !s->live || s->held.empty()) continue;
    if (s->sink->backlog() >= limit_) continue;  // waits for Drained
    if (due == 0 || s->next_flush_us < due) due = std::max<uint64_t>(s->next_flush_us, 1);
  }
  return due;
}

void Fanout::EndStalled() {
  uint64_t now = util::MonoNanos() / 1000;
  std::vector<SubPtr> stalled;
  for (const auto& s : subs_) {
    if (!s->live && s->stalled_since_us != 0 && now - s->stalled_since_us >= stall_limit_us_) {
      stalled.push_back(s);
    }
  }
  for (const auto& s : stalled) {
    std::string frame;
    EncodeError(frame, {s->req.sub, static_cast<uint64_t>(ErrorCode::kOverloaded),
                        fmt::format("SUBSCRIBE {}: the snapshot was not read for {} ms; it "
                                    "holds the server's state still while it lasts, so it "
                                    "ended: subscribe again",
                                    s->req.sub, stall_limit_us_ / 1000)});
    s->sink->Push(std::move(frame), nullptr);
    counters_.stalled_snapshots.fetch_add(1, std::memory_order_relaxed);
    Remove(s);
  }
}

void Fanout::FlushDue() {
  uint64_t now = util::MonoNanos() / 1000;
  for (auto& s : subs_) {
    if (s->interval_us == 0 || !s->live || s->held.empty() || s->next_flush_us > now) continue;
    if (s->sink->backlog() >= limit_) {
      WantDrain(*s);
      continue;
    }
    FlushHeld(*s);
    s->next_flush_us = now + s->interval_us;
  }
}

}  // namespace conv::net

// The fanout thread: subscriptions, their start at a window boundary, snapshots
// paced by the subscriber, stalled snapshots. Per-window notifications, conflation
// and intervals are in fanout_notify.cc.

#include "net/fanout.h"

#include <algorithm>

#include <fmt/format.h>

#include "engine/changes.h"
#include "net/fanout_internal.h"
#include "util/clock.h"

namespace conv::net {

void FeedSink::Push(std::string header, std::shared_ptr<const std::string> body,
                    uint64_t ends_sub) {
  Piece p{std::move(header), std::move(body)};
  size_t n = p.bytes();
  bytes_.fetch_add(n, std::memory_order_relaxed);
  total_->fetch_add(n, std::memory_order_relaxed);
  bool wake;
  {
    std::lock_guard lock(mu_);
    pieces_.push_back(std::move(p));
    if (ends_sub != 0) ended_.push_back(ends_sub);
    wake = !wake_pending_;
    wake_pending_ = true;
  }
  if (wake) wake_();
}

void FeedSink::Take(std::vector<Piece>* out, std::vector<uint64_t>* ended) {
  std::lock_guard lock(mu_);
  ended->insert(ended->end(), ended_.begin(), ended_.end());
  ended_.clear();
  for (auto& p : pieces_)
    out->push_back(std::move(p));
  pieces_.clear();
  wake_pending_ = false;
}

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
  if (walk) {
    for (const auto& other : subs_) {
      if (other != s && other->sink == s->sink && other->snapshotting()) {
        s->queued = true;
        s->queued_since = since;
        s->queued_reset = reset;
        return;
      }
    }
  }
  s->queued = false;
  s->reset = reset;
  s->started = false;
  s->total = 0;
  s->walks.clear();
  s->chunks.clear();
  ClearHeld(*s);
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
  s->feeding = true;
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
      s->queued = false;  // none of them is to start now
    for (auto& s : gone)
      Remove(s);
  });
}

void Fanout::BeginQueued(const FeedSink* sink) {
  for (size_t i = 0; i < subs_.size(); ++i) {
    if (subs_[i]->sink.get() == sink && subs_[i]->snapshotting()) return;
  }
  for (size_t i = 0; i < subs_.size(); ++i) {
    SubPtr s = subs_[i];
    if (s->sink.get() == sink && s->queued) return Begin(s, true, s->queued_since, s->queued_reset);
  }
}

void Fanout::EndFeed(Sub& s) {
  if (!s.feeding) return;
  s.feeding = false;
  for (uint32_t p = 0; p < s.walks.size(); ++p) {
    s.walks[p]->cancelled = true;
    engine_.WakePartition(p);
  }
  engine_.StopFeed(s.schema->id);
}

void Fanout::Remove(const SubPtr& sub) {
  SubPtr s = sub;  // `sub` may be the element of subs_ erased below
  s->removed = true;
  ClearHeld(*s);
  EndFeed(*s);
  subs_.erase(std::find(subs_.begin(), subs_.end(), s));
  counters_.subscribers.fetch_sub(1, std::memory_order_relaxed);
  BeginQueued(s->sink.get());
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
    BodyParts parts;
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
  BeginQueued(s->sink.get());
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

void Fanout::EndStalled() {
  uint64_t now = util::MonoNanos() / 1000;
  std::vector<SubPtr> stalled;
  for (const auto& s : subs_) {
    if (!s->live && s->stalled_since_us != 0 && now - s->stalled_since_us >= stall_limit_us_) {
      stalled.push_back(s);
    }
  }
  for (const auto& s : stalled) {
    counters_.stalled_snapshots.fetch_add(1, std::memory_order_relaxed);
    EndOverloaded(s, fmt::format("SUBSCRIBE {}: the snapshot was not read for {} ms; it "
                                 "holds the server's state still while it lasts, so it "
                                 "ended: subscribe again",
                                 s->req.sub, stall_limit_us_ / 1000));
  }
}

void Fanout::EndOverloaded(const SubPtr& s, std::string why) {
  std::string frame;
  EncodeError(frame, {s->req.sub, static_cast<uint64_t>(ErrorCode::kOverloaded), std::move(why)});
  s->sink->Push(std::move(frame), nullptr, s->req.sub);
  Remove(s);
}

}  // namespace conv::net

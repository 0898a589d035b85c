// The fanout thread's per-window work: a durable window's changes to every
// subscriber in step (one body per shape), conflation for subscribers over their
// backlog, and interval subscriptions flushed when due.

#include <algorithm>

#include <fmt/format.h>

#include "engine/changes.h"
#include "net/fanout.h"
#include "net/fanout_internal.h"
#include "util/clock.h"

namespace conv::net {

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
  // The sets merged this window (each once, however many subscriptions share it),
  // with how much each grew.
  std::unordered_map<HeldSet*, int64_t> merged;
  // Conflation sets started this window, by shape: the subscriptions that start to
  // conflate together share one, since they hold the same from here on.
  std::unordered_map<std::string, std::shared_ptr<HeldSet>> started;
  std::vector<SubPtr> merging;
  std::vector<SubPtr> overflowed;
  for (size_t i = 0; i < subs_.size(); ++i) {
    SubPtr s = subs_[i];
    if (!s->started || w <= s->start_window) continue;
    std::string key;
    if (s->direct()) {
      key.append(reinterpret_cast<const char*>(&s->schema->id), sizeof(s->schema->id));
      key.append(reinterpret_cast<const char*>(&s->req.field_mask), sizeof(s->req.field_mask));
      key.push_back(s->include_prev ? 1 : 0);
      key.append(s->req.id_prefix);
    }
    // Past its backlog, a subscription starts to conflate at the next epoch window, so
    // that those falling behind together merge once (each frame of the windows
    // between is shared with its shape's other subscribers).
    if (s->direct() && s->sink->backlog() > limit_ && w % kConflationEpoch == 0) {
      s->conflating = true;
      std::shared_ptr<HeldSet>& set = started[key];
      if (set == nullptr) {
        set = std::make_shared<HeldSet>();
      } else {
        counters_.shared_conflations.fetch_add(1, std::memory_order_relaxed);
      }
      s->held = set;  // a direct subscription holds nothing
      WantDrain(*s);
      counters_.conflations.fetch_add(1, std::memory_order_relaxed);
    }
    if (s->direct()) {
      shapes[key].push_back(s.get());
      continue;
    }
    if (auto [it, fresh] = merged.try_emplace(s->held.get(), 0); fresh) {
      for (const auto& c : changes) {
        if (c.schema == s->schema->id && c.id.starts_with(s->req.id_prefix)) {
          it->second += Merge(*s->held, *s->schema, c);
        }
      }
    }
    merging.push_back(s);
  }
  for (const SubPtr& s : merging) {
    CountHeld(*s, merged[s->held.get()]);
    s->held_window = w;
    if (s->sink->held_bytes > limit_ && s->held_bytes > 0) overflowed.push_back(s);
  }
  // A connection's merged changes are bounded like its queued output: the
  // subscriptions that pass the limit end, and resume from what they last read.
  for (const SubPtr& s : overflowed) {
    if (s->sink->held_bytes <= limit_) continue;  // an earlier one's end made room
    counters_.held_overflows.fetch_add(1, std::memory_order_relaxed);
    EndOverloaded(s, fmt::format("SUBSCRIBE {}: the connection fell behind by more than "
                                 "serve --subscriber-backlog ({} bytes) of merged changes, so "
                                 "the subscription ended: subscribe again, resuming from the "
                                 "window of the last NOTIFY or SNAPSHOT_END read",
                                 s->req.sub, limit_));
  }
  uint64_t now = util::WallMicros();
  for (auto& [key, subs] : shapes) {
    // The window's body for this shape, encoded once for all its subscribers.
    BodyParts parts;
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

int64_t Fanout::Merge(HeldSet& held, const engine::Schema& schema, const engine::ChangeView& c) {
  auto it = held.map.find(c.id);  // no allocation for an entity already held
  bool fresh = it == held.map.end();
  if (fresh) it = held.map.try_emplace(std::string(c.id)).first;
  Held& h = it->second;
  const size_t before = fresh ? 0 : h.Bytes(c.id.size());
  // The entry's growth, or its removal (`erase`).
  auto done = [&](bool erase) -> int64_t {
    if (erase) {
      held.map.erase(it);
      return -static_cast<int64_t>(before);
    }
    return static_cast<int64_t>(h.Bytes(c.id.size())) - static_cast<int64_t>(before);
  };
  if (fresh) {
    h.kind = c.kind;
    h.changed_mask = c.changed_mask;
    h.ts = c.ts;
    h.mask = c.mask;
    h.values.assign(c.values);
    h.had_prev = c.had_prev;
    h.prev_mask = c.prev_mask;
    h.prev_values.assign(c.prev_values);
    return done(false);
  }
  counters_.conflated_changes.fetch_add(1, std::memory_order_relaxed);
  h.ts = std::max(h.ts, c.ts);
  if (c.kind == engine::ChangeKind::kDelete) {
    if (!h.had_prev) return done(true);  // created and gone since the subscriber last heard
    h.kind = engine::ChangeKind::kDelete;
    h.mask = 0;
    h.values.clear();
    h.changed_mask = h.prev_mask;
    return done(false);
  }
  h.kind = engine::ChangeKind::kUpsert;
  h.mask = c.mask;
  h.values.assign(c.values);
  if (!h.had_prev) {
    h.changed_mask = c.mask;
    return done(false);
  }
  h.changed_mask = engine::ChangedFields(schema, h.prev_mask, h.prev_values, h.mask, h.values);
  return done(h.changed_mask == 0);  // 0: back to what the subscriber has
}

void Fanout::CountHeld(Sub& s, int64_t delta) {
  s.held_bytes = static_cast<size_t>(static_cast<int64_t>(s.held_bytes) + delta);
  s.sink->held_bytes = static_cast<size_t>(static_cast<int64_t>(s.sink->held_bytes) + delta);
  counters_.held_bytes.fetch_add(static_cast<uint64_t>(delta), std::memory_order_relaxed);
}

void Fanout::ClearHeld(Sub& s) {
  if (s.held.use_count() > 1) {
    s.held = std::make_shared<HeldSet>();  // leaves the set its peers still hold
  } else {
    s.held->map.clear();
  }
  CountHeld(s, -static_cast<int64_t>(s.held_bytes));
}

// Sends the held changes, merged up to s.held_window.
void Fanout::FlushHeld(Sub& s) {
  HeldSet& set = *s.held;
  if (s.held.use_count() > 1 && set.encoded_window == s.held_window && !set.encoded.empty()) {
    auto frames = set.encoded;  // a peer drained in this window: the same frames
    ClearHeld(s);
    SendNotify(s, frames);
    return;
  }
  BodyParts parts;
  for (const auto& [id, h] : set.map) {
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
  auto& frames = parts.Finish();
  if (s.held.use_count() > 1) {
    set.encoded_window = s.held_window;
    set.encoded = frames;
  }
  ClearHeld(s);
  SendNotify(s, frames);
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
    if (s->interval_us == 0 || !s->live || s->held->map.empty()) continue;
    if (s->sink->backlog() >= limit_) continue;  // waits for Drained
    if (due == 0 || s->next_flush_us < due) due = std::max<uint64_t>(s->next_flush_us, 1);
  }
  return due;
}

void Fanout::FlushDue() {
  uint64_t now = util::MonoNanos() / 1000;
  for (auto& s : subs_) {
    if (s->interval_us == 0 || !s->live || s->held->map.empty() || s->next_flush_us > now) continue;
    if (s->sink->backlog() >= limit_) {
      WantDrain(*s);
      continue;
    }
    FlushHeld(*s);
    s->next_flush_us = now + s->interval_us;
  }
}

}  // namespace conv::net

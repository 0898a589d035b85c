// The change feed's side of a partition (feed.h): feed requests applied at a window
// boundary, walks over a consistent cut of one schema's state taken a chunk at a time
// between other work, first-touch capture for walks that have not reached an entity,
// and the tombstones that let a subscriber resume with a delta.

#include <algorithm>
#include <optional>

#include "engine/changes.h"
#include "engine/partition.h"
#include "util/clock.h"

namespace conv::engine {
void Partition::AddFeedRequest(uint64_t window, FeedRequest r) {
  {
    std::lock_guard lock(feed_mu_);
    feed_requests_.emplace_back(window, std::move(r));
    has_feed_requests_.store(true, std::memory_order_release);
  }
  // An idle read replica's partition applies a request of a window it sealed
  // already between two bulks: wake it for that.
  Wake();
}

void Partition::Wake() {
  PartitionMsg wake;
  wake.kind = PartitionMsg::Kind::kControl;
  queue_.enqueue(wake);
}

void Partition::Watch(uint32_t schema, int delta) {
  watch_[schema] = static_cast<uint32_t>(static_cast<int>(watch_[schema]) + delta);
}

void Partition::ApplyFeedRequests(uint64_t window) {
  if (!has_feed_requests_.load(std::memory_order_acquire)) return;
  std::vector<std::pair<uint64_t, FeedRequest>> due;
  {
    std::lock_guard lock(feed_mu_);
    auto keep = std::stable_partition(feed_requests_.begin(), feed_requests_.end(),
                                      [&](const auto& r) { return r.first > window; });
    for (auto it = keep; it != feed_requests_.end(); ++it)
      due.push_back(std::move(*it));
    feed_requests_.erase(keep, feed_requests_.end());
    has_feed_requests_.store(!feed_requests_.empty(), std::memory_order_release);
  }
  for (auto& [w, r] : due) {
    Watch(r.schema, r.watch);
    if (r.walk == nullptr) continue;
    if (r.walk->since != 0 && r.walk->since < retained_from_.load(std::memory_order_relaxed)) {
      {
        std::lock_guard lock(r.walk->mu);
        r.walk->too_old = r.walk->done = r.walk->started = true;
      }
      if (r.walk->on_progress) r.walk->on_progress();
      continue;
    }
    {
      std::lock_guard lock(r.walk->mu);
      r.walk->started = true;
    }
    if (r.walk->on_progress) r.walk->on_progress();
    Freeze();
    ActiveWalk a;
    a.walk = std::move(r.walk);
    walks_.push_back(std::move(a));
  }
}

bool Partition::WalkRunnable() const {
  for (const ActiveWalk& a : walks_) {
    if (a.walk->cancelled.load(std::memory_order_relaxed)) return true;
    std::lock_guard lock(a.walk->mu);
    if (a.walk->buffered < FeedWalk::kMaxBufferedBytes) return true;
  }
  return false;
}

void Partition::AdvanceWalks() {
  for (size_t i = 0; i < walks_.size();) {
    bool room;
    if (walks_[i].walk->cancelled.load(std::memory_order_relaxed)) {
      Unfreeze();
      walks_.erase(walks_.begin() + static_cast<ptrdiff_t>(i));
      continue;
    }
    {
      std::lock_guard lock(walks_[i].walk->mu);
      room = walks_[i].walk->buffered < FeedWalk::kMaxBufferedBytes;
    }
    if (!room) {
      ++i;
    } else if (AdvanceWalk(walks_[i])) {
      walks_.erase(walks_.begin() + static_cast<ptrdiff_t>(i));
    }
  }
}

namespace {
constexpr size_t kWalkChunkBuckets = 4096;
constexpr size_t kWalkChunkBytes = 64 * 1024;

}  // namespace

bool Partition::AdvanceWalk(ActiveWalk& a) {
  FeedWalk& w = *a.walk;
  const EntityMap& map = maps_[w.schema];
  const size_t buckets = map.bucket_count();
  std::string chunk;
  for (size_t n = 0; a.bucket < buckets && n < kWalkChunkBuckets && chunk.size() < kWalkChunkBytes;
       n += kGatherBuckets) {
    if (n != 0) Step(Work::kWalk);
    a.bucket += Gather(map, a.bucket);
    for (const EntityMap::value_type* entry : gathered_) {
      std::string_view id = entry->first;
      if (!id.starts_with(w.prefix)) continue;
      if (!a.captured.empty()) {
        if (auto c = a.captured.find(id); c != a.captured.end()) {
          a.captured.erase(c);  // its state at the walk's window is out already
          continue;
        }
      }
      EmitWalkEntry(w, id, entry->second, &chunk);
    }
  }
  bool done = a.bucket >= buckets;
  {
    std::lock_guard lock(w.mu);
    if (!chunk.empty()) {
      w.buffered += chunk.size();
      w.chunks.push_back(std::move(chunk));
    }
    w.done = done;
  }
  if (w.on_progress) w.on_progress();
  if (done) Unfreeze();
  return done;
}

void Partition::EmitWalkEntry(const FeedWalk& w, std::string_view id, const Entity& e,
                              std::string* out) {
  ChangeView c;
  c.schema = w.schema;
  c.id = id;
  if (e.claims != nullptr) {
    if (w.since != 0 && e.window <= w.since) return;
    c.kind = ChangeKind::kUpsert;
    if (e.claims->next == nullptr) {
      // One claim is the converged state (Converge): no copy of it on the way.
      c.mask = e.claims->mask;
      c.values = e.claims->values();
      c.ts = e.claims->ts_max;
    } else {
      Converge(*schemas_.Find(w.schema), e.claims, sources_, &scratch_);
      c.mask = scratch_.mask;
      c.values = scratch_.values;
      c.ts = scratch_.ts_max;
    }
  } else {
    if (w.since == 0 || e.window <= w.since) return;  // a tombstone the reader cannot hold
    c.kind = ChangeKind::kDelete;
  }
  AppendChange(*out, c);
}

void Partition::Capture(uint32_t schema, std::string_view id, const Entity& e) {
  std::optional<EntityKey> key;  // made once, for the map's bucket() of it
  for (ActiveWalk& a : walks_) {
    FeedWalk& w = *a.walk;
    if (w.schema != schema || !id.starts_with(w.prefix)) continue;
    if (!key) key.emplace(id);
    if (maps_[schema].bucket(*key) < a.bucket) continue;  // visited already
    if (!a.captured.emplace(id).second) continue;
    std::string chunk;
    EmitWalkEntry(w, id, e, &chunk);
    if (chunk.empty()) continue;
    {
      std::lock_guard lock(w.mu);
      w.buffered += chunk.size();
      w.chunks.push_back(std::move(chunk));
    }
    if (w.on_progress) w.on_progress();
  }
}

void Partition::PruneTombstones() {
  if (tombstones_.empty() || !walks_.empty()) return;  // a resume walk may still need them
  uint64_t now = util::WallMicros();
  while (!tombstones_.empty() && tombstones_.front().at_us + retention_us_ <= now) {
    Tombstone t = std::move(tombstones_.front());
    tombstones_.pop_front();
    EntityMap& map = maps_[t.schema];
    auto it = map.find(t.id);
    if (it == map.end()) continue;
    Entity& e = it->second;
    if (e.claims != nullptr || e.dirty != 0) {
      e.tomb_queued = false;  // alive again: nothing to forget
    } else if (e.window != t.window) {
      // Deleted again since it was queued: its retention starts over.
      tombstones_.push_back({t.schema, std::move(t.id), e.window, now});
    } else {
      {
        // A QUERY on an I/O thread may be walking this bucket's chain.
        std::lock_guard lock(mu_);
        map.erase(it);
      }
      if (t.window > retained_from_.load(std::memory_order_relaxed)) {
        retained_from_.store(t.window, std::memory_order_relaxed);
      }
    }
  }
}

void Partition::QueueTombstone(uint32_t schema, std::string_view id, Entity& e, uint64_t now) {
  // One queue entry per entity at most: the queue is bounded by the ids deleted
  // within the retention, however often each is deleted.
  if (e.tomb_queued) return;
  e.tomb_queued = true;
  tombstones_.push_back({schema, std::string(id), e.window, now});
}

}  // namespace conv::engine

#pragma once

// What the engine offers subscriptions (the change feed): a partition-side walk that
// reads a consistent cut of one schema's state between other work, and the request
// that starts watching a schema at a window boundary.
//
// The subscriber side creates one FeedWalk per partition and hands them over at the
// same window boundary W (Engine::StartFeed); each is filled by its partition thread
// with the state as of the end of W, a chunk at a time, while they go on applying
// later windows: an entity first touched after W in a part of the map the walk has
// not reached yet contributes its state at W right before the change (first-touch
// capture), so the walk's result is exactly the state at W.
//
// Entries are encoded as changes.h changes (kind, id, mask, values; no prev).

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace conv::engine {

struct FeedWalk {
  // Walk output bytes one partition may hold unconsumed before it pauses the walk.
  static constexpr size_t kMaxBufferedBytes = 1u << 20;

  // Fixed at creation.
  uint32_t schema = 0;
  std::string prefix;  // only ids starting with it
  // 0: every live entity (bootstrap). Otherwise only entities whose last change is
  // after this window: live ones as upserts, tombstones as deletes (resume).
  uint64_t since = 0;
  // Called on the partition thread after a chunk was added or the walk finished.
  std::function<void()> on_progress;

  // Set by the consumer to drop the walk; the partition stops at its next look.
  std::atomic<bool> cancelled{false};

  // Output, guarded by mu.
  std::mutex mu;
  std::deque<std::string> chunks;
  size_t buffered = 0;   // bytes in chunks
  bool started = false;  // the partition reached the walk's window
  bool done = false;
  // Set with done when `since` is older than this partition's tombstone retention:
  // the delta cannot be told, nothing was walked.
  bool too_old = false;

  // Consumer side: takes every buffered chunk; true when the walk is finished and
  // nothing is left.
  bool Take(std::deque<std::string>* out) {
    std::lock_guard lock(mu);
    for (auto& c : chunks)
      out->push_back(std::move(c));
    chunks.clear();
    buffered = 0;
    return done;
  }
};

// Applied by a partition at the end of the window it names, before anything of the
// next window: adds `watch` to the schema's watch count (changes of watched schemas
// ride with the seals) and starts `walk` if any.
struct FeedRequest {
  uint32_t schema = 0;
  int watch = 0;
  std::shared_ptr<FeedWalk> walk;
};

}  // namespace conv::engine

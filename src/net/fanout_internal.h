#pragma once

// What fanout.cc and fanout_notify.cc share: a subscription's state on the fanout
// thread, a change held for a conflating subscriber, and frame bodies cut to size.
// Fanout thread only.

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/changes.h"
#include "engine/feed.h"
#include "net/fanout.h"

namespace conv::net {

// Body bytes per SNAPSHOT / merged NOTIFY frame (clients' default frame limit is 1 MiB).
constexpr size_t kMaxFeedBody = 256 * 1024;

// Frame bodies of at most about kMaxFeedBody bytes, each with its number of entries.
class BodyParts {
 public:
  std::string* body() { return cur_.get(); }
  // One entry was appended to body().
  void Added() {
    ++n_;
    if (cur_->size() >= kMaxFeedBody) Cut();
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

  // What the entry costs in memory, for the connection's bound: the bytes it holds
  // plus about a hash node and this struct.
  size_t Bytes(size_t id_size) const { return 96 + id_size + values.size() + prev_values.size(); }
};

struct IdHash {
  using is_transparent = void;
  size_t operator()(std::string_view id) const { return std::hash<std::string_view>{}(id); }
};

// Changes merged per entity since a subscription's last NOTIFY: its own, or one set
// shared by the conflating subscriptions of one shape that fell behind in the same
// window (from there on they would merge the very same changes; Fanout::Window).
struct Fanout::HeldSet {
  std::unordered_map<std::string, Held, IdHash, std::equal_to<>> map;
  // A shared set's entries encoded at `encoded_window`: its subscriptions that drain
  // in the same window send the same frames.
  uint64_t encoded_window = 0;
  std::vector<std::pair<std::shared_ptr<const std::string>, uint64_t>> encoded;
};

// Windows at which a subscription over its backlog starts to conflate: those that fall
// behind within the same kConflationEpoch windows share one merge.
constexpr uint64_t kConflationEpoch = 4;

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
  bool feeding = false;  // Engine::StartFeed was called and StopFeed not yet
  // A snapshot waiting for the one its connection is sending to end (one at a time
  // per connection bounds the walks' buffers): what Begin was asked.
  bool queued = false;
  uint64_t queued_since = 0;
  bool queued_reset = false;

  bool conflating = false;
  std::shared_ptr<HeldSet> held = std::make_shared<HeldSet>();
  size_t held_bytes = 0;          // Held::Bytes of every entry; counted in the sink's too
  uint64_t held_window = 0;       // newest window merged into held
  uint64_t delivered_window = 0;  // everything up to it is out
  uint64_t next_flush_us = 0;     // interval subscriptions
  uint64_t stalled_since_us = 0;  // snapshot waiting for the sink to drain since (0: not)
  bool removed = false;

  bool direct() const { return live && !conflating && interval_us == 0; }
  // Its walks are running or their output is not all sent.
  bool snapshotting() const { return !removed && !live && !walks.empty(); }
};

}  // namespace conv::net

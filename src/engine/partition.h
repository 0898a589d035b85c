#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/entity.h"
#include "engine/feed.h"
#include "engine/queues.h"
#include "engine/reads.h"
#include "engine/schema.h"
#include "engine/sources.h"
#include "util/high_water.h"
#include "wal/records.h"

namespace conv::engine {

// Logged changes that recovery hands a partition together (Partition::Restore), in
// log order, their bytes copied so that the log's buffers may go meanwhile.
class RestoreBatch {
 public:
  // `r`'s source name is not kept: `source` is its id.
  void AddClaim(const wal::ClaimRecord& r, uint32_t source, uint64_t window);
  void AddRetract(uint32_t schema, std::string_view id, uint32_t source, uint64_t window);
  size_t size() const { return items_.size(); }

 private:
  friend class Partition;
  struct Item {
    uint64_t window = 0;
    uint64_t mask = 0;
    uint64_t ts_max = 0;
    uint32_t schema = 0;
    uint32_t source = 0;
    uint32_t id_at = 0;  // into bytes_: the id, then the values of a claim
    uint32_t id_len = 0;
    uint32_t values_len = 0;
    uint32_t ts_at = 0;  // into ts_, when !uniform
    bool claim = false;  // else a retraction
    bool uniform = true;
  };
  std::vector<Item> items_;
  std::string bytes_;
  std::vector<uint64_t> ts_;
};

// One shard of the entity space, owned by one thread: only that thread applies ops
// and seals windows. Point reads (Query) come from I/O threads and take `mu_`.
//
// The owner is the only thread that writes the maps, the entities and the claims, so
// its own reads race with nothing and take no lock. It takes `mu_` only around the
// writes a reader could observe: inserting or erasing a map entry (an insert that
// grows the map rehashes it, rarely: the bucket array about doubles), putting in,
// replacing or taking out a claim (claims are never changed in place), and changing
// a map's load factor (Freeze). It holds it for at most kApplyChunk such changes at
// a time: ops in Apply, entities in RetractSource, one erased tombstone in
// PruneTombstones. So a read waits for at most one chunk, and the owner pays one
// uncontended lock per chunk, not per op. Sealing a window, filling a snapshot chunk
// and advancing a walk hold no lock however much they cover: they read the maps and
// claims and write only what a read never looks at (Entity::dirty, window and
// tomb_queued, plain fields apart from Entity::claims, and the owner's own lists).
//
// A window holds exactly what each lane sent before its cut: once lane L's cut of
// window w has arrived, L's later messages wait (parked) until every lane's cut has
// and the window is sealed. So every window is a prefix of each lane's stream, and
// the log never holds a source's op without the ops it sent before.
class Partition {
 public:
  static constexpr size_t kApplyChunk = 64;
  static constexpr size_t kSnapshotChunkBuckets = 1024;
  // Buckets whose entries a walk or a checkpoint chunk gathers before it reads them
  // (Gather).
  static constexpr size_t kGatherBuckets = kApplyChunk;
  // Ops (Apply) and recovered claims (Restore) whose entities are fetched together
  // before they are applied (BucketFetch, PrefetchChains).
  static constexpr size_t kFetchGroup = 16;
  // Entities changed more often than this in one window count as hot (the page's
  // coalescing target is for them).
  static constexpr uint64_t kHotOps = 10;

  // `lanes`: how many lanes send cut markers; a window closes when all have.
  // `log_changes`: whether seals carry the WAL records of the window's changes.
  Partition(uint32_t index, const SchemaSet& schemas, const SourceTable& sources, size_t lanes,
            SealQueue* seals, bool log_changes = false);
  ~Partition();
  Partition(const Partition&) = delete;
  Partition& operator=(const Partition&) = delete;

  PartitionQueue& queue() { return queue_; }
  // Any thread: asks for the next chunk of claims (`req->ready` is signalled when it
  // is filled). Served ahead of queued ops, between two bulks of them, so that a
  // checkpoint does not wait behind a writers' backlog.
  void RequestSnapshot(SnapshotRequest* req);
  // Any thread: applies `r` when window `window` is sealed, before anything of the
  // next window (REQUIRES: `window` is not sealed yet; Engine::StartFeed ensures it).
  void AddFeedRequest(uint64_t window, FeedRequest r);
  // Any thread (a read replica's coalescer, at the boundary of `window`): when
  // window `window` is sealed, first applies `batch` as that window's changes, as
  // ops would (dirty entities, first-touch capture, the seal's entity changes).
  void AddReplicated(uint64_t window, ReplicatedBatch batch);
  // Any thread: a walk's consumer took its output; the walk may go on.
  void Wake();
  uint32_t index() const { return index_; }
  // Before Run(): deleted entities are kept as tombstones this long, for resuming
  // subscribers.
  void set_resume_retention(std::chrono::microseconds d) { retention_us_ = d.count(); }
  // Any thread: the newest window whose tombstones were dropped (resuming from an
  // older window cannot be a delta).
  uint64_t retained_from() const { return retained_from_.load(std::memory_order_relaxed); }

  // The partition thread's body: applies messages until kStop.
  void Run();

  // Any thread.
  bool Query(const Schema& schema, std::string_view id, bool with_claims, QueryResult* out) const;
  PartitionCounters counters() const;
  // Ops handed to this partition and not yet applied (a backpressure signal).
  std::atomic<int64_t>& backlog() { return backlog_; }
  int64_t backlog_now() const { return backlog_.load(std::memory_order_relaxed); }

  // Long work that goes step by step: a source retraction, a seal, a snapshot chunk,
  // a walk chunk.
  enum class Work : uint8_t { kRetractSource, kSeal, kSnapshot, kWalk };
  // Before Run() (tests): `f` is called on the owner thread between steps of long
  // work (every kApplyChunk entities or buckets), with `mu_` not held.
  void set_step_hook(std::function<void(Work)> f) { step_hook_ = std::move(f); }

  // Recovery, before Run(): install a logged claim state, remove a claim (`window`:
  // the log window holding the record; 0 for a checkpoint's), and set every
  // source's seq mark.
  void RestoreClaim(const wal::ClaimRecord& r, uint32_t source, uint64_t window = 0);
  void RestoreRetract(uint32_t schema, std::string_view id, uint32_t source, uint64_t window = 0);
  void RestoreMark(uint32_t source, uint64_t seq);
  // Before Run(): the last window sealed (recovered); a feed request of it or an
  // older window is applied at once.
  void RestoreWindow(uint64_t window) { sealed_window_ = window; }
  // Recovery, before Run(): RestoreClaim / RestoreRetract for each of `batch`'s
  // changes in order, the map buckets of the next few fetched ahead (a replay into a
  // large state is bound by cache misses), on any one thread at a time.
  void Restore(const RestoreBatch& batch);
  // Recovery, before Run(): room for `entities` entities of `schema` without a rehash.
  void ReserveEntities(uint32_t schema, size_t entities);
  // The source's seq mark goes back to 0 (its id was forgotten): on the owner
  // thread (kResetSource), or before Run() in recovery.
  void ForgetMark(uint32_t source);
  // Any thread: claims `source` holds here. Exact once nothing of the source is in
  // flight (what SourceTable::Forget requires).
  uint32_t source_claims(uint32_t source) const {
    return source_claims_[source].load(std::memory_order_relaxed);
  }

 private:
  friend class PartitionDriver;    // the owner-thread calls below, without a thread
  friend class ReplicatedApplier;  // partition_restore.cc

  // Owner thread only: Run() calls them, PartitionDriver in benchmarks and tests.
  void Apply(const OpBatch& batch);
  PartitionSeal Seal(uint64_t window);
  void FillSnapshot(SnapshotRequest* req);
  // Subscriptions on `schema` change by `delta`; seals carry the entity changes
  // (changes.h) of schemas with a positive count.
  void Watch(uint32_t schema, int delta);
  // Retracts every claim `source` holds here, as ops of the open window would.
  void RetractSource(uint32_t source, uint64_t ts);
  // Runs walks until each is finished or paused for its consumer.
  void AdvanceWalks();

  struct StringHash {
    using is_transparent = void;
    // noexcept, with keys that hash without throwing: the map's nodes keep no hash
    // (8 bytes less per entity).
    size_t operator()(const EntityKey& k) const noexcept { return k.Hash(); }
    size_t operator()(std::string_view s) const noexcept { return EntityKey::Hash(s); }
  };
  using EntityMap = std::unordered_map<EntityKey, Entity, StringHash, std::equal_to<>>;
  static_assert(std::is_nothrow_invocable_v<const StringHash&, const EntityKey&>,
                "a throwing hash makes libstdc++ keep each key's hash in its node");

  // An entity changed in the open window. `id` and `entity` point into the schema's
  // map: nodes never move, and a dirty entity is never erased (PruneTombstones skips
  // them), so the seal reaches it without a lookup.
  struct Dirty {
    uint32_t schema = 0;
    const EntityKey* id = nullptr;
    Entity* entity = nullptr;
    struct Source {
      uint32_t source;
      const Claim* claim;  // its claim now (null: retracted); the seal encodes it
    };
    std::vector<Source> sources;  // distinct sources whose claim changed this window
    uint64_t ts_max = 0;          // newest op ts applied to the entity this window
    uint64_t ops = 0;             // ops applied to the entity this window
    bool watched = false;         // the converged state at the window start is kept
    bool had_prev = false;
    ConvergedRecord prev;
  };

  struct ActiveWalk {
    std::shared_ptr<FeedWalk> walk;
    size_t bucket = 0;  // next bucket of the schema's map to visit
    // Ids at or past the cursor whose state at the walk's window was already taken
    // (or found absent) when they were first touched.
    std::unordered_set<std::string, StringHash, std::equal_to<>> captured;
  };
  struct Tombstone {
    uint32_t schema;
    std::string id;
    uint64_t window;
    uint64_t at_us;
  };

  void Handle(const PartitionMsg& m);
  // The replicated records handed in for `window` (AddReplicated), applied.
  void ApplyReplicated(uint64_t window);
  void ServeControl();
  void ApplyFeedRequests(uint64_t window);
  bool WalkRunnable() const;
  // One chunk of `a`; true when the walk is finished.
  bool AdvanceWalk(ActiveWalk& a);
  // Before the first change to `e` after some walks' window: hands its state at
  // that window to the walks that have not visited it yet.
  void Capture(uint32_t schema, std::string_view id, const Entity& e);
  // Puts the entries of up to kGatherBuckets buckets of `map` from `first` on in
  // gathered_ (bucket order), with their claims on their way into the cache, and
  // returns how many buckets that was. A walk over a large map is bound by cache
  // misses, not by the work per entity: each bucket's chain, each node and each claim
  // is somewhere else in memory, and one at a time they stall on each other. Here the
  // group's chains are started first (independent loads the CPU overlaps), then
  // their entries gathered while their claims are prefetched, one link of every list
  // at a time. The caller reads gathered_ before the map changes.
  size_t Gather(const EntityMap& map, size_t first);
  void EmitWalkEntry(const FeedWalk& w, std::string_view id, const Entity& e, std::string* out);
  void PruneTombstones();
  void QueueTombstone(uint32_t schema, std::string_view id, Entity& e, uint64_t now);
  // Rehashing off / on again (counted); each change of the maps' policy takes `mu_`.
  void Freeze();
  void Unfreeze();
  void Step(Work w) {
    if (step_hook_) [[unlikely]]
      step_hook_(w);
  }
  // `found`: the op's entry in its schema's map when it was there before the op's
  // group (Apply), null to look it up here.
  void ApplyOne(const OpView& op, EntityMap::value_type* found);
  // Fetches the nodes heading the buckets of up to kFetchGroup ids: Add computes each
  // id's bucket (hashing, a division: work, no memory), then Fetch starts the loads of
  // every bucket and its head node, far apart in memory and each depending only on
  // its own, so the CPU overlaps the group's (one by one, each lookup waits for its own).
  class BucketFetch {
   public:
    void Add(EntityMap& map, std::string_view id) {
      map_[n_] = &map;
      bucket_[n_++] = map.bucket(EntityKey(id));
    }
    void Fetch() const;
    // The entry of the `i`th id added (`id`), null when its map has none; valid until
    // that map changes.
    EntityMap::value_type* Find(size_t i, std::string_view id) const;

   private:
    EntityMap* map_[kFetchGroup];
    size_t bucket_[kFetchGroup];
    size_t n_ = 0;
  };
  // Starts fetching claim `c`.
  static void PrefetchClaim(const Claim* c);
  // Fetches the rest of the claim lists whose first claims (`cursors`) are on their
  // way (PrefetchClaim), one link of every list at a time: each list's next claim is
  // known once the one before has arrived. The cursors are used up.
  static void PrefetchChains(std::vector<const Claim*>& cursors);
  // The entry of `id` in `map`, made (with no claims) when there is none.
  static EntityMap::iterator FindOrAdd(EntityMap& map, std::string_view id);
  // RestoreClaim on the entity `r` names, found already.
  void RestoreClaimTo(Entity& e, const wal::ClaimRecord& r, uint32_t source, uint64_t window);
  void EncodeChanges(const Dirty& d, PartitionSeal* seal) const;
  // Seal: starts loading what dirty entries i + kSealAhead / 2 and i + kSealAhead need.
  void PrefetchSeal(size_t i) const;
  static constexpr size_t kSealAhead = 8;
  // Before an op changes `e`: makes it dirty for the window (keeping its state at
  // the window start when its schema is watched). After the change: Note().
  // `key` is the entity's key in the schema's map.
  Dirty& Touch(Entity& e, uint32_t schema, const EntityKey& key);
  // `claim`: the source's claim after the change (null: none).
  void Note(Dirty& d, uint32_t source, uint64_t ts, const Claim* claim);
  // Puts `c` in as its source's claim / takes the source's claim out (false: none),
  // keeping the counters.
  // `old`: the source's claim now (FindClaim), or null.
  void Install(Entity& e, Claim* c, const Claim* old);
  // The same, at the link FindLink(e, c->source) returned.
  void InstallAt(Entity& e, Claim** link, Claim* c, const Claim* old);
  bool Uninstall(Entity& e, uint32_t source);
  void EmitChange(const Dirty& d, const Entity& e, PartitionSeal* seal);
  void Add(std::atomic<uint64_t>& c, int64_t d) {
    c.store(c.load(std::memory_order_relaxed) + static_cast<uint64_t>(d),
            std::memory_order_relaxed);
  }

  const uint32_t index_;
  const SchemaSet& schemas_;
  const SourceTable& sources_;
  const size_t lanes_;
  SealQueue* seals_;
  const bool log_changes_;
  PartitionQueue queue_;
  moodycamel::ConcurrentQueue<SnapshotRequest*> control_;
  ConvergedRecord scratch_;  // owner thread: the converged state at seal

  // Guards what point reads look at (the maps' structure, Entity::claims and the
  // claims) against the owner's writes to it; the owner reads without it.
  mutable std::mutex mu_;
  std::vector<EntityMap> maps_;  // by schema id
  std::vector<uint64_t> marks_;  // by source id: highest seq applied here
  std::unique_ptr<std::atomic<uint32_t>[]> source_claims_;  // by source id
  std::vector<Dirty> dirty_;  // entries [0, dirty_count_) belong to the open window
  size_t dirty_count_ = 0;
  util::HighWater dirty_high_{256, 1024};  // dirty_ gives back what a burst grew
  uint64_t window_ops_ = 0;
  uint64_t window_claim_changes_ = 0;
  uint64_t cut_window_ = 0;  // window whose cut markers are being counted
  size_t cuts_seen_ = 0;
  std::vector<bool> lane_cut_;                    // by lane: cut of cut_window_ arrived
  std::vector<std::deque<PartitionMsg>> parked_;  // by lane: messages after its cut
  std::vector<uint64_t> window_mark_;             // by source: highest seq this window
  std::vector<uint32_t> window_sources_;          // sources with window_mark_ set
  bool snapshotting_ = false;                     // a checkpoint walk is in progress
  int frozen_ = 0;                                // walks in progress: no rehash meanwhile

  std::vector<uint32_t> watch_;  // by schema id: subscriptions watching it
  std::vector<ActiveWalk> walks_;
  std::vector<const EntityMap::value_type*> gathered_;  // Gather's entries
  std::vector<const Claim*> gathered_claims_;           // Gather's cursors over their claims
  std::vector<const Claim*> apply_claims_;              // Apply's cursors (PrefetchChains)
  std::mutex feed_mu_;
  std::vector<std::pair<uint64_t, FeedRequest>> feed_requests_;  // guarded by feed_mu_
  std::atomic<bool> has_feed_requests_{false};
  std::vector<std::pair<uint64_t, ReplicatedBatch>> replicated_;  // guarded by feed_mu_
  uint64_t sealed_window_ = 0;        // owner thread: the last window sealed
  std::deque<Tombstone> tombstones_;  // in time order; at most one per entity
  uint64_t retention_us_ = 600'000'000;
  std::atomic<uint64_t> retained_from_{0};

  std::function<void(Work)> step_hook_;

  std::atomic<int64_t> backlog_{0};
  std::atomic<uint64_t> applied_{0}, asserts_{0}, patches_{0}, retracts_{0}, duplicates_{0},
      entities_{0}, claims_{0}, claim_bytes_{0};
};

}  // namespace conv::engine

#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/entity.h"
#include "engine/queues.h"
#include "engine/schema.h"
#include "engine/sources.h"
#include "wal/records.h"

namespace conv::engine {

struct QueryResult {
  bool found = false;
  ConvergedRecord record;
  struct ClaimInfo {
    uint32_t source = 0;
    uint64_t ts_max = 0;
    uint64_t mask = 0;
    std::string values;
  };
  std::vector<ClaimInfo> claims;  // filled only when asked for, ordered by source id
};

struct PartitionCounters {
  uint64_t applied = 0;  // ops applied
  uint64_t asserts = 0;
  uint64_t patches = 0;
  uint64_t retracts = 0;
  uint64_t duplicates = 0;  // ops skipped because their seq was not above the mark
  uint64_t entities = 0;    // live entities now
  uint64_t claims = 0;      // live claims now
  uint64_t claim_bytes = 0;
};

// One shard of the entity space, owned by one thread: only that thread applies ops
// and seals windows. Point reads come from I/O threads and take `mu_`, which the
// owner holds for at most kApplyChunk ops at a time, so a read waits for at most
// one chunk and the owner pays one uncontended lock per chunk, not per op.
//
// A window holds exactly what each lane sent before its cut: once lane L's cut of
// window w has arrived, L's later messages wait (parked) until every lane's cut has
// and the window is sealed. So every window is a prefix of each lane's stream, and
// the log never holds a source's op without the ops it sent before.
class Partition {
 public:
  static constexpr size_t kApplyChunk = 64;
  static constexpr size_t kSnapshotChunkBuckets = 32768;
  // Entities changed more often than this in one window count as hot (the page's
  // coalescing target is for them).
  static constexpr uint64_t kHotOps = 10;

  // `lanes`: how many lanes send cut markers; a window closes when all have.
  // `log_changes`: whether seals carry the WAL records of the window's changes.
  // `watch`: by schema id, how many subscriptions want that schema's changes (null:
  // none ever); for watched schemas seals carry the entity changes (changes.h).
  Partition(uint32_t index, const SchemaSet& schemas, const SourceTable& sources, size_t lanes,
            SealQueue* seals, bool log_changes = false,
            const std::atomic<uint32_t>* watch = nullptr);
  ~Partition();
  Partition(const Partition&) = delete;
  Partition& operator=(const Partition&) = delete;

  PartitionQueue& queue() { return queue_; }
  // Any thread: asks for the next chunk of claims (`req->ready` is signalled when it
  // is filled). Served ahead of queued ops, between two bulks of them, so that a
  // checkpoint does not wait behind a writers' backlog.
  void RequestSnapshot(SnapshotRequest* req);
  uint32_t index() const { return index_; }

  // The partition thread's body: applies messages until kStop.
  void Run();

  // Any thread.
  bool Query(const Schema& schema, std::string_view id, bool with_claims, QueryResult* out) const;
  PartitionCounters counters() const;
  // Ops handed to this partition and not yet applied (a backpressure signal).
  std::atomic<int64_t>& backlog() { return backlog_; }
  int64_t backlog_now() const { return backlog_.load(std::memory_order_relaxed); }

  // Owner thread only (public for in-process benchmarks and tests).
  void Apply(const OpBatch& batch);
  PartitionSeal Seal(uint64_t window);
  void FillSnapshot(SnapshotRequest* req);

  // Recovery, before Run(): install a logged claim state, remove a claim, and set
  // every source's seq mark.
  void RestoreClaim(const wal::ClaimRecord& r, uint32_t source);
  void RestoreRetract(uint32_t schema, std::string_view id, uint32_t source);
  void RestoreMark(uint32_t source, uint64_t seq);

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using EntityMap = std::unordered_map<std::string, Entity, StringHash, std::equal_to<>>;

  struct Dirty {
    uint32_t schema = 0;
    std::string id;
    std::vector<uint32_t> sources;  // distinct sources whose claim changed this window
    uint64_t ts_max = 0;            // newest op ts applied to the entity this window
    uint64_t ops = 0;               // ops applied to the entity this window
    bool watched = false;           // the converged state at the window start is kept
    bool had_prev = false;
    ConvergedRecord prev;
  };

  void Handle(const PartitionMsg& m);
  void ServeControl();
  void ApplyOne(const OpView& op);
  void EncodeChanges(const Dirty& d, const Entity& e, PartitionSeal* seal) const;
  // Before an op changes `e`: makes it dirty for the window (keeping its state at
  // the window start when its schema is watched). After the change: Note().
  Dirty& Touch(Entity& e, uint32_t schema, std::string_view id);
  void Note(Dirty& d, uint32_t source, uint64_t ts);
  // Puts `c` in as its source's claim / takes the source's claim out (false: none),
  // keeping the counters.
  void Install(Entity& e, Claim* c);
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
  const std::atomic<uint32_t>* watch_;
  PartitionQueue queue_;
  moodycamel::ConcurrentQueue<SnapshotRequest*> control_;
  ConvergedRecord scratch_;  // owner thread: the converged state at seal

  mutable std::mutex mu_;        // guards maps_ against point reads
  std::vector<EntityMap> maps_;  // by schema id
  std::vector<uint64_t> marks_;  // by source id: highest seq applied here
  std::vector<Dirty> dirty_;     // entries [0, dirty_count_) belong to the open window
  size_t dirty_count_ = 0;
  uint64_t window_ops_ = 0;
  uint64_t window_claim_changes_ = 0;
  uint64_t cut_window_ = 0;  // window whose cut markers are being counted
  size_t cuts_seen_ = 0;
  std::vector<bool> lane_cut_;                    // by lane: cut of cut_window_ arrived
  std::vector<std::deque<PartitionMsg>> parked_;  // by lane: messages after its cut
  std::vector<uint64_t> window_mark_;             // by source: highest seq this window
  std::vector<uint32_t> window_sources_;          // sources with window_mark_ set
  bool snapshotting_ = false;

  std::atomic<int64_t> backlog_{0};
  std::atomic<uint64_t> applied_{0}, asserts_{0}, patches_{0}, retracts_{0}, duplicates_{0},
      entities_{0}, claims_{0}, claim_bytes_{0};
};

}  // namespace conv::engine

// A partition's own work: the thread's loop, applying ops and keeping the claims,
// cutting and sealing windows (the converged changes and their log records), source
// retraction and point reads. The feed walks are in partition_feed.cc, checkpoint
// chunks and recovery in partition_restore.cc.

#include "engine/partition.h"

#include <algorithm>
#include <limits>

#include "engine/changes.h"
#include "util/clock.h"
#include "wal/records.h"

namespace conv::engine {

Partition::Partition(uint32_t index, const SchemaSet& schemas, const SourceTable& sources,
                     size_t lanes, SealQueue* seals, bool log_changes)
    : index_(index),
      schemas_(schemas),
      sources_(sources),
      lanes_(lanes),
      seals_(seals),
      log_changes_(log_changes),
      maps_(schemas.size() + 1),
      source_claims_(std::make_unique<std::atomic<uint32_t>[]>(sources.capacity() + 1)),
      lane_cut_(lanes, false),
      parked_(lanes),
      watch_(schemas.size() + 1, 0) {}

Partition::~Partition() {
  for (auto& map : maps_) {
    for (auto& [id, e] : map)
      FreeClaims(e);
  }
  PartitionMsg msg;
  while (queue_.try_dequeue(msg))
    delete msg.batch;
  for (auto& q : parked_) {
    for (auto& m : q)
      delete m.batch;
  }
}

void Partition::Run() {
  moodycamel::ConsumerToken token(queue_);
  PartitionMsg msgs[32];
  for (;;) {
    // A walk with room for output goes on between bulks, so do not block then.
    size_t n = WalkRunnable() ? queue_.try_dequeue_bulk(token, msgs, std::size(msgs))
                              : queue_.wait_dequeue_bulk(token, msgs, std::size(msgs));
    for (size_t i = 0; i < n; ++i) {
      if (msgs[i].kind == PartitionMsg::Kind::kStop) {
        for (size_t k = i + 1; k < n; ++k)
          delete msgs[k].batch;
        return;
      }
      if (msgs[i].lane != PartitionMsg::kNoLane && lane_cut_[msgs[i].lane]) {
        parked_[msgs[i].lane].push_back(msgs[i]);  // belongs to the next window
        continue;
      }
      Handle(msgs[i]);
    }
    // A read replica's feed request of a window already sealed (Coalescer::Follow).
    if (has_feed_requests_.load(std::memory_order_acquire)) ApplyFeedRequests(sealed_window_);
    ServeControl();                       // requests jump the queue: served between bulks
    if (!walks_.empty()) AdvanceWalks();  // one chunk each, between bulks
  }
}

void Partition::Freeze() {
  // With no rehash, every entity sits in a bucket a walk has either passed or not
  // reached yet, never moved between the two.
  if (frozen_++ == 0) {
    std::lock_guard lock(mu_);  // a map's policy may not change under a reader
    for (auto& map : maps_)
      map.max_load_factor(std::numeric_limits<float>::max());
  }
}

void Partition::Unfreeze() {
  if (--frozen_ == 0) {
    std::lock_guard lock(mu_);
    for (auto& map : maps_)
      map.max_load_factor(1.0f);
  }
}

void Partition::RetractSource(uint32_t source, uint64_t ts) {
  // The scan only reads (this thread is the maps' only writer) and erases nothing,
  // so the entries it collects stay put; the claims come out kApplyChunk entities
  // per lock, in scan order, as ops would.
  struct Hit {
    uint32_t schema;
    const EntityKey* id;
    Entity* e;
  };
  Hit hits[kApplyChunk];
  size_t n = 0;
  auto retract = [&] {
    {
      std::lock_guard lock(mu_);
      for (size_t i = 0; i < n; ++i) {
        Dirty& d = Touch(*hits[i].e, hits[i].schema, *hits[i].id);
        Uninstall(*hits[i].e, source);
        Note(d, source, ts, nullptr);
        Add(retracts_, 1);
      }
    }
    n = 0;
    Step(Work::kRetractSource);
  };
  for (uint32_t schema = 1; schema < maps_.size(); ++schema) {
    for (auto& [id, e] : maps_[schema]) {
      if (FindClaim(e, source) == nullptr) continue;
      hits[n++] = {schema, &id, &e};
      if (n == kApplyChunk) retract();
    }
  }
  if (n > 0) retract();
}

void Partition::ServeControl() {
  SnapshotRequest* req;
  while (control_.try_dequeue(req))
    FillSnapshot(req);
}

void Partition::Handle(const PartitionMsg& m) {
  switch (m.kind) {
    case PartitionMsg::Kind::kOps: {
      Apply(*m.batch);
      backlog_.fetch_sub(static_cast<int64_t>(m.batch->count()), std::memory_order_relaxed);
      delete m.batch;
      break;
    }
    case PartitionMsg::Kind::kCut: {
      if (m.window != cut_window_) {
        cut_window_ = m.window;
        cuts_seen_ = 0;
      }
      lane_cut_[m.lane] = true;
      if (++cuts_seen_ < lanes_) break;
      uint64_t cut_in = util::MonoNanos();
      // A read replica: feed requests of the window before, then the owner's records.
      ApplyFeedRequests(sealed_window_);
      ApplyReplicated(m.window);
      PartitionSeal seal = Seal(m.window);
      sealed_window_ = m.window;
      seal.cut_in_ns = cut_in;
      seals_->enqueue(std::move(seal));
      ApplyFeedRequests(m.window);  // at the boundary: nothing of the next window applied
      PruneTombstones();
      std::fill(lane_cut_.begin(), lane_cut_.end(), false);
      // What lanes sent after their cut is the next window's: apply it now, in order.
      for (auto& q : parked_) {
        while (!q.empty()) {
          PartitionMsg next = q.front();
          q.pop_front();
          Handle(next);
        }
      }
      break;
    }
    case PartitionMsg::Kind::kControl:
      ServeControl();
      break;
    case PartitionMsg::Kind::kRetractSource:
      RetractSource(m.source, m.window);
      break;
    case PartitionMsg::Kind::kResetSource:
      ForgetMark(m.source);
      break;
    case PartitionMsg::Kind::kStop:
      break;
  }
}

void Partition::Apply(const OpBatch& batch) {
  // kFetchGroup ops at a time: their entities' buckets, then their entries and claim
  // lists are fetched, reading the maps without the lock (this thread is their only
  // writer), so that the ops are applied, under the lock, to what is in the cache. An
  // op's entry found here stays put (nodes never move; Apply erases none).
  OpBatch::Reader reader(batch);
  OpView ops[kFetchGroup];
  EntityMap::value_type* found[kFetchGroup];
  for (;;) {
    size_t n = 0;
    while (n < kFetchGroup && reader.Next(&ops[n]))
      ++n;
    if (n == 0) break;
    BucketFetch fetch;
    for (size_t i = 0; i < n; ++i)
      fetch.Add(maps_[ops[i].schema], ops[i].id);
    fetch.Fetch();
    apply_claims_.clear();
    for (size_t i = 0; i < n; ++i) {
      found[i] = fetch.Find(i, ops[i].id);
      if (found[i] != nullptr && found[i]->second.claims != nullptr) {
        PrefetchClaim(found[i]->second.claims);
        apply_claims_.push_back(found[i]->second.claims);
      }
    }
    PrefetchChains(apply_claims_);
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < n; ++i)
      ApplyOne(ops[i], found[i]);
  }
}

void Partition::ApplyOne(const OpView& op, EntityMap::value_type* found) {
  if (op.source >= marks_.size()) marks_.resize(std::max<size_t>(op.source + 1, marks_.size() * 2));
  uint64_t& mark = marks_[op.source];
  if (op.seq <= mark) {
    Add(duplicates_, 1);
    return;
  }
  mark = op.seq;
  if (op.source >= window_mark_.size()) window_mark_.resize(marks_.size(), 0);
  if (window_mark_[op.source] == 0) window_sources_.push_back(op.source);
  window_mark_[op.source] = op.seq;
  ++window_ops_;
  Add(applied_, 1);
  EntityMap& map = maps_[op.schema];
  if (op.kind == OpKind::kRetract) {
    Add(retracts_, 1);
    if (found == nullptr) {
      auto it = map.find(op.id);
      if (it == map.end()) return;
      found = &*it;
    }
    Entity& e = found->second;
    if (FindClaim(e, op.source) == nullptr) return;
    Dirty& d = Touch(e, op.schema, found->first);
    Uninstall(e, op.source);
    Note(d, op.source, op.ts, nullptr);
    return;
  }
  if (found == nullptr) found = &*FindOrAdd(map, op.id);
  Entity& e = found->second;
  Dirty& d = Touch(e, op.schema, found->first);
  Claim** link = FindLink(e, op.source);
  Claim* old = ClaimAt(link, op.source);
  Claim* c;
  if (op.kind == OpKind::kAssert) {
    Add(asserts_, 1);
    c = NewUniformClaim(op.source, op.mask, op.ts, op.values);
  } else {
    Add(patches_, 1);
    c = PatchClaim(*schemas_.Find(op.schema), old, op.source, op.mask, op.values, op.ts);
  }
  InstallAt(e, link, c, old);
  Note(d, op.source, op.ts, c);
}

Partition::EntityMap::iterator Partition::FindOrAdd(EntityMap& map, std::string_view id) {
  auto it = map.find(id);
  if (it != map.end()) return it;
  return map.emplace(std::piecewise_construct, std::forward_as_tuple(id), std::forward_as_tuple())
      .first;
}

void Partition::Install(Entity& e, Claim* c, const Claim* old) {
  InstallAt(e, FindLink(e, c->source), c, old);
}

void Partition::InstallAt(Entity& e, Claim** link, Claim* c, const Claim* old) {
  if (old != nullptr) {
    Add(claim_bytes_, -static_cast<int64_t>(ClaimBytes(old)));
  } else {
    Add(claims_, 1);
    source_claims_[c->source].fetch_add(1, std::memory_order_relaxed);
    if (e.claims == nullptr) Add(entities_, 1);
  }
  Add(claim_bytes_, static_cast<int64_t>(ClaimBytes(c)));
  PutClaimAt(link, c);
}

bool Partition::Uninstall(Entity& e, uint32_t source) {
  const Claim* old = FindClaim(e, source);
  if (old == nullptr) return false;
  Add(claim_bytes_, -static_cast<int64_t>(ClaimBytes(old)));
  RemoveClaim(e, source);
  Add(claims_, -1);
  source_claims_[source].fetch_sub(1, std::memory_order_relaxed);
  if (e.claims == nullptr) Add(entities_, -1);
  return true;
}

Partition::Dirty& Partition::Touch(Entity& e, uint32_t schema, const EntityKey& key) {
  if (e.dirty != 0) return dirty_[e.dirty - 1];
  if (!walks_.empty()) Capture(schema, key, e);
  if (dirty_count_ == dirty_.size()) dirty_.emplace_back();
  Dirty& d = dirty_[dirty_count_++];
  d.schema = schema;
  d.id = &key;
  d.entity = &e;
  d.sources.clear();
  d.ts_max = 0;
  d.ops = 0;
  d.watched = watch_[schema] > 0;
  d.had_prev = false;
  if (d.watched && e.claims != nullptr) {
    d.had_prev = true;
    Converge(*schemas_.Find(schema), e.claims, sources_, &d.prev);
  }
  e.dirty = static_cast<uint32_t>(dirty_count_);
  return d;
}

void Partition::Note(Dirty& d, uint32_t source, uint64_t ts, const Claim* claim) {
  if (ts > d.ts_max) d.ts_max = ts;
  ++d.ops;
  for (auto& s : d.sources) {
    if (s.source == source) {
      s.claim = claim;
      return;
    }
  }
  d.sources.push_back({source, claim});
  ++window_claim_changes_;
}

void Partition::EmitChange(const Dirty& d, const Entity& e, PartitionSeal* seal) {
  const Schema& schema = *schemas_.Find(d.schema);
  ChangeView c;
  c.schema = d.schema;
  c.id = *d.id;
  c.ts = d.ts_max;
  c.had_prev = d.had_prev;
  if (d.had_prev) {
    c.prev_mask = d.prev.mask;
    c.prev_values = d.prev.values;
  }
  if (e.claims == nullptr) {
    if (!d.had_prev) return;  // created and gone within the window
    c.kind = ChangeKind::kDelete;
    c.changed_mask = d.prev.mask;
  } else {
    Converge(schema, e.claims, sources_, &scratch_);
    c.kind = ChangeKind::kUpsert;
    c.mask = scratch_.mask;
    c.values = scratch_.values;
    c.changed_mask = d.had_prev ? ChangedFields(schema, d.prev.mask, d.prev.values, scratch_.mask,
                                                scratch_.values)
                                : scratch_.mask;
    if (d.had_prev && c.changed_mask == 0) return;  // same converged state as at the start
  }
  AppendChange(seal->changes, c);
  ++seal->change_count;
}

void Partition::PrefetchSeal(size_t i) const {
  // The dirty set was filled over the whole window: its entries' source lists,
  // entities, ids and claims have left the cache since. Their loads are started
  // ahead, in two steps: an entry's source list must be in before its claims can be.
  if (size_t far = i + kSealAhead; far < dirty_count_) {
    const Dirty& d = dirty_[far];
    __builtin_prefetch(d.sources.data());
    __builtin_prefetch(d.entity);
    __builtin_prefetch(d.id);
  }
  if (size_t near = i + kSealAhead / 2; near < dirty_count_) {
    for (const Dirty::Source& s : dirty_[near].sources) {
      if (s.claim != nullptr) PrefetchClaim(s.claim);
    }
  }
}

PartitionSeal Partition::Seal(uint64_t window) {
  PartitionSeal seal;
  seal.partition = index_;
  seal.window = window;
  seal.ops = window_ops_;
  seal.claim_changes = window_claim_changes_;
  seal.entity_changes = dirty_count_;
  for (uint32_t src : window_sources_) {
    seal.marks.emplace_back(src, window_mark_[src]);
    window_mark_[src] = 0;
  }
  window_sources_.clear();
  // No lock: this only reads the maps and claims (which no other thread writes) and
  // writes what a point read never looks at (Entity::dirty, window, tomb_queued).
  uint64_t now = 0;
  for (size_t i = 0; i < dirty_count_; ++i) {
    if (i % kApplyChunk == kApplyChunk - 1) Step(Work::kSeal);
    PrefetchSeal(i);
    Dirty& d = dirty_[i];
    Entity& e = *d.entity;
    if (log_changes_) EncodeChanges(d, &seal);
    if (d.ops > kHotOps) {
      seal.hot_ops += d.ops;
      seal.hot_claim_changes += d.sources.size();
    }
    if (d.watched) EmitChange(d, e, &seal);
    e.dirty = 0;
    e.window = window;
    if (e.claims == nullptr) {
      // Kept as a tombstone: a subscriber resuming from an earlier window is told.
      if (now == 0) now = util::WallMicros();
      QueueTombstone(d.schema, *d.id, e, now);
    }
  }
  if (size_t keep = dirty_high_.Note(dirty_count_, dirty_.capacity()); keep != 0) {
    if (dirty_.size() > keep) dirty_.resize(keep);
    dirty_.shrink_to_fit();
  }
  dirty_count_ = 0;
  window_ops_ = 0;
  window_claim_changes_ = 0;
  return seal;
}

void Partition::EncodeChanges(const Dirty& d, PartitionSeal* seal) const {
  // Note() kept each source's claim as the window left it: no walk of the claim list.
  for (const auto& [src, c] : d.sources) {
    std::string_view source = sources_.Name(src);
    if (c != nullptr) {
      wal::PutClaim(seal->wal, d.schema, *d.id, source, c->mask, c->uniform, c->ts_max,
                    c->ts_array(), c->values());
    } else {
      wal::PutRetract(seal->wal, d.schema, *d.id, source);
    }
  }
  seal->wal_records += d.sources.size();
}

bool Partition::Query(const Schema& schema, std::string_view id, bool with_claims,
                      QueryResult* out) const {
  out->claims.clear();
  std::lock_guard lock(mu_);
  const EntityMap& map = maps_[schema.id];
  auto it = map.find(id);
  if (it == map.end() || it->second.claims == nullptr) {
    out->found = false;
    return false;
  }
  const Entity& e = it->second;
  out->found = true;
  Converge(schema, e.claims, sources_, &out->record);
  if (with_claims) {
    for (const Claim* c = e.claims; c != nullptr; c = c->next) {
      out->claims.push_back({c->source, c->ts_max, c->mask, std::string(c->values())});
    }
  }
  return true;
}

PartitionCounters Partition::counters() const {
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  return {get(applied_),    get(asserts_),  get(patches_), get(retracts_),
          get(duplicates_), get(entities_), get(claims_),  get(claim_bytes_)};
}

}  // namespace conv::engine

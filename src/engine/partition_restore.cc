// Checkpoint and recovery for a partition: snapshot chunks of its claims for the
// checkpointer (served between bulks of ops), and the logged claim states, retractions
// and seq marks installed before the partition thread runs.

#include <algorithm>
#include <iterator>
#include <mutex>

#include "engine/partition.h"
#include "util/clock.h"
#include "wal/records.h"

namespace conv::engine {
void Partition::RequestSnapshot(SnapshotRequest* req) {
  control_.enqueue(req);
  PartitionMsg wake;
  wake.kind = PartitionMsg::Kind::kControl;
  queue_.enqueue(wake);  // for an idle partition; a busy one looks between bulks
}

void Partition::FillSnapshot(SnapshotRequest* req) {
  req->records.clear();
  req->count = 0;
  // Reads only, so no lock but Freeze's and Unfreeze's own.
  if (!snapshotting_) {
    Freeze();  // the bucket layout holds still while the snapshot walks it
    snapshotting_ = true;
  }
  size_t buckets_done = 0;
  while (req->schema < maps_.size() && buckets_done < kSnapshotChunkBuckets) {
    EntityMap& map = maps_[req->schema];
    if (req->bucket >= map.bucket_count()) {
      ++req->schema;
      req->bucket = 0;
      continue;
    }
    if (buckets_done != 0) Step(Work::kSnapshot);
    size_t n = Gather(map, req->bucket);
    for (const EntityMap::value_type* entry : gathered_) {
      for (const Claim* c = entry->second.claims; c != nullptr; c = c->next) {
        wal::PutClaim(req->records, static_cast<uint32_t>(req->schema), entry->first,
                      sources_.Name(c->source), c->mask, c->uniform, c->ts_max, c->ts_array(),
                      c->values());
        ++req->count;
      }
    }
    req->bucket += n;
    buckets_done += n;
  }
  if (req->schema >= maps_.size()) {
    req->done = true;
    Unfreeze();
    snapshotting_ = false;
  }
  req->ready.signal();
}

void Partition::BucketFetch::Fetch() const {
  for (size_t i = 0; i < n_; ++i) {
    if (auto head = map_[i]->cbegin(bucket_[i]); head != map_[i]->cend(bucket_[i])) {
      // The node's key and entity, which may straddle two cache lines.
      __builtin_prefetch(&*head);
      __builtin_prefetch(reinterpret_cast<const char*>(&*head) + sizeof(*head) - 1);
    }
  }
}

Partition::EntityMap::value_type* Partition::BucketFetch::Find(size_t i,
                                                               std::string_view id) const {
  // The bucket's chain, from the bucket Add computed (no second hash of `id`).
  for (auto it = map_[i]->begin(bucket_[i]); it != map_[i]->end(bucket_[i]); ++it) {
    if (it->first == id) return &*it;
  }
  return nullptr;
}

void Partition::PrefetchClaim(const Claim* c) {
  // The header and the values of a typical claim (a 96-byte block).
  __builtin_prefetch(c);
  __builtin_prefetch(reinterpret_cast<const char*>(c) + 64);
}

void Partition::PrefetchChains(std::vector<const Claim*>& cursors) {
  for (bool more = true; more;) {
    more = false;
    for (const Claim*& c : cursors) {
      if (c == nullptr || (c = c->next) == nullptr) continue;
      PrefetchClaim(c);
      more = true;
    }
  }
}

size_t Partition::Gather(const EntityMap& map, size_t first) {
  const size_t n = std::min(kGatherBuckets, map.bucket_count() - first);
  EntityMap::const_local_iterator heads[kGatherBuckets];
  for (size_t b = 0; b < n; ++b) {
    heads[b] = map.cbegin(first + b);
    if (heads[b] != map.cend(first + b)) __builtin_prefetch(&*heads[b]);
  }
  gathered_.clear();
  gathered_claims_.clear();
  for (size_t b = 0; b < n; ++b) {
    for (auto it = heads[b]; it != map.cend(first + b); ++it) {
      gathered_.push_back(&*it);
      if (it->second.claims != nullptr) {
        PrefetchClaim(it->second.claims);
        gathered_claims_.push_back(it->second.claims);
      }
    }
  }
  PrefetchChains(gathered_claims_);
  return n;
}

void Partition::RestoreClaim(const wal::ClaimRecord& r, uint32_t source, uint64_t window) {
  RestoreClaimTo(FindOrAdd(maps_[r.schema], r.id)->second, r, source, window);
}

void Partition::RestoreClaimTo(Entity& e, const wal::ClaimRecord& r, uint32_t source,
                               uint64_t window) {
  e.window = window;
  Install(e,
          r.uniform ? NewUniformClaim(source, r.mask, r.ts_max, r.values)
                    : RestoreNonUniformClaim(source, r.mask, r.ts_max, r.ts, r.values),
          FindClaim(e, source));
}

void RestoreBatch::AddClaim(const wal::ClaimRecord& r, uint32_t source, uint64_t window) {
  Item& it = items_.emplace_back();
  it.claim = true;
  it.window = window;
  it.schema = r.schema;
  it.source = source;
  it.mask = r.mask;
  it.ts_max = r.ts_max;
  it.uniform = r.uniform;
  it.id_at = static_cast<uint32_t>(bytes_.size());
  it.id_len = static_cast<uint32_t>(r.id.size());
  it.values_len = static_cast<uint32_t>(r.values.size());
  bytes_.append(r.id);
  bytes_.append(r.values);
  if (!r.uniform) {
    it.ts_at = static_cast<uint32_t>(ts_.size());
    ts_.insert(ts_.end(), r.ts, r.ts + __builtin_popcountll(r.mask));
  }
}

void RestoreBatch::AddRetract(uint32_t schema, std::string_view id, uint32_t source,
                              uint64_t window) {
  Item& it = items_.emplace_back();
  it.window = window;
  it.schema = schema;
  it.source = source;
  it.id_at = static_cast<uint32_t>(bytes_.size());
  it.id_len = static_cast<uint32_t>(id.size());
  bytes_.append(id);
}

void Partition::Restore(const RestoreBatch& batch) {
  // Changes whose buckets are fetched together before they are applied: each fetch
  // is a few loads from far apart in memory, independent of the others, so the CPU
  // overlaps them (applied one by one, each change waits for its own).
  const auto& items = batch.items_;
  auto id_of = [&](const RestoreBatch::Item& it) {
    return std::string_view(batch.bytes_.data() + it.id_at, it.id_len);
  };
  // Whether item i names the entity item i - 1 names (a checkpoint holds an entity's
  // claims together).
  auto same_as_before = [&](size_t i) {
    return i > 0 && items[i].schema == items[i - 1].schema &&
           id_of(items[i]) == id_of(items[i - 1]);
  };
  wal::ClaimRecord r;
  Entity* last = nullptr;  // the entity of the claim applied last (nodes never move)
  for (size_t first = 0; first < items.size(); first += kFetchGroup) {
    const size_t end = std::min(items.size(), first + kFetchGroup);
    BucketFetch fetch;
    for (size_t i = first; i < end; ++i) {
      if (!same_as_before(i)) fetch.Add(maps_[items[i].schema], id_of(items[i]));
    }
    fetch.Fetch();
    for (size_t i = first; i < end; ++i) {
      const RestoreBatch::Item& it = items[i];
      if (!it.claim) {
        RestoreRetract(it.schema, id_of(it), it.source, it.window);
        last = nullptr;
        continue;
      }
      r.schema = it.schema;
      r.id = id_of(it);
      r.mask = it.mask;
      r.uniform = it.uniform;
      r.ts_max = it.ts_max;
      r.values = std::string_view(batch.bytes_.data() + it.id_at + it.id_len, it.values_len);
      if (!it.uniform) {
        std::copy_n(batch.ts_.begin() + it.ts_at, __builtin_popcountll(it.mask), r.ts);
      }
      if (last == nullptr || !same_as_before(i)) last = &FindOrAdd(maps_[r.schema], r.id)->second;
      RestoreClaimTo(*last, r, it.source, it.window);
    }
  }
}

void Partition::ReserveEntities(uint32_t schema, size_t entities) {
  EntityMap& map = maps_[schema];
  if (entities > map.size()) map.reserve(entities);
}

void Partition::RestoreRetract(uint32_t schema, std::string_view id, uint32_t source,
                               uint64_t window) {
  auto it = FindOrAdd(maps_[schema], id);
  Uninstall(it->second, source);
  it->second.window = window;
  if (it->second.claims == nullptr) {
    // A tombstone, as at run time; its retention counts from the restart.
    QueueTombstone(schema, id, it->second, util::WallMicros());
  }
}

void Partition::ForgetMark(uint32_t source) {
  if (source < marks_.size()) marks_[source] = 0;
}

void Partition::RestoreMark(uint32_t source, uint64_t seq) {
  if (source >= marks_.size()) marks_.resize(source + 1, 0);
  marks_[source] = std::max(marks_[source], seq);
}

// Applies a read replica's records of one window as the owner's ops were applied:
// each changed claim is installed (or taken out) through Touch and Note, so the seal
// reports the entity changes and walks capture first touches. Holds `mu_` for at
// most kApplyChunk records at a time.
class ReplicatedApplier : public wal::RecordVisitor {
 public:
  ReplicatedApplier(Partition& p, const ReplicatedBatch& b) : p_(p), b_(b) {}
  ~ReplicatedApplier() override = default;

  void OnClaim(const wal::ClaimRecord& r) override {
    uint32_t source = NextSource();
    Lock();
    auto it = Partition::FindOrAdd(p_.maps_[r.schema], r.id);
    Entity& e = it->second;
    Partition::Dirty& d = p_.Touch(e, r.schema, it->first);
    const Claim* old = FindClaim(e, source);
    Claim* c = r.uniform ? NewUniformClaim(source, r.mask, r.ts_max, r.values)
                         : RestoreNonUniformClaim(source, r.mask, r.ts_max, r.ts, r.values);
    p_.Install(e, c, old);
    p_.Note(d, source, r.ts_max, c);
    p_.Add(p_.applied_, 1);
  }
  void OnRetract(const wal::RetractRecord& r) override {
    uint32_t source = NextSource();
    Lock();
    auto& map = p_.maps_[r.schema];
    auto it = map.find(r.id);
    if (it == map.end() || FindClaim(it->second, source) == nullptr) return;
    Partition::Dirty& d = p_.Touch(it->second, r.schema, it->first);
    p_.Uninstall(it->second, source);
    p_.Note(d, source, 0, nullptr);
    p_.Add(p_.retracts_, 1);
  }
  void OnSource(const wal::SourceRecord&) override {}
  void OnSchema(const wal::SchemaRecord&) override {}
  void OnLease(const wal::LeaseRecord&) override {}

 private:
  uint32_t NextSource() { return next_ < b_.sources.size() ? b_.sources[next_++] : 0; }
  void Lock() {
    if (!lock_.owns_lock()) {
      lock_ = std::unique_lock(p_.mu_);
    } else if (++in_chunk_ == Partition::kApplyChunk) {
      lock_.unlock();
      in_chunk_ = 0;
      lock_.lock();
    }
  }

  Partition& p_;
  const ReplicatedBatch& b_;
  size_t next_ = 0;
  size_t in_chunk_ = 0;
  std::unique_lock<std::mutex> lock_;
};

void Partition::AddReplicated(uint64_t window, ReplicatedBatch batch) {
  std::lock_guard lock(feed_mu_);
  replicated_.emplace_back(window, std::move(batch));
}

void Partition::ApplyReplicated(uint64_t window) {
  std::vector<std::pair<uint64_t, ReplicatedBatch>> due;
  {
    std::lock_guard lock(feed_mu_);
    if (replicated_.empty()) return;
    auto later = std::stable_partition(replicated_.begin(), replicated_.end(),
                                       [&](const auto& r) { return r.first <= window; });
    std::move(replicated_.begin(), later, std::back_inserter(due));
    replicated_.erase(replicated_.begin(), later);
  }
  for (const auto& entry : due) {
    // Engine::ApplyReplicatedWindow built these records itself from a checked window.
    util::Reader reader(entry.second.records);
    ReplicatedApplier applier(*this, entry.second);
    wal::DecodeRecords(reader, entry.second.sources.size(), applier);
  }
}

}  // namespace conv::engine

#include "engine/partition.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "engine/changes.h"
#include "wal/records.h"

namespace conv::engine {

Partition::Partition(uint32_t index, const SchemaSet& schemas, const SourceTable& sources,
                     size_t lanes, SealQueue* seals, bool log_changes,
                     const std::atomic<uint32_t>* watch)
    : index_(index),
      schemas_(schemas),
      sources_(sources),
      lanes_(lanes),
      seals_(seals),
      log_changes_(log_changes),
      watch_(watch),
      maps_(schemas.size() + 1),
      lane_cut_(lanes, false),
      parked_(lanes) {}

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
    size_t n = queue_.wait_dequeue_bulk(token, msgs, std::size(msgs));
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
    ServeControl();  // requests jump the queue: served between bulks
  }
}

void Partition::RequestSnapshot(SnapshotRequest* req) {
  control_.enqueue(req);
  PartitionMsg wake;
  wake.kind = PartitionMsg::Kind::kControl;
  queue_.enqueue(wake);  // for an idle partition; a busy one looks between bulks
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
      seals_->enqueue(Seal(m.window));
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
    case PartitionMsg::Kind::kStop:
      break;
  }
}

void Partition::Apply(const OpBatch& batch) {
  OpBatch::Reader reader(batch);
  OpView op;
  bool more = true;
  while (more) {
    std::lock_guard lock(mu_);
    for (size_t k = 0; k < kApplyChunk; ++k) {
      if (!reader.Next(&op)) {
        more = false;
        break;
      }
      ApplyOne(op);
    }
  }
}

void Partition::ApplyOne(const OpView& op) {
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
    auto it = map.find(op.id);
    if (it == map.end()) return;
    Entity& e = it->second;
    if (FindClaim(e, op.source) == nullptr) return;
    Dirty& d = Touch(e, op.schema, op.id);
    Uninstall(e, op.source);
    Note(d, op.source, op.ts);
    return;
  }
  auto it = map.find(op.id);
  if (it == map.end()) it = map.emplace(std::string(op.id), Entity{}).first;
  Entity& e = it->second;
  Dirty& d = Touch(e, op.schema, op.id);
  Claim* old = FindClaim(e, op.source);
  Claim* c;
  if (op.kind == OpKind::kAssert) {
    Add(asserts_, 1);
    c = NewUniformClaim(op.source, op.mask, op.ts, op.values);
  } else {
    Add(patches_, 1);
    c = PatchClaim(*schemas_.Find(op.schema), old, op.source, op.mask, op.values, op.ts);
  }
  Install(e, c);
  Note(d, op.source, op.ts);
}

void Partition::Install(Entity& e, Claim* c) {
  if (const Claim* old = FindClaim(e, c->source)) {
    Add(claim_bytes_, -static_cast<int64_t>(ClaimBytes(old)));
  } else {
    Add(claims_, 1);
    if (e.claims == nullptr) Add(entities_, 1);
  }
  Add(claim_bytes_, static_cast<int64_t>(ClaimBytes(c)));
  PutClaim(e, c);
}

bool Partition::Uninstall(Entity& e, uint32_t source) {
  const Claim* old = FindClaim(e, source);
  if (old == nullptr) return false;
  Add(claim_bytes_, -static_cast<int64_t>(ClaimBytes(old)));
  RemoveClaim(e, source);
  Add(claims_, -1);
  if (e.claims == nullptr) Add(entities_, -1);
  return true;
}

Partition::Dirty& Partition::Touch(Entity& e, uint32_t schema, std::string_view id) {
  if (e.dirty != 0) return dirty_[e.dirty - 1];
  if (dirty_count_ == dirty_.size()) dirty_.emplace_back();
  Dirty& d = dirty_[dirty_count_++];
  d.schema = schema;
  d.id.assign(id);
  d.sources.clear();
  d.ts_max = 0;
  d.ops = 0;
  d.watched = watch_ != nullptr && watch_[schema].load(std::memory_order_relaxed) > 0;
  d.had_prev = false;
  if (d.watched && e.claims != nullptr) {
    d.had_prev = true;
    Converge(*schemas_.Find(schema), e.claims, sources_, &d.prev);
  }
  e.dirty = static_cast<uint32_t>(dirty_count_);
  return d;
}

void Partition::Note(Dirty& d, uint32_t source, uint64_t ts) {
  if (ts > d.ts_max) d.ts_max = ts;
  ++d.ops;
  if (std::find(d.sources.begin(), d.sources.end(), source) == d.sources.end()) {
    d.sources.push_back(source);
    ++window_claim_changes_;
  }
}

void Partition::EmitChange(const Dirty& d, const Entity& e, PartitionSeal* seal) {
  const Schema& schema = *schemas_.Find(d.schema);
  ChangeView c;
  c.schema = d.schema;
  c.id = d.id;
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
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < dirty_count_; ++i) {
    Dirty& d = dirty_[i];
    EntityMap& map = maps_[d.schema];
    auto it = map.find(d.id);
    if (log_changes_) EncodeChanges(d, it->second, &seal);
    if (d.ops > kHotOps) {
      seal.hot_ops += d.ops;
      seal.hot_claim_changes += d.sources.size();
    }
    if (d.watched) EmitChange(d, it->second, &seal);
    it->second.dirty = 0;
    if (it->second.claims == nullptr) map.erase(it);
  }
  dirty_count_ = 0;
  window_ops_ = 0;
  window_claim_changes_ = 0;
  return seal;
}

void Partition::EncodeChanges(const Dirty& d, const Entity& e, PartitionSeal* seal) const {
  for (uint32_t src : d.sources) {
    std::string_view source = sources_.Name(src);
    if (const Claim* c = FindClaim(e, src)) {
      wal::PutClaim(seal->wal, d.schema, d.id, source, c->mask, c->uniform, c->ts_max,
                    c->ts_array(), c->values());
    } else {
      wal::PutRetract(seal->wal, d.schema, d.id, source);
    }
    ++seal->wal_records;
  }
}

void Partition::FillSnapshot(SnapshotRequest* req) {
  req->records.clear();
  req->count = 0;
  std::lock_guard lock(mu_);
  if (!snapshotting_) {
    // Freeze the bucket layout while the snapshot walks it: with no rehash, every
    // entity present at the start sits in a bucket the cursor has yet to reach or
    // has passed, never moved between the two.
    for (auto& map : maps_)
      map.max_load_factor(std::numeric_limits<float>::max());
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
    for (auto it = map.begin(req->bucket); it != map.end(req->bucket); ++it) {
      for (const Claim* c = it->second.claims; c != nullptr; c = c->next) {
        wal::PutClaim(req->records, static_cast<uint32_t>(req->schema), it->first,
                      sources_.Name(c->source), c->mask, c->uniform, c->ts_max, c->ts_array(),
                      c->values());
        ++req->count;
      }
    }
    ++req->bucket;
    ++buckets_done;
  }
  if (req->schema >= maps_.size()) {
    req->done = true;
    for (auto& map : maps_)
      map.max_load_factor(1.0f);
    snapshotting_ = false;
  }
  req->ready.signal();
}

void Partition::RestoreClaim(const wal::ClaimRecord& r, uint32_t source) {
  EntityMap& map = maps_[r.schema];
  auto it = map.find(r.id);
  if (it == map.end()) it = map.emplace(std::string(r.id), Entity{}).first;
  Entity& e = it->second;
  Install(e, r.uniform ? NewUniformClaim(source, r.mask, r.ts_max, r.values)
                       : RestoreNonUniformClaim(source, r.mask, r.ts_max, r.ts, r.values));
}

void Partition::RestoreRetract(uint32_t schema, std::string_view id, uint32_t source) {
  EntityMap& map = maps_[schema];
  auto it = map.find(id);
  if (it == map.end()) return;
  if (Uninstall(it->second, source) && it->second.claims == nullptr) map.erase(it);
}

void Partition::RestoreMark(uint32_t source, uint64_t seq) {
  if (source >= marks_.size()) marks_.resize(source + 1, 0);
  marks_[source] = std::max(marks_[source], seq);
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

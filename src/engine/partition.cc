#include "engine/partition.h"

#include <algorithm>

namespace conv::engine {

Partition::Partition(uint32_t index, const SchemaSet& schemas, const SourceTable& sources,
                     size_t lanes, SealQueue* seals)
    : index_(index),
      schemas_(schemas),
      sources_(sources),
      lanes_(lanes),
      seals_(seals),
      maps_(schemas.size() + 1) {}

Partition::~Partition() {
  for (auto& map : maps_) {
    for (auto& [id, e] : map) FreeClaims(e);
  }
  PartitionMsg msg;
  while (queue_.try_dequeue(msg)) delete msg.batch;
}

void Partition::Run() {
  moodycamel::ConsumerToken token(queue_);
  PartitionMsg msgs[32];
  for (;;) {
    size_t n = queue_.wait_dequeue_bulk(token, msgs, std::size(msgs));
    for (size_t i = 0; i < n; ++i) {
      PartitionMsg& m = msgs[i];
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
          if (++cuts_seen_ == lanes_) seals_->enqueue(Seal(m.window));
          break;
        }
        case PartitionMsg::Kind::kStop: {
          for (size_t k = i + 1; k < n; ++k) delete msgs[k].batch;
          return;
        }
      }
    }
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
  ++window_ops_;
  Add(applied_, 1);
  EntityMap& map = maps_[op.schema];
  if (op.kind == OpKind::kRetract) {
    Add(retracts_, 1);
    auto it = map.find(op.id);
    if (it == map.end()) return;
    Entity& e = it->second;
    Claim* old = FindClaim(e, op.source);
    if (old == nullptr) return;
    Add(claim_bytes_, -static_cast<int64_t>(ClaimBytes(old)));
    RemoveClaim(e, op.source);
    Add(claims_, -1);
    if (e.claims == nullptr) Add(entities_, -1);
    MarkDirty(e, op.schema, op.id, op.source);
    return;
  }
  auto it = map.find(op.id);
  if (it == map.end()) it = map.emplace(std::string(op.id), Entity{}).first;
  Entity& e = it->second;
  Claim* old = FindClaim(e, op.source);
  Claim* c;
  if (op.kind == OpKind::kAssert) {
    Add(asserts_, 1);
    c = NewUniformClaim(op.source, op.mask, op.ts, op.values);
  } else {
    Add(patches_, 1);
    c = PatchClaim(*schemas_.Find(op.schema), old, op.source, op.mask, op.values, op.ts);
  }
  if (old != nullptr) {
    Add(claim_bytes_, -static_cast<int64_t>(ClaimBytes(old)));
  } else {
    Add(claims_, 1);
    if (e.claims == nullptr) Add(entities_, 1);
  }
  Add(claim_bytes_, static_cast<int64_t>(ClaimBytes(c)));
  PutClaim(e, c);
  MarkDirty(e, op.schema, op.id, op.source);
}

void Partition::MarkDirty(Entity& e, uint32_t schema, std::string_view id, uint32_t source) {
  if (e.dirty == 0) {
    if (dirty_count_ == dirty_.size()) dirty_.emplace_back();
    Dirty& d = dirty_[dirty_count_++];
    d.schema = schema;
    d.id.assign(id);
    d.sources.clear();
    e.dirty = static_cast<uint32_t>(dirty_count_);
  }
  Dirty& d = dirty_[e.dirty - 1];
  if (std::find(d.sources.begin(), d.sources.end(), source) == d.sources.end()) {
    d.sources.push_back(source);
    ++window_claim_changes_;
  }
}

PartitionSeal Partition::Seal(uint64_t window) {
  PartitionSeal seal;
  seal.partition = index_;
  seal.window = window;
  seal.ops = window_ops_;
  seal.claim_changes = window_claim_changes_;
  seal.entity_changes = dirty_count_;
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < dirty_count_; ++i) {
    Dirty& d = dirty_[i];
    EntityMap& map = maps_[d.schema];
    auto it = map.find(d.id);
    it->second.dirty = 0;
    if (it->second.claims == nullptr) map.erase(it);
  }
  dirty_count_ = 0;
  window_ops_ = 0;
  window_claim_changes_ = 0;
  return seal;
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
  return {get(applied_), get(asserts_),  get(patches_), get(retracts_),
          get(duplicates_), get(entities_), get(claims_), get(claim_bytes_)};
}

}  // namespace conv::engine

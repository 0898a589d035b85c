#include "engine/engine.h"

#include "engine/hash.h"

namespace conv::engine {

Engine::Engine(const EngineOptions& options, const SchemaSet& schemas, SourceTable& sources)
    : options_(options),
      schemas_(schemas),
      sources_(sources),
      coalescer_(options.window, options.partitions, &seals_) {
  for (uint32_t p = 0; p < options.partitions; ++p) {
    partitions_.push_back(
        std::make_unique<Partition>(p, schemas, sources, options.lanes, &seals_));
  }
  for (uint32_t l = 0; l < options.lanes; ++l) {
    lanes_.push_back(std::make_unique<Lane>(l, partitions_, &coalescer_));
  }
}

Engine::~Engine() { Stop(); }

void Engine::Start(WindowListener* listener) {
  for (auto& p : partitions_) threads_.emplace_back([part = p.get()] { part->Run(); });
  threads_.emplace_back([this, listener] { coalescer_.Run(listener); });
}

void Engine::Stop() {
  if (threads_.empty()) return;
  coalescer_.Stop();
  // The coalescer may be waiting for seals that no lane will trigger any more.
  PartitionSeal abort;
  abort.window = PartitionSeal::kAbort;
  seals_.enqueue(abort);
  for (auto& p : partitions_) {
    PartitionMsg msg;
    msg.kind = PartitionMsg::Kind::kStop;
    p->queue().enqueue(msg);
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

uint32_t Engine::PartitionOf(uint32_t schema, std::string_view id) const {
  return static_cast<uint32_t>(EntityHash(schema, id) % partitions_.size());
}

bool Engine::Query(const Schema& schema, std::string_view id, bool with_claims,
                   QueryResult* out) const {
  return partitions_[PartitionOf(schema.id, id)]->Query(schema, id, with_claims, out);
}

EngineStats Engine::Stats() const {
  EngineStats s;
  s.partitions = static_cast<uint32_t>(partitions_.size());
  for (const auto& p : partitions_) {
    PartitionCounters c = p->counters();
    s.totals.applied += c.applied;
    s.totals.asserts += c.asserts;
    s.totals.patches += c.patches;
    s.totals.retracts += c.retracts;
    s.totals.duplicates += c.duplicates;
    s.totals.entities += c.entities;
    s.totals.claims += c.claims;
    s.totals.claim_bytes += c.claim_bytes;
  }
  s.windows = coalescer_.counters();
  return s;
}

}  // namespace conv::engine

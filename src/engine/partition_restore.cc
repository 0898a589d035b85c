// Checkpoint and recovery for a partition: snapshot chunks of its claims for the
// checkpointer (served between bulks of ops), and the logged claim states, retractions
// and seq marks installed before the partition thread runs.

#include <algorithm>

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
    if (buckets_done % kApplyChunk == kApplyChunk - 1) Step(Work::kSnapshot);
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
    Unfreeze();
    snapshotting_ = false;
  }
  req->ready.signal();
}

void Partition::RestoreClaim(const wal::ClaimRecord& r, uint32_t source, uint64_t window) {
  auto it = FindOrAdd(maps_[r.schema], r.id);
  Entity& e = it->second;
  e.window = window;
  Install(e,
          r.uniform ? NewUniformClaim(source, r.mask, r.ts_max, r.values)
                    : RestoreNonUniformClaim(source, r.mask, r.ts_max, r.ts, r.values),
          FindClaim(e, source));
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

}  // namespace conv::engine

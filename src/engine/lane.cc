#include "engine/lane.h"

namespace conv::engine {

Lane::Lane(uint32_t index, const std::vector<std::unique_ptr<Partition>>& partitions,
           Coalescer* coalescer)
    : index_(index), open_(partitions.size(), nullptr), coalescer_(coalescer) {
  for (const auto& p : partitions) {
    partitions_.push_back(p.get());
    tokens_.emplace_back(p->queue());
  }
}

Lane::~Lane() {
  for (OpBatch* b : open_)
    delete b;
}

void Lane::Add(uint32_t partition, const OpView& op) {
  OpBatch*& b = open_[partition];
  if (b == nullptr) b = new OpBatch();
  b->Append(op);
}

void Lane::Flush() {
  bool any = false;
  for (size_t p = 0; p < open_.size(); ++p) {
    OpBatch* b = open_[p];
    if (b == nullptr) continue;
    open_[p] = nullptr;
    partitions_[p]->backlog().fetch_add(static_cast<int64_t>(b->count()),
                                        std::memory_order_relaxed);
    PartitionMsg msg;
    msg.kind = PartitionMsg::Kind::kOps;
    msg.lane = index_;
    msg.batch = b;
    partitions_[p]->queue().enqueue(tokens_[p], msg);
    any = true;
  }
  if (any) coalescer_->NoteActivity();
}

void Lane::Cut(uint64_t window) {
  last_cut_ = window;
  PartitionMsg msg;
  msg.kind = PartitionMsg::Kind::kCut;
  msg.window = window;
  Broadcast(msg);
}

void Lane::RetractSource(uint32_t source, uint64_t ts) {
  PartitionMsg msg;
  msg.kind = PartitionMsg::Kind::kRetractSource;
  msg.source = source;
  msg.window = ts;
  Broadcast(msg);
  coalescer_->NoteActivity();
}

void Lane::ResetSource(uint32_t source) {
  PartitionMsg msg;
  msg.kind = PartitionMsg::Kind::kResetSource;
  msg.source = source;
  Broadcast(msg);
}

void Lane::Broadcast(PartitionMsg msg) {
  Flush();
  msg.lane = index_;
  for (size_t p = 0; p < partitions_.size(); ++p)
    partitions_[p]->queue().enqueue(tokens_[p], msg);
}

bool Lane::Congested() const {
  for (const Partition* p : partitions_) {
    if (p->backlog_now() > kCongestedBacklog) {
      return true;
    }
  }
  return false;
}

}  // namespace conv::engine

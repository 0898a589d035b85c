#include "engine/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "engine/hash.h"
#include "wal/records.h"
#include "wal/replay.h"

namespace conv::engine {

namespace {

std::unique_ptr<Durability> MakeDurability(const EngineOptions& o, SourceTable& sources) {
  if (o.data_dir.empty()) return nullptr;
  wal::WriterOptions w;
  w.fsync = o.fsync;
  w.segment_bytes = o.segment_bytes;
  auto on_fatal = o.on_fatal;
  if (!on_fatal) {
    on_fatal = [log = o.log](const std::string& message) {
      if (log) log->Error("stopping: the write-ahead log failed: {}", message);
      std::abort();
    };
  }
  auto d = std::make_unique<Durability>(o.data_dir, w, &sources, o.log, on_fatal);
  d->SetReplica(o.replica);
  return d;
}

}  // namespace

std::string EncodeSchemaRecords(const SchemaSet& schemas, uint64_t* count) {
  std::string out;
  *count = 0;
  for (const auto& s : schemas.all()) {
    std::string_view names[kMaxFields];
    uint8_t types[kMaxFields];
    for (size_t i = 0; i < s->fields.size(); ++i) {
      names[i] = s->fields[i].name;
      types[i] = static_cast<uint8_t>(s->fields[i].type);
    }
    wal::PutSchema(out, s->id, s->name, static_cast<uint32_t>(s->fields.size()), names, types);
    ++*count;
  }
  return out;
}

Engine::Engine(const EngineOptions& options, const SchemaSet& schemas, SourceTable& sources)
    : options_(options),
      schemas_(schemas),
      sources_(sources),
      durability_(MakeDurability(options, sources)),
      coalescer_(options.window, options.partitions, &seals_, sources, durability_.get()) {
  if (options.follower) coalescer_.Follow();
  for (uint32_t p = 0; p < options.partitions; ++p) {
    partitions_.push_back(std::make_unique<Partition>(p, schemas, sources, options.lanes, &seals_,
                                                      durability_ != nullptr));
    partitions_.back()->set_resume_retention(options.resume_retention);
  }
  for (uint32_t l = 0; l < options.lanes; ++l) {
    lanes_.push_back(std::make_unique<Lane>(l, partitions_, &coalescer_));
  }
  if (durability_ != nullptr) {
    uint64_t count = 0;
    std::string records = EncodeSchemaRecords(schemas, &count);
    durability_->SetSchemaRecords(records, count);
    checkpointer_ =
        std::make_unique<Checkpointer>(options.data_dir, options.checkpoint_interval, partitions_,
                                       &coalescer_, durability_.get(), sources, options.log);
    checkpointer_->SetSchemaRecords(records, count);
    checkpointer_->SetReplica(options.replica);
    if (options.checkpoint_interval.count() > 0) {
      durability_->SetOnRound(
          [cp = checkpointer_.get()](uint64_t bytes) { cp->NoteLogBytes(bytes); });
    }
  }
}

Engine::~Engine() {
  Stop();
}

namespace {

// Applies recovery's batches to the partitions before Start(): with `threads`, one
// thread per partition (partitions share nothing), else on the calling thread. Each
// partition's batches are applied in the order they are added.
class RestorePool {
 public:
  RestorePool(std::vector<std::unique_ptr<Partition>>& partitions, bool threads)
      : partitions_(partitions) {
    if (!threads) return;
    workers_.resize(partitions.size());
    for (size_t p = 0; p < partitions.size(); ++p)
      workers_[p].thread = std::thread([this, p] { Work(p); });
  }
  ~RestorePool() {
    for (Worker& w : workers_) {
      std::lock_guard lock(w.mu);
      w.stop = true;
      w.cv.notify_all();
    }
    for (Worker& w : workers_)
      w.thread.join();
  }
  RestorePool(const RestorePool&) = delete;
  RestorePool& operator=(const RestorePool&) = delete;

  // Takes `*batch` (left empty) for partition p.
  void Add(size_t p, RestoreBatch* batch) {
    if (workers_.empty()) {
      partitions_[p]->Restore(*batch);
      *batch = RestoreBatch();
      return;
    }
    Worker& w = workers_[p];
    std::unique_lock lock(w.mu);
    // A few batches ahead at most: the log is read no faster than it is applied.
    w.cv.wait(lock, [&] { return w.queue.size() < kQueued; });
    w.queue.push_back(std::move(*batch));
    *batch = RestoreBatch();
    w.cv.notify_all();
  }
  // Returns once every batch added is applied.
  void Wait() {
    for (Worker& w : workers_) {
      std::unique_lock lock(w.mu);
      w.cv.wait(lock, [&] { return w.queue.empty() && !w.busy; });
    }
  }

 private:
  static constexpr size_t kQueued = 4;
  struct Worker {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<RestoreBatch> queue;
    bool busy = false;
    bool stop = false;
    std::thread thread;
  };

  void Work(size_t p) {
    Worker& w = workers_[p];
    for (;;) {
      RestoreBatch batch;
      {
        std::unique_lock lock(w.mu);
        w.cv.wait(lock, [&] { return w.stop || !w.queue.empty(); });
        if (w.queue.empty()) return;  // stopped
        batch = std::move(w.queue.front());
        w.queue.pop_front();
        w.busy = true;
        w.cv.notify_all();
      }
      partitions_[p]->Restore(batch);
      std::lock_guard lock(w.mu);
      w.busy = false;
      w.cv.notify_all();
    }
  }

  std::vector<std::unique_ptr<Partition>>& partitions_;
  std::deque<Worker> workers_;  // a deque: a Worker does not move
};

// Routes replayed records into the partitions' batches, before Start() (applied by a
// RestorePool, with `parallel` on a thread per partition); or, with `route` (a
// replica's window after Start()), into one ReplicatedBatch per partition.
class RecoverySink : public wal::RecordVisitor {
 public:
  RecoverySink(Engine& engine, std::vector<std::unique_ptr<Partition>>& partitions,
               SourceTable& sources, const SchemaSet& schemas,
               std::vector<ReplicatedBatch>* route = nullptr, bool leases = true,
               bool parallel = false)
      : engine_(engine),
        partitions_(partitions),
        sources_(sources),
        schemas_(schemas),
        route_(route),
        leases_(leases),
        pending_(partitions.size()),
        pool_(partitions, parallel && route == nullptr) {}

  void OnClaim(const wal::ClaimRecord& r) override {
    if (!Check(r.schema, r.id)) return;
    uint32_t src = Source(r.source);
    if (src == 0) return;
    uint32_t p = Route(r.schema, r.id);
    if (route_ != nullptr) {
      ReplicatedBatch& b = (*route_)[p];
      wal::PutClaim(b.records, r.schema, r.id, r.source, r.mask, r.uniform, r.ts_max, r.ts,
                    r.values);
      b.sources.push_back(src);
      return;
    }
    pending_[p].AddClaim(r, src, window_);
    if (pending_[p].size() >= kBatch) pool_.Add(p, &pending_[p]);
  }
  void OnRetract(const wal::RetractRecord& r) override {
    if (!Check(r.schema, r.id)) return;
    uint32_t src = Source(r.source);
    if (src == 0) return;
    uint32_t p = Route(r.schema, r.id);
    if (route_ != nullptr) {
      ReplicatedBatch& b = (*route_)[p];
      wal::PutRetract(b.records, r.schema, r.id, r.source);
      b.sources.push_back(src);
      return;
    }
    pending_[p].AddRetract(r.schema, r.id, src, window_);
    if (pending_[p].size() >= kBatch) pool_.Add(p, &pending_[p]);
  }
  void OnCheckpointEntities(uint32_t schema, uint64_t entities) override {
    if (schemas_.Find(schema) == nullptr) return;  // OnClaim reports it
    Flush();
    // Ids spread evenly over the partitions; a little room for the unevenness.
    size_t each = entities / partitions_.size();
    for (auto& p : partitions_)
      p->ReserveEntities(schema, each + each / 16 + 16);
  }
  // Applies every record routed so far.
  void Flush() {
    for (size_t p = 0; p < pending_.size(); ++p) {
      if (pending_[p].size() != 0) pool_.Add(p, &pending_[p]);
    }
    pool_.Wait();
  }
  void OnSource(const wal::SourceRecord& r) override {
    uint32_t src = Source(r.source);
    if (src == 0) return;
    uint64_t& m = marks[src];
    if (r.seq > m) m = r.seq;
  }
  void OnLease(const wal::LeaseRecord& r) override {
    if (!leases_) return;
    uint32_t src = Source(r.source);
    if (src != 0) sources_.RestoreLease(src, r.lease_ms);
  }
  void OnSchema(const wal::SchemaRecord&) override {}  // reconciled before recovery
  void OnWindow(uint64_t window) override { window_ = window; }

  std::unordered_map<uint32_t, uint64_t> marks;
  std::string error;

 private:
  // The entity's partition; a checkpoint holds an entity's claims together, so the
  // last one is kept.
  uint32_t Route(uint32_t schema, std::string_view id) {
    if (schema != last_schema_ || id != last_id_) {
      last_schema_ = schema;
      last_id_.assign(id);
      last_partition_ = engine_.PartitionOf(schema, id);
    }
    return last_partition_;
  }
  bool Check(uint32_t schema, std::string_view id) {
    if (schemas_.Find(schema) != nullptr && !id.empty() && id.size() <= kMaxIdBytes) return true;
    if (error.empty()) {
      error =
          fmt::format("the log names schema id {} (entity '{}'), which is not defined", schema, id);
    }
    return false;
  }
  uint32_t Source(std::string_view name) {
    // Logs hold few sources and many records: look the name up without the table's
    // lock for all but the first record of each source.
    for (const auto& [known, id] : cache_) {
      if (known == name) return id;
    }
    auto id = sources_.Intern(name);
    if (!id.ok()) Flush();  // the claims each source holds are known once all are in
    if (!id.ok() && engine_.ForgetSources([&](uint32_t old) {
          // More names since the checkpoint than the table holds: those without a
          // claim go, with their seq marks, as they could have at run time.
          marks.erase(old);
          std::erase_if(cache_, [&](const auto& c) { return c.second == old; });
          return true;
        }) > 0) {
      id = sources_.Intern(name);
    }
    if (!id.ok()) {
      if (error.empty()) error = id.message();
      return 0;
    }
    if (cache_.size() < 64) cache_.emplace_back(std::string(name), *id);
    return *id;
  }

  // Records per batch handed to a partition.
  static constexpr size_t kBatch = 4096;

  std::vector<std::pair<std::string, uint32_t>> cache_;
  uint64_t window_ = 0;  // of the block being replayed; 0 in the checkpoint
  Engine& engine_;
  std::vector<std::unique_ptr<Partition>>& partitions_;
  SourceTable& sources_;
  const SchemaSet& schemas_;
  std::vector<ReplicatedBatch>* route_;
  const bool leases_;
  uint32_t last_schema_ = 0;  // Route's last entity and its partition
  std::string last_id_;
  uint32_t last_partition_ = 0;
  std::vector<RestoreBatch> pending_;  // by partition
  RestorePool pool_;
};

}  // namespace

size_t Engine::ForgetSources(const std::function<bool(uint32_t)>& idle) {
  return sources_.Forget([&](uint32_t id) {
    for (const auto& p : partitions_) {
      if (p->source_claims(id) != 0) return false;
    }
    if (!idle(id)) return false;
    if (durability_ != nullptr) durability_->ForgetMark(id);
    return true;
  });
}

util::Status Engine::Recover(bool salvage, wal::RecoveryReport* report) {
  if (durability_ == nullptr) return util::Status::Ok();
  return Restore(
      [&](wal::RecordVisitor& sink) {
        return wal::Recover(options_.data_dir, sink, salvage, report);
      },
      [&] {
        return std::pair{report->last_window,
                         report->used_checkpoint ? report->checkpoint_window : 0};
      });
}

util::Status Engine::RestoreFrom(
    const std::function<util::Status(wal::RecordVisitor&, uint64_t*, uint64_t*)>& read) {
  uint64_t last = 0, checkpoint = 0;
  return Restore([&](wal::RecordVisitor& sink) { return read(sink, &last, &checkpoint); },
                 [&] {
                   return std::pair{last, checkpoint};
                 });
}

util::Status Engine::Restore(const std::function<util::Status(wal::RecordVisitor&)>& read,
                             const std::function<std::pair<uint64_t, uint64_t>()>& windows) {
  RecoverySink sink(*this, partitions_, sources_, schemas_, nullptr, !options_.follower,
                    options_.parallel_recovery);
  if (auto st = read(sink); !st.ok()) return st;
  sink.Flush();
  if (!sink.error.empty()) return util::Status::Error(sink.error);
  auto [last_window, checkpoint_window] = windows();
  for (const auto& [src, seq] : sink.marks) {
    for (auto& p : partitions_)
      p->RestoreMark(src, seq);
    sources_.NoteDurable(src, seq);
    if (durability_ != nullptr) durability_->RestoreMark(src, seq, last_window);
  }
  if (durability_ != nullptr) durability_->RestoreMark(0, 0, last_window);
  coalescer_.RestoreWindow(last_window);
  replicated_window_ = last_window;
  for (auto& p : partitions_)
    p->RestoreWindow(last_window);
  // Deletions before the checkpoint left no tombstones.
  recovered_from_ = checkpoint_window;
  return util::Status::Ok();
}

util::Status Engine::ApplyReplicatedWindow(uint64_t window, std::string_view blocks) {
  const uint64_t last = replicated_window_;
  if (window <= last) {
    return util::Status::Error(
        fmt::format("replicated window {} is not after the last window applied, {}", window, last));
  }
  std::vector<ReplicatedBatch> batches(partitions_.size());
  RecoverySink sink(*this, partitions_, sources_, schemas_, &batches, false);
  uint64_t records = 0;
  if (auto st = wal::ReplayWindowImage(blocks, window, sink, &records); !st.ok()) return st;
  if (!sink.error.empty()) return util::Status::Error(sink.error);
  replicated_window_ = window;
  coalescer_.CloseReplicated(window, [this, batches = std::move(batches)](uint64_t w) mutable {
    for (size_t p = 0; p < partitions_.size(); ++p) {
      if (!batches[p].sources.empty()) partitions_[p]->AddReplicated(w, std::move(batches[p]));
    }
  });
  return util::Status::Ok();
}

void Engine::Start(WindowListener* listener) {
  for (auto& p : partitions_)
    threads_.emplace_back([part = p.get()] { part->Run(); });
  threads_.emplace_back([this, listener] { coalescer_.Run(listener); });
  if (durability_ != nullptr) {
    durability_thread_ = std::thread(
        [this] { durability_->Run([this](uint64_t w) { coalescer_.MarkDurable(w); }); });
    if (options_.checkpoint_interval.count() > 0) {
      checkpoint_thread_ = std::thread([this] { checkpointer_->Run(); });
    }
  }
}

util::Status Engine::Checkpoint() {
  if (checkpointer_ == nullptr) return util::Status::Error("no data dir: nothing to checkpoint");
  return checkpointer_->CheckpointNow();
}

bool Engine::CheckpointSoon() {
  if (checkpointer_ == nullptr || options_.checkpoint_interval.count() == 0) return false;
  checkpointer_->RequestSoon();
  return true;
}

void Engine::Stop() {
  if (threads_.empty()) return;
  coalescer_.Stop();
  if (checkpointer_ != nullptr) checkpointer_->Stop();
  if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
  // The coalescer may be waiting for seals that no lane will trigger any more.
  PartitionSeal abort;
  abort.window = PartitionSeal::kAbort;
  seals_.enqueue(abort);
  for (auto& p : partitions_) {
    PartitionMsg msg;
    msg.kind = PartitionMsg::Kind::kStop;
    p->queue().enqueue(msg);
  }
  for (auto& t : threads_)
    t.join();
  threads_.clear();
  if (durability_ != nullptr) {
    durability_->Stop();
    if (durability_thread_.joinable()) durability_thread_.join();
  }
}

void Engine::StartFeed(uint32_t schema, std::vector<std::shared_ptr<FeedWalk>> walks,
                       std::function<void(uint64_t)> on_start) {
  coalescer_.AtBoundary(
      [this, schema, walks = std::move(walks), on_start = std::move(on_start)](uint64_t w) mutable {
        for (size_t p = 0; p < partitions_.size(); ++p) {
          FeedRequest r;
          r.schema = schema;
          r.watch = 1;
          if (!walks.empty()) r.walk = std::move(walks[p]);
          partitions_[p]->AddFeedRequest(w, std::move(r));
        }
        on_start(w);
      });
}

void Engine::StopFeed(uint32_t schema) {
  coalescer_.AtBoundary([this, schema](uint64_t w) {
    for (auto& p : partitions_) {
      FeedRequest r;
      r.schema = schema;
      r.watch = -1;
      p->AddFeedRequest(w, std::move(r));
    }
  });
}

uint64_t Engine::retained_from() const {
  uint64_t r = recovered_from_;
  for (const auto& p : partitions_)
    r = std::max(r, p->retained_from());
  return r;
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
  s.logging = durability_ != nullptr;
  s.fsync = s.logging && options_.fsync;
  if (durability_ != nullptr) s.wal = durability_->counters();
  if (checkpointer_ != nullptr) s.checkpoints = checkpointer_->counters();
  return s;
}

}  // namespace conv::engine

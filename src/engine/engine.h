#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/coalescer.h"
#include "engine/lane.h"
#include "engine/partition.h"
#include "engine/schema.h"
#include "engine/sources.h"

namespace conv::engine {

struct EngineOptions {
  uint32_t partitions = 2;
  uint32_t lanes = 1;  // one per I/O thread
  std::chrono::microseconds window{10'000};
};

struct EngineStats {
  PartitionCounters totals;
  CoalescerCounters windows;
  uint32_t partitions = 0;
};

// The engine facade: owns the partitions, their threads and the coalescer, and
// routes. It coordinates only; the work is in Partition, Lane and Coalescer.
class Engine {
 public:
  Engine(const EngineOptions& options, const SchemaSet& schemas, SourceTable& sources);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Starts the partition and coalescer threads. `listener` must outlive Stop().
  void Start(WindowListener* listener);
  // Closes a window now and waits until it is durable; see Coalescer::Flush.
  uint64_t Flush() { return coalescer_.Flush(); }
  // Stops and joins the threads. Ops not yet in a closed window are dropped: call
  // Flush() first for a graceful stop.
  void Stop();

  Lane& lane(size_t i) { return *lanes_[i]; }
  size_t lane_count() const { return lanes_.size(); }
  uint32_t PartitionOf(uint32_t schema, std::string_view id) const;
  // Any thread.
  bool Query(const Schema& schema, std::string_view id, bool with_claims,
             QueryResult* out) const;
  EngineStats Stats() const;

  const SchemaSet& schemas() const { return schemas_; }
  SourceTable& sources() { return sources_; }
  const EngineOptions& options() const { return options_; }

 private:
  const EngineOptions options_;
  const SchemaSet& schemas_;
  SourceTable& sources_;
  SealQueue seals_;
  Coalescer coalescer_;
  std::vector<std::unique_ptr<Partition>> partitions_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::vector<std::thread> threads_;
};

}  // namespace conv::engine

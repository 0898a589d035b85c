#pragma once

// What reads of the engine return: a point read's result and the partitions'
// counters. Apart from partition.h so that readers (net/) need not see a partition.

#include <cstdint>
#include <string>
#include <vector>

#include "engine/entity.h"

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

}  // namespace conv::engine

// The load generator's workload (workload.h): ids made on demand, as EntityId makes them.

#include <doctest/doctest.h>

#include <string>

#include "cmd/workload.h"
#include "engine/schema.h"

TEST_CASE("workload: ids are made on demand, each as EntityId names it") {
  conv::engine::SchemaSet schemas;
  const conv::engine::Schema& player = *schemas.FindByName("player");
  // 10 billion entities: far more than memory could hold as strings.
  conv::cmd::Workload w(player, 10'000'000'000ull, 0, conv::cmd::Mix{}, 1);
  CHECK(w.entities() == 10'000'000'000ull);
  for (uint64_t n : {uint64_t{0}, uint64_t{7}, uint64_t{123'456}, uint64_t{9'999'999'999}}) {
    CAPTURE(n);
    CHECK(std::string(w.Id(n)) == conv::cmd::EntityId(player, n));
  }
  for (int i = 0; i < 100; ++i) {
    uint64_t n = w.NextEntity();
    CHECK(n < w.entities());
    CHECK(std::string(w.Id(n)) == conv::cmd::EntityId(player, n));
  }
}

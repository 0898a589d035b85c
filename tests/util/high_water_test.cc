#include "util/high_water.h"

#include <doctest/doctest.h>

using conv::util::HighWater;

TEST_CASE("high water: a buffer grown by one burst is shrunk after a period of small uses") {
  HighWater hw(4, 16);
  // The burst and the uses of its period: the most of the period is the burst.
  CHECK(hw.Note(1000, 1024) == 0);
  CHECK(hw.Note(10, 1024) == 0);
  CHECK(hw.Note(10, 1024) == 0);
  CHECK(hw.Note(10, 1024) == 0);  // period ends: 1024 is not over 4 x 1000
  // A period of small uses: shrink to twice their most.
  CHECK(hw.Note(10, 1024) == 0);
  CHECK(hw.Note(30, 1024) == 0);
  CHECK(hw.Note(5, 1024) == 0);
  CHECK(hw.Note(20, 1024) == 60);
  // Shrunk: the next period keeps it.
  for (int i = 0; i < 3; ++i)
    CHECK(hw.Note(30, 60) == 0);
  CHECK(hw.Note(30, 60) == 0);
}

TEST_CASE("high water: never below the floor, and an idle buffer is left at it") {
  HighWater hw(2, 64);
  CHECK(hw.Note(0, 64) == 0);
  CHECK(hw.Note(0, 64) == 0);  // at the floor: nothing to give back
  CHECK(hw.Note(0, 1000) == 0);
  CHECK(hw.Note(1, 1000) == 64);  // twice the most is 2: the floor instead
  CHECK(hw.Note(0, 256) == 0);
  CHECK(hw.Note(64, 256) == 0);  // 256 is not over 4 x 64
}

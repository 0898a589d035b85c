#pragma once

// What the fuzz targets share: a check that stops the run with a message (libFuzzer
// then saves the input as a crash-* reproducer), and the schemas of the protocol
// vectors (tests/vectors/frames.json) so that seeds taken from them decode.

#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/schema.h"

// A property the code must hold for every input; a failure aborts the run.
#define FUZZ_CHECK(cond, ...)                                                          \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, "  " __VA_ARGS__);                                          \
      std::fprintf(stderr, "\n");                                                      \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

namespace conv::fuzz {

// player (1), kitchen (2: one field of every type) and wide (3: 64 bool fields), as
// in tests/vectors/frames.json; `index` is taken modulo 3.
inline engine::Schema VectorSchema(unsigned index) {
  using engine::FieldType;
  switch (index % 3) {
    case 0:
      return engine::PlayerSchema();
    case 1: {
      engine::Schema s;
      s.id = 2;
      s.name = "kitchen";
      s.fields = {{"flag", FieldType::kBool},
                  {"count", FieldType::kI64},
                  {"ratio", FieldType::kF64},
                  {"label", FieldType::kString},
                  {"blob", FieldType::kBytes}};
      return s;
    }
    default: {
      engine::Schema s;
      s.id = 3;
      s.name = "wide";
      for (int i = 0; i < 64; ++i)
        s.fields.push_back({"b" + std::to_string(i), FieldType::kBool});
      return s;
    }
  }
}

}  // namespace conv::fuzz

#include "cmd/workload.h"

#include <fmt/format.h>

#include <charconv>

#include "engine/record.h"

namespace conv::cmd {

util::Result<Mix> ParseMix(const std::string& text) {
  unsigned v[3] = {0, 0, 0};
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (int i = 0; i < 3; ++i) {
    auto [next, ec] = std::from_chars(p, end, v[i]);
    if (ec != std::errc() || (i < 2 && (next == end || *next != '/'))) {
      return util::Status::Error(fmt::format(
          "--mix '{}' is not A/P/R: three whole percentages for ASSERT/PATCH/RETRACT, like "
          "70/20/10",
          text));
    }
    p = i < 2 ? next + 1 : next;
  }
  if (p != end) {
    return util::Status::Error(fmt::format("--mix '{}' has extra text after A/P/R", text));
  }
  if (v[0] + v[1] + v[2] != 100) {
    return util::Status::Error(
        fmt::format("--mix {}: the percentages add up to {}, they must add up to 100", text,
                    v[0] + v[1] + v[2]));
  }
  if (v[0] + v[1] == 0) {
    return util::Status::Error(
        fmt::format("--mix {}: only RETRACTs would never create an entity", text));
  }
  return Mix{v[0], v[1], v[2]};
}

std::string EntityId(const engine::Schema& schema, uint64_t n) {
  return fmt::format("{}-{}", schema.name.substr(0, 1), n);
}

namespace {

engine::Value RandomValue(engine::FieldType type, std::mt19937_64& rng, uint64_t n) {
  switch (type) {
    case engine::FieldType::kBool:
      return (rng() & 1) != 0;
    case engine::FieldType::kI64:
      return static_cast<int64_t>(rng() % 100'000);
    case engine::FieldType::kF64:
      return static_cast<double>(rng() % 2'000'000) / 100.0 - 10'000.0;
    case engine::FieldType::kString:
      return fmt::format("v{}-{}", n, rng() % 1000);
    case engine::FieldType::kBytes: {
      engine::Bytes b;
      for (int i = 0; i < 8; ++i)
        b.data.push_back(static_cast<char>(rng() & 0xff));
      return b;
    }
  }
  return false;
}

}  // namespace

Workload::Workload(const engine::Schema& schema, uint64_t entities, unsigned hot_pct, Mix mix,
                   uint64_t seed)
    : rng_(seed), entities_(entities), prefix_(schema.name.substr(0, 1) + "-"), mix_(mix) {
  hot_count_ = hot_pct == 0 ? 0 : std::max<uint64_t>(1, entities * hot_pct / 100);
  constexpr size_t kPool = 256;
  for (size_t i = 0; i < kPool; ++i) {
    engine::RecordBuilder full(schema);
    engine::RecordBuilder partial(schema);
    uint64_t subset = 0;
    while (subset == 0)
      subset = rng_() & schema.AllFieldsMask();
    for (size_t f = 0; f < schema.fields.size(); ++f) {
      engine::Value v = RandomValue(schema.fields[f].type, rng_, i);
      (void)full.Set(f, v);
      if ((subset >> f) & 1) (void)partial.Set(f, v);
    }
    full_.push_back(full.Encode());
    partial_.push_back(partial.Encode());
  }
}

Workload::Kind Workload::NextKind() {
  auto roll = static_cast<unsigned>(rng_() % 100);
  if (roll < mix_.assert_pct) return Kind::kAssert;
  if (roll < mix_.assert_pct + mix_.patch_pct) return Kind::kPatch;
  return Kind::kRetract;
}

std::string_view Workload::Id(uint64_t entity) {
  char digits[20];
  auto [end, ec] = std::to_chars(digits, digits + sizeof(digits), entity);
  id_.assign(prefix_);
  id_.append(digits, end);
  return id_;
}

uint64_t Workload::NextEntity() {
  uint64_t n = entities_;
  if (hot_count_ == 0 || hot_count_ >= n) return rng_() % n;
  if (rng_() % 10 != 0) return rng_() % hot_count_;  // 90% of writes to the hot set
  return hot_count_ + rng_() % (n - hot_count_);
}

}  // namespace conv::cmd

#include "support/op_model.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "engine/record.h"
#include "net/messages.h"
#include "util/coding.h"

namespace conv::testing {

namespace {

uint64_t Mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

engine::Value ValueFor(engine::FieldType type, size_t field, uint64_t h, size_t name_bytes,
                       uint64_t seq) {
  switch (type) {
    case engine::FieldType::kBool:
      return (h & 1) != 0;
    case engine::FieldType::kI64:
      return static_cast<int64_t>(h % 2'000'001) - 1'000'000;
    case engine::FieldType::kF64:
      return static_cast<double>(h % 1'000'000) / 8.0 - 60'000.0;
    case engine::FieldType::kString: {
      std::string s = fmt::format("s{}-f{}-", seq, field);
      while (s.size() < name_bytes)
        s.push_back(static_cast<char>('a' + (h + s.size()) % 26));
      return s;
    }
    case engine::FieldType::kBytes:
      return engine::Bytes{std::string(1 + h % 7, static_cast<char>(h >> 8))};
  }
  return false;
}

}  // namespace

OpGenerator::OpGenerator(const engine::Schema& player, uint64_t seed, size_t entities, OpMix mix,
                         size_t name_bytes, std::string prefix)
    : schema_(player),
      seed_(seed),
      entities_(entities),
      mix_(mix),
      name_bytes_(name_bytes),
      prefix_(std::move(prefix)) {}

GeneratedOp OpGenerator::Op(size_t source, uint64_t seq) const {
  uint64_t h = Mix(seed_ ^ Mix(source * 0x100000001b3ull + 1) ^ Mix(seq));
  GeneratedOp op;
  op.seq = seq;
  op.ts = 1'000'000 + seq;
  op.id = EntityId((h >> 8) % entities_);
  unsigned pick = static_cast<unsigned>(h % 100);
  if (pick < mix_.assert_pct) {
    op.type = net::FrameType::kAssert;
  } else if (pick < mix_.assert_pct + mix_.patch_pct) {
    op.type = net::FrameType::kPatch;
  } else {
    op.type = net::FrameType::kRetract;
    return op;
  }
  uint64_t mask = (h >> 20) & schema_.AllFieldsMask();
  if (mask == 0) mask = 1;
  engine::RecordBuilder b(schema_);
  uint64_t vh = Mix(h);
  for (size_t i = 0; i < schema_.fields.size(); ++i) {
    if (((mask >> i) & 1) == 0) continue;
    vh = Mix(vh);
    auto st = b.Set(i, ValueFor(schema_.fields[i].type, i, vh, i == 0 ? name_bytes_ : 8, seq));
    if (!st.ok()) FAIL(st.message());
  }
  op.record = b.Encode();
  return op;
}

std::string OpGenerator::Frame(size_t source, uint64_t seq) const {
  GeneratedOp op = Op(source, seq);
  std::string out;
  net::EncodeWriteOp(out, {op.type, op.seq, op.ts, schema_.id, op.id, op.record});
  return out;
}

std::vector<std::string> OpGenerator::EntityIds() const {
  std::vector<std::string> ids;
  for (size_t i = 0; i < entities_; ++i)
    ids.push_back(EntityId(i));
  return ids;
}

void StateModel::Apply(const std::string& source, const GeneratedOp& op) {
  auto& claims = sources_[source];
  if (op.type == net::FrameType::kRetract) {
    claims.erase(op.id);
    return;
  }
  engine::RecordView view;
  auto st = engine::ParseRecord(schema_, op.record, &view);
  if (!st.ok()) FAIL(st.message());
  std::string_view slices[engine::kMaxFields];
  engine::SliceFields(schema_, view.mask, view.values, slices);
  Claim& c = claims[op.id];
  if (op.type == net::FrameType::kAssert) c.fields.clear();
  for (size_t i = 0; i < schema_.fields.size(); ++i) {
    if ((view.mask >> i) & 1) c.fields[static_cast<int>(i)] = {std::string(slices[i]), op.ts};
  }
  c.ts_max = 0;
  for (const auto& [i, f] : c.fields)
    c.ts_max = std::max(c.ts_max, f.ts);
}

namespace {

std::string EncodeRecord(const std::map<int, std::string_view>& fields) {
  uint64_t mask = 0;
  std::string values;
  for (const auto& [i, slice] : fields) {
    mask |= uint64_t{1} << i;
    values += slice;
  }
  std::string out;
  util::PutVarint(out, mask);
  return out + values;
}

}  // namespace

StateByEntity StateModel::State() const {
  StateByEntity out;
  // Per entity and field: the winning (ts, source) and its value.
  std::map<std::string,
           std::map<int, std::pair<std::pair<uint64_t, std::string>, std::string_view>>>
      winners;
  for (const auto& [source, claims] : sources_) {
    for (const auto& [id, c] : claims) {
      std::map<int, std::string_view> own;
      for (const auto& [i, f] : c.fields) {
        own[i] = f.slice;
        auto key = std::make_pair(f.ts, source);
        auto& w = winners[id];
        auto it = w.find(i);
        if (it == w.end() || it->second.first < key) w[i] = {key, f.slice};
      }
      out[id].claims[source] = {c.ts_max, EncodeRecord(own)};
    }
  }
  for (const auto& [id, fields] : winners) {
    std::map<int, std::string_view> values;
    for (const auto& [i, w] : fields)
      values[i] = w.second;
    out[id].record = EncodeRecord(values);
  }
  return out;
}

util::Result<StateByEntity> QueryState(net::Client& c, const engine::Schema& schema,
                                       const std::vector<std::string>& ids) {
  StateByEntity out;
  for (const auto& id : ids) {
    auto r = c.Query(schema, id, true);
    if (!r.ok()) return util::Status::Error(fmt::format("QUERY {}: {}", id, r.message()));
    if (!r->found) continue;
    if (r->claims.empty()) {
      return util::Status::Error(fmt::format("QUERY {}: found, but with no claims", id));
    }
    EntityState& e = out[id];
    e.record = r->record;
    for (const auto& rc : r->claims)
      e.claims[rc.source] = {rc.ts_max, rc.record};
  }
  return out;
}

std::string DescribeDifference(const StateByEntity& want, const StateByEntity& got, size_t limit) {
  std::string out;
  size_t n = 0;
  auto note = [&](const std::string& line) {
    if (n++ < limit) out += line + "\n";
  };
  auto hex = [](const std::string& s) {
    std::string h;
    for (unsigned char ch : s)
      h += fmt::format("{:02x}", ch);
    return h;
  };
  for (const auto& [id, e] : want) {
    auto it = got.find(id);
    if (it == got.end()) {
      note(fmt::format("{}: missing (want record {})", id, hex(e.record)));
      continue;
    }
    if (it->second.record != e.record) {
      note(fmt::format("{}: converged record differs: want {}, got {}", id, hex(e.record),
                       hex(it->second.record)));
    }
    for (const auto& [src, c] : e.claims) {
      auto g = it->second.claims.find(src);
      if (g == it->second.claims.end()) {
        note(fmt::format("{}: claim of {} missing (want ts {} record {})", id, src, c.ts_max,
                         hex(c.record)));
      } else if (!(g->second == c)) {
        note(fmt::format("{}: claim of {} differs: want ts {} record {}, got ts {} record {}", id,
                         src, c.ts_max, hex(c.record), g->second.ts_max, hex(g->second.record)));
      }
    }
  }
  for (const auto& [id, e] : got) {
    auto it = want.find(id);
    for (const auto& [src, g] : e.claims) {
      if (it == want.end() || !it->second.claims.contains(src)) {
        note(fmt::format("{}: unexpected claim of {} (ts {} record {})", id, src, g.ts_max,
                         hex(g.record)));
      }
    }
  }
  if (n > limit) out += fmt::format("... and {} more differences\n", n - limit);
  return out;
}

uint64_t TestSeed(const char* env, uint64_t fallback) {
  const char* v = std::getenv(env);
  if (v != nullptr && *v != '\0') {
    char* end = nullptr;
    unsigned long long n = std::strtoull(v, &end, 0);
    if (end != nullptr && *end == '\0') return n;
  }
  return fallback;
}

}  // namespace conv::testing

// The schema file (docs/schemas.md): the input is the file's text, added to a set
// that holds the built-in `player` schema.
//
// Properties: a refusal names the origin and the line and adds nothing; schemas
// that are accepted have valid names, 1 to 64 fields of known types, and ids that
// follow on from player's; written back as a schema file they parse to the same
// schemas; and they reconcile with themselves as persisted schemas (a restart with
// an unchanged file) without a change.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "check.h"
#include "engine/schema.h"

namespace conv::engine {
namespace {

std::string Describe(const SchemaSet& set) {
  std::string out;
  for (const auto& s : set.all()) {
    out += std::to_string(s->id) + " " + s->name;
    for (const auto& f : s->fields)
      out += " " + f.name + ":" + std::string(FieldTypeName(f.type));
    out += "\n";
  }
  return out;
}

void CheckSchemaFile(std::string_view text) {
  SchemaSet set;
  util::Status st = set.AddFromText(text, "fuzz.txt");
  if (!st.ok()) {
    FUZZ_CHECK(st.message().rfind("fuzz.txt:", 0) == 0, "no origin in: %s", st.message().c_str());
    FUZZ_CHECK(set.size() == 1, "a refused file added %zu schemas", set.size() - 1);
    return;
  }
  std::string rewritten;
  std::vector<wal::SchemaDef> persisted;
  for (size_t i = 0; i < set.size(); ++i) {
    const Schema& s = *set.all()[i];
    FUZZ_CHECK(s.id == i + 1 && set.Find(s.id) == &s && set.FindByName(s.name) == &s,
               "schema %zu is not found by id and name", i);
    FUZZ_CHECK(!s.fields.empty() && s.fields.size() <= kMaxFields, "%zu fields", s.fields.size());
    wal::SchemaDef def{s.id, s.name, {}};
    for (const auto& f : s.fields) {
      FUZZ_CHECK(static_cast<int>(f.type) <= 4, "field type %d", static_cast<int>(f.type));
      def.fields.emplace_back(f.name, static_cast<uint8_t>(f.type));
    }
    persisted.push_back(std::move(def));
    if (i == 0) continue;  // player is built in
    rewritten += s.name;
    for (const auto& f : s.fields)
      rewritten += " " + f.name + ":" + std::string(FieldTypeName(f.type));
    rewritten += "\n";
  }
  SchemaSet again;
  util::Status st2 = again.AddFromText(rewritten, "rewritten");
  FUZZ_CHECK(st2.ok(), "the rewritten file is refused: %s", st2.message().c_str());
  FUZZ_CHECK(Describe(again) == Describe(set), "the rewritten file parses differently");

  std::string before = Describe(set);
  util::Status st3 = set.Reconcile(persisted);
  FUZZ_CHECK(st3.ok(), "reconciling with itself fails: %s", st3.message().c_str());
  FUZZ_CHECK(Describe(set) == before, "reconciling with itself changed the set");
}

}  // namespace
}  // namespace conv::engine

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  conv::engine::CheckSchemaFile(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}

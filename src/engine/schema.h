#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"
#include "wal/replay.h"

namespace conv::engine {

// Wire codes of the field types (protocol v1, WELCOME).
enum class FieldType : uint8_t { kBool = 0, kI64 = 1, kF64 = 2, kString = 3, kBytes = 4 };

constexpr size_t kMaxFields = 64;
constexpr size_t kMaxIdBytes = 255;
constexpr uint32_t kPlayerSchemaId = 1;

std::string_view FieldTypeName(FieldType type);
bool ParseFieldType(std::string_view name, FieldType* type);

struct FieldDef {
  std::string name;
  FieldType type;
};

struct Schema {
  uint32_t id = 0;
  std::string name;
  std::vector<FieldDef> fields;

  // Index of the field called `name`, or -1.
  int FieldIndex(std::string_view name) const;
  // Mask with a bit for every field of the schema.
  uint64_t AllFieldsMask() const {
    return fields.size() == 64 ? ~uint64_t{0} : (uint64_t{1} << fields.size()) - 1;
  }
};

// The built-in `player` schema of SPEC §2.
Schema PlayerSchema();

// The schemas a server knows, by id. Ids are dense from 1; `player` is always id 1.
// Immutable once the server starts, so any thread may read it without locking.
class SchemaSet {
 public:
  SchemaSet();

  // Adds schemas parsed from a schema file. Fails (adding nothing) when a name is
  // taken, a field is malformed, or a limit is passed.
  util::Status AddFromText(std::string_view text, std::string_view origin);
  util::Status AddFromFile(const std::string& path);
  // Brings in the schemas a data dir was written with, so that ids stay stable:
  // a persisted schema keeps its id; the configured one of the same name may append
  // fields but not change, drop or reorder existing ones; persisted schemas the
  // configuration no longer names are kept; new ones get the next ids. On failure
  // the set is unchanged and the message names the schema and field.
  util::Status Reconcile(const std::vector<wal::SchemaDef>& persisted);

  // nullptr when unknown.
  const Schema* Find(uint64_t id) const {
    return id >= 1 && id <= schemas_.size() ? schemas_[id - 1].get() : nullptr;
  }
  const Schema* FindByName(std::string_view name) const;
  const std::vector<std::unique_ptr<Schema>>& all() const { return schemas_; }
  size_t size() const { return schemas_.size(); }

 private:
  std::vector<std::unique_ptr<Schema>> schemas_;
};

}  // namespace conv::engine

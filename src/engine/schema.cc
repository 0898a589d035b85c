#include "engine/schema.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace conv::engine {

namespace {

constexpr std::string_view kTypeNames[] = {"bool", "i64", "f64", "string", "bytes"};

bool IsIdentifier(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!alpha(s[0])) return false;
  for (char c : s) {
    if (!alpha(c) && !(c >= '0' && c <= '9') && c != '-') return false;
  }
  return true;
}

std::vector<std::string_view> SplitWords(std::string_view line) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
      ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
      ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

}  // namespace

std::string_view FieldTypeName(FieldType type) {
  return kTypeNames[static_cast<int>(type)];
}

bool ParseFieldType(std::string_view name, FieldType* type) {
  for (size_t i = 0; i < std::size(kTypeNames); ++i) {
    if (kTypeNames[i] == name) {
      *type = static_cast<FieldType>(i);
      return true;
    }
  }
  return false;
}

int Schema::FieldIndex(std::string_view field_name) const {
  for (size_t i = 0; i < fields.size(); ++i) {
    if (fields[i].name == field_name) return static_cast<int>(i);
  }
  return -1;
}

Schema PlayerSchema() {
  Schema s;
  s.id = kPlayerSchemaId;
  s.name = "player";
  s.fields = {
      {"name", FieldType::kString}, {"team", FieldType::kString}, {"x", FieldType::kF64},
      {"y", FieldType::kF64},       {"z", FieldType::kF64},       {"health", FieldType::kI64},
      {"score", FieldType::kI64},   {"level", FieldType::kI64},   {"online", FieldType::kBool}};
  return s;
}

SchemaSet::SchemaSet() {
  schemas_.push_back(std::make_unique<Schema>(PlayerSchema()));
}

const Schema* SchemaSet::FindByName(std::string_view name) const {
  for (const auto& s : schemas_) {
    if (s->name == name) return s.get();
  }
  return nullptr;
}

// Format: one schema per line, `NAME FIELD:TYPE FIELD:TYPE ...`; `#` starts a
// comment; blank lines are ignored. See docs/schemas.md.
util::Status SchemaSet::AddFromText(std::string_view text, std::string_view origin) {
  std::vector<std::unique_ptr<Schema>> parsed;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    auto words = SplitWords(line);
    if (words.empty()) continue;
    auto where = [&] { return fmt::format("{}:{}", origin, line_no); };
    auto schema = std::make_unique<Schema>();
    schema->name = std::string(words[0]);
    if (!IsIdentifier(words[0])) {
      return util::Status::Error(
          fmt::format("{}: schema name '{}' must start with a letter or '_' and use only letters, "
                      "digits, '_' and '-' (at most 64 characters)",
                      where(), words[0]));
    }
    if (FindByName(schema->name) != nullptr) {
      return util::Status::Error(
          fmt::format("{}: schema '{}' is already defined", where(), schema->name));
    }
    for (const auto& other : parsed) {
      if (other->name == schema->name) {
        return util::Status::Error(
            fmt::format("{}: schema '{}' is defined twice", where(), schema->name));
      }
    }
    if (words.size() == 1) {
      return util::Status::Error(
          fmt::format("{}: schema '{}' has no fields", where(), schema->name));
    }
    if (words.size() - 1 > kMaxFields) {
      return util::Status::Error(fmt::format("{}: schema '{}' has {} fields; the limit is {}",
                                             where(), schema->name, words.size() - 1, kMaxFields));
    }
    for (size_t i = 1; i < words.size(); ++i) {
      std::string_view w = words[i];
      size_t colon = w.find(':');
      if (colon == std::string_view::npos) {
        return util::Status::Error(
            fmt::format("{}: field '{}' of schema '{}' needs a type, like {}:string", where(), w,
                        schema->name, w));
      }
      std::string_view fname = w.substr(0, colon);
      std::string_view tname = w.substr(colon + 1);
      if (!IsIdentifier(fname)) {
        return util::Status::Error(
            fmt::format("{}: field name '{}' of schema '{}' is not an identifier", where(), fname,
                        schema->name));
      }
      FieldType type;
      if (!ParseFieldType(tname, &type)) {
        return util::Status::Error(fmt::format(
            "{}: field '{}' of schema '{}' has unknown type '{}' (bool, i64, f64, string, "
            "bytes)",
            where(), fname, schema->name, tname));
      }
      if (schema->FieldIndex(fname) >= 0) {
        return util::Status::Error(fmt::format("{}: field '{}' appears twice in schema '{}'",
                                               where(), fname, schema->name));
      }
      schema->fields.push_back({std::string(fname), type});
    }
    parsed.push_back(std::move(schema));
  }
  for (auto& s : parsed) {
    s->id = static_cast<uint32_t>(schemas_.size() + 1);
    schemas_.push_back(std::move(s));
  }
  return util::Status::Ok();
}

util::Status SchemaSet::Reconcile(const std::vector<wal::SchemaDef>& persisted) {
  if (persisted.empty()) return util::Status::Ok();
  std::vector<std::unique_ptr<Schema>> out;
  // Ids are 1..N: a larger one (a damaged data dir may say 2^32-1) leaves a gap, found
  // without allocating for every id up to it.
  uint32_t max_id = 0;
  for (const auto& p : persisted)
    max_id = std::max(max_id, p.id);
  if (max_id > persisted.size()) {
    std::vector<uint32_t> ids;
    for (const auto& p : persisted)
      ids.push_back(p.id);
    std::sort(ids.begin(), ids.end());
    uint32_t missing = 1;
    for (uint32_t id : ids) {
      if (id > missing) break;
      if (id == missing) ++missing;
    }
    return util::Status::Error(fmt::format("the data dir has no schema with id {}", missing));
  }
  out.resize(max_id);
  for (const auto& p : persisted) {
    if (p.id == 0 || out[p.id - 1] != nullptr) {
      return util::Status::Error(fmt::format("the data dir defines schema id {} twice", p.id));
    }
    const Schema* configured = FindByName(p.name);
    auto s = std::make_unique<Schema>();
    s->id = p.id;
    s->name = p.name;
    if (configured == nullptr) {
      for (const auto& [fname, ftype] : p.fields) {
        s->fields.push_back({fname, static_cast<FieldType>(ftype)});
      }
    } else {
      if (configured->fields.size() < p.fields.size()) {
        return util::Status::Error(fmt::format(
            "schema '{}' has {} fields in the data dir but {} now: fields may be appended, "
            "never removed (field '{}' is missing)",
            p.name, p.fields.size(), configured->fields.size(),
            p.fields[configured->fields.size()].first));
      }
      for (size_t i = 0; i < p.fields.size(); ++i) {
        const FieldDef& f = configured->fields[i];
        auto type = static_cast<FieldType>(p.fields[i].second);
        if (f.name != p.fields[i].first) {
          return util::Status::Error(fmt::format(
              "schema '{}': field {} is '{}' in the data dir but '{}' now: existing fields "
              "cannot be renamed or reordered",
              p.name, i, p.fields[i].first, f.name));
        }
        if (f.type != type) {
          return util::Status::Error(fmt::format(
              "schema '{}': field '{}' changed type from {} to {}; an existing field's type "
              "cannot change",
              p.name, f.name, FieldTypeName(type), FieldTypeName(f.type)));
        }
      }
      s->fields = configured->fields;
    }
    out[p.id - 1] = std::move(s);
  }
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == nullptr) {
      return util::Status::Error(fmt::format("the data dir has no schema with id {}", i + 1));
    }
  }
  for (const auto& c : schemas_) {
    bool known = false;
    for (const auto& s : out)
      known = known || s->name == c->name;
    if (known) continue;
    auto s = std::make_unique<Schema>(*c);
    s->id = static_cast<uint32_t>(out.size() + 1);
    out.push_back(std::move(s));
  }
  schemas_ = std::move(out);
  return util::Status::Ok();
}

util::Status SchemaSet::AddFromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return util::Status::Error(fmt::format("cannot read schema file '{}'", path));
  std::stringstream buf;
  buf << in.rdbuf();
  return AddFromText(buf.str(), path);
}

}  // namespace conv::engine

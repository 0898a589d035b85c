// Schemas (SPEC §2, docs/schemas.md): the built-in player schema and the schema-file
// parser, including every way a file is refused.

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "engine/schema.h"

using namespace conv;
using engine::FieldType;

namespace {

// "name:type name:type ...", for comparing a schema's fields in one check.
std::string FieldList(const engine::Schema& s) {
  std::string out;
  for (const auto& f : s.fields) {
    if (!out.empty()) out += ' ';
    out += fmt::format("{}:{}", f.name, engine::FieldTypeName(f.type));
  }
  return out;
}

bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// Parses `text` as schemas.txt into a fresh set that must refuse it, leaving the set
// as it was; returns the message.
std::string Refusal(std::string_view text) {
  engine::SchemaSet set;
  util::Status s = set.AddFromText(text, "schemas.txt");
  CHECK_FALSE(s.ok());
  CHECK(set.size() == 1);
  return s.message();
}

std::string Words(std::string_view prefix, int n, std::string_view type) {
  std::string out;
  for (int i = 0; i < n; ++i)
    out += fmt::format(" {}{}:{}", prefix, i, type);
  return out;
}

}  // namespace

TEST_CASE("schema: the built-in player schema is exactly the one of the spec") {
  engine::SchemaSet set;
  REQUIRE(set.size() == 1);
  const engine::Schema* player = set.Find(engine::kPlayerSchemaId);
  REQUIRE(player != nullptr);
  CHECK(engine::kPlayerSchemaId == 1);
  CHECK(player->id == 1);
  CHECK(player->name == "player");
  CHECK(FieldList(*player) ==
        "name:string team:string x:f64 y:f64 z:f64 health:i64 score:i64 level:i64 online:bool");
  CHECK(player->AllFieldsMask() == 0x1ff);
  CHECK(set.FindByName("player") == player);
  CHECK(player->FieldIndex("name") == 0);
  CHECK(player->FieldIndex("online") == 8);
  CHECK(player->FieldIndex("nope") == -1);
  CHECK(set.Find(0) == nullptr);
  CHECK(set.Find(2) == nullptr);
  CHECK(set.FindByName("nope") == nullptr);

  engine::Schema copy = engine::PlayerSchema();
  CHECK(copy.id == player->id);
  CHECK(FieldList(copy) == FieldList(*player));
}

TEST_CASE("schema: field types have fixed wire codes and names") {
  CHECK(static_cast<int>(FieldType::kBool) == 0);
  CHECK(static_cast<int>(FieldType::kI64) == 1);
  CHECK(static_cast<int>(FieldType::kF64) == 2);
  CHECK(static_cast<int>(FieldType::kString) == 3);
  CHECK(static_cast<int>(FieldType::kBytes) == 4);
  for (FieldType t : {FieldType::kBool, FieldType::kI64, FieldType::kF64, FieldType::kString,
                      FieldType::kBytes}) {
    FieldType parsed = FieldType::kBool;
    CHECK(engine::ParseFieldType(engine::FieldTypeName(t), &parsed));
    CHECK(parsed == t);
  }
  FieldType t;
  CHECK_FALSE(engine::ParseFieldType("int", &t));
  CHECK_FALSE(engine::ParseFieldType("String", &t));
  CHECK_FALSE(engine::ParseFieldType("", &t));
}

TEST_CASE("schema: a schema file in the documented format adds schemas with ids from 2") {
  engine::SchemaSet set;
  // The example of docs/schemas.md, with the comments, blank lines, tabs and CRLF
  // line ends the format allows.
  util::Status s = set.AddFromText(
      "# devices reporting telemetry\n"
      "device serial:string model:string temp:f64 uptime:i64 on:bool firmware:bytes\n"
      "\n"
      "   \t  \n"
      "  # indented comment\n"
      "service\tname:string  host:string port:i64 healthy:bool   # trailing comment\r\n"
      "_x-1 A_b-2:i64",  // no final newline
      "schemas.txt");
  REQUIRE_MESSAGE(s.ok(), s.message());
  REQUIRE(set.size() == 4);

  const engine::Schema* device = set.FindByName("device");
  REQUIRE(device != nullptr);
  CHECK(device->id == 2);
  CHECK(set.Find(2) == device);
  CHECK(FieldList(*device) ==
        "serial:string model:string temp:f64 uptime:i64 on:bool firmware:bytes");

  const engine::Schema* service = set.FindByName("service");
  REQUIRE(service != nullptr);
  CHECK(service->id == 3);
  CHECK(FieldList(*service) == "name:string host:string port:i64 healthy:bool");

  const engine::Schema* x = set.FindByName("_x-1");
  REQUIRE(x != nullptr);
  CHECK(x->id == 4);
  CHECK(FieldList(*x) == "A_b-2:i64");

  // A later file continues the numbering; an empty one adds nothing.
  REQUIRE(set.AddFromText("later v:bool\n", "more.txt").ok());
  CHECK(set.FindByName("later")->id == 5);
  REQUIRE(set.AddFromText("", "empty.txt").ok());
  REQUIRE(set.AddFromText("# nothing\n\n", "empty.txt").ok());
  CHECK(set.size() == 5);
  for (size_t i = 0; i < set.all().size(); ++i)
    CHECK(set.all()[i]->id == i + 1);
}

TEST_CASE("schema: a schema may have exactly 64 fields") {
  engine::SchemaSet set;
  util::Status s = set.AddFromText("wide" + Words("f", 64, "i64"), "schemas.txt");
  REQUIRE_MESSAGE(s.ok(), s.message());
  const engine::Schema* wide = set.FindByName("wide");
  REQUIRE(wide != nullptr);
  CHECK(wide->fields.size() == 64);
  CHECK(wide->AllFieldsMask() == ~uint64_t{0});
  CHECK(wide->FieldIndex("f63") == 63);
}

TEST_CASE("schema: an unknown or missing field type is refused naming file and line") {
  std::string m = Refusal("# header\nthing a:i64 b:int\n");
  CHECK(Contains(m, "schemas.txt:2:"));
  CHECK(Contains(m, "'b'"));
  CHECK(Contains(m, "unknown type 'int'"));

  m = Refusal("thing a:i64 b\n");
  CHECK(Contains(m, "schemas.txt:1:"));
  CHECK(Contains(m, "'b'"));
  CHECK(Contains(m, "needs a type"));

  m = Refusal("thing a:\n");
  CHECK(Contains(m, "schemas.txt:1:"));
  CHECK(Contains(m, "type"));
}

TEST_CASE("schema: a field named twice in one schema is refused") {
  std::string m = Refusal("\n\nthing a:i64 b:bool a:string\n");
  CHECK(Contains(m, "schemas.txt:3:"));
  CHECK(Contains(m, "'a' appears twice"));
  CHECK(Contains(m, "'thing'"));
}

TEST_CASE("schema: a schema named twice is refused, in one file or across files") {
  std::string m = Refusal("one a:i64\ntwo a:i64\n# again\none b:i64\n");
  CHECK(Contains(m, "schemas.txt:4:"));
  CHECK(Contains(m, "'one'"));
  CHECK(Contains(m, "twice"));

  engine::SchemaSet set;
  REQUIRE(set.AddFromText("one a:i64\n", "first.txt").ok());
  util::Status s = set.AddFromText("two a:i64\none a:i64\n", "second.txt");
  REQUIRE_FALSE(s.ok());
  CHECK(Contains(s.message(), "second.txt:2:"));
  CHECK(Contains(s.message(), "'one' is already defined"));
  CHECK(set.size() == 2);
  CHECK(set.FindByName("two") == nullptr);
}

TEST_CASE("schema: a schema file may not redefine player") {
  std::string m = Refusal("player name:string\n");
  CHECK(Contains(m, "schemas.txt:1:"));
  CHECK(Contains(m, "'player' is already defined"));
}

TEST_CASE("schema: a schema with more than 64 fields is refused") {
  std::string m = Refusal("ok a:i64\nwide" + Words("f", 65, "bool") + "\n");
  CHECK(Contains(m, "schemas.txt:2:"));
  CHECK(Contains(m, "'wide' has 65 fields; the limit is 64"));
}

TEST_CASE("schema: a schema with no fields is refused") {
  std::string m = Refusal("lonely\n");
  CHECK(Contains(m, "schemas.txt:1:"));
  CHECK(Contains(m, "'lonely' has no fields"));

  m = Refusal("ok a:i64\n  lonely   # fields forgotten\n");
  CHECK(Contains(m, "schemas.txt:2:"));
  CHECK(Contains(m, "no fields"));
}

TEST_CASE("schema: names that are not identifiers are refused") {
  struct Case {
    std::string text;
    std::string bad;
  };
  const std::string long_name(65, 'n');
  const std::vector<Case> cases = {
      {"1thing a:i64", "'1thing'"}, {"-thing a:i64", "'-thing'"},
      {"th.ing a:i64", "'th.ing'"}, {"thing: a:i64", "'thing:'"},
      {"zoë a:i64", "'zoë'"},       {long_name + " a:i64", "'" + long_name + "'"},
      {"thing 9a:i64", "'9a'"},     {"thing a.b:i64", "'a.b'"},
      {"thing :i64", "''"},         {"thing a:i64 " + long_name + ":i64", "'" + long_name + "'"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    std::string m = Refusal("ok a:i64\n" + c.text + "\n");
    CHECK(Contains(m, "schemas.txt:2:"));
    CHECK(Contains(m, c.bad));
  }
  // 64 characters is the longest name allowed.
  engine::SchemaSet set;
  const std::string max_name(64, 'n');
  CHECK(set.AddFromText(max_name + " " + max_name + ":i64", "schemas.txt").ok());
}

TEST_CASE("schema: a refused file adds none of its schemas") {
  engine::SchemaSet set;
  REQUIRE(set.AddFromText("base a:i64\n", "base.txt").ok());
  util::Status s = set.AddFromText("good1 a:i64\ngood2 b:string\nbad c:float\n", "schemas.txt");
  REQUIRE_FALSE(s.ok());
  CHECK(Contains(s.message(), "schemas.txt:3:"));
  CHECK(set.size() == 2);
  CHECK(set.FindByName("good1") == nullptr);
  CHECK(set.FindByName("good2") == nullptr);
  CHECK(set.Find(3) == nullptr);

  // The next good file still gets the next id.
  REQUIRE(set.AddFromText("good1 a:i64\n", "schemas.txt").ok());
  CHECK(set.FindByName("good1")->id == 3);
}

TEST_CASE("schema: a schema file is read from disk and its errors name the path") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / fmt::format("conv-schema-test-{}", getpid());
  std::filesystem::create_directories(dir);
  const std::string good = (dir / "good.txt").string();
  const std::string bad = (dir / "bad.txt").string();
  std::ofstream(good) << "# devices\ndevice serial:string temp:f64\n";
  std::ofstream(bad) << "device serial:string\n\ndevice temp:f64\n";

  engine::SchemaSet set;
  util::Status s = set.AddFromFile(good);
  CHECK_MESSAGE(s.ok(), s.message());
  REQUIRE(set.FindByName("device") != nullptr);
  CHECK(set.FindByName("device")->id == 2);

  engine::SchemaSet other;
  s = other.AddFromFile(bad);
  CHECK_FALSE(s.ok());
  CHECK(Contains(s.message(), bad + ":3:"));
  CHECK(other.size() == 1);

  s = other.AddFromFile((dir / "missing.txt").string());
  CHECK_FALSE(s.ok());
  CHECK(Contains(s.message(), "missing.txt"));

  std::filesystem::remove_all(dir);
}

TEST_CASE("schema: a data dir whose schema ids leave a gap is refused without allocating for it") {
  // A damaged data dir may name schema id 2^32-1: refused like any gap, naming the
  // first missing id, and without a table sized by the id.
  engine::SchemaSet set;
  std::vector<wal::SchemaDef> persisted(3);
  persisted[0].id = 1;
  persisted[0].name = "player";
  persisted[1].id = 4'294'967'295u;
  persisted[1].name = "huge";
  persisted[2].id = 2;
  persisted[2].name = "other";
  auto st = set.Reconcile(persisted);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message() == "the data dir has no schema with id 3");
  persisted[1].id = 3;
  persisted[0].id = 5;
  st = set.Reconcile(persisted);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message() == "the data dir has no schema with id 1");
}

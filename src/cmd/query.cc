#include "cmd/query.h"

#include <fmt/format.h>

#include <cstdio>

#include "cmd/common.h"
#include "net/client.h"
#include "util/json.h"

namespace conv::cmd {

CLI::App* RegisterQuery(CLI::App& app, QueryOptions& o) {
  CLI::App* sub = app.add_subcommand(
      "query", "Print an entity's converged record as JSON (exit 1: no such entity)");
  sub->add_option("schema", o.schema, "Schema name, e.g. player")->required();
  sub->add_option("id", o.id, "Entity id")->required();
  sub->add_flag("--claims", o.claims, "Also print each source's claim");
  AddServerOption(*sub, o.server, "tried in order until one answers");
  sub->add_option("--auth-token-file", o.auth_token_file,
                  "File (mode 0600) holding the server's auth token")
      ->check(CLI::ExistingFile);
  AddTlsClientOptions(*sub, o.tls);
  return sub;
}

int RunQuery(const QueryOptions& o) {
  auto hello = ReaderHello(o.auth_token_file);
  if (!hello.ok()) {
    PrintError(hello.message());
    return kExitError;
  }
  auto tls = TlsClientContext(o.tls);
  if (!tls.ok()) {
    PrintError(tls.message());
    return kExitError;
  }
  auto client = net::Client::Connect(o.server, *hello, std::chrono::seconds(5), *tls);
  if (!client.ok()) {
    PrintError(client.message());
    return kExitError;
  }
  const engine::Schema* schema = (*client)->FindSchema(o.schema);
  if (schema == nullptr) {
    PrintError(fmt::format("unknown schema '{}' (the server knows: {})", o.schema,
                           KnownSchemas((*client)->welcome())));
    return kExitError;
  }
  auto result = (*client)->Query(*schema, o.id, o.claims);
  if (!result.ok()) {
    PrintError(fmt::format("query {} '{}': {}", o.schema, o.id, result.message()));
    return kExitError;
  }
  if (!result->found) {
    PrintError(fmt::format("{} '{}' does not exist", o.schema, o.id));
    return kExitNotFound;
  }
  auto record = [&schema](std::string_view bytes) {
    return [&schema, bytes](std::string& out) { AppendRecordJsonOrNull(out, *schema, bytes); };
  };
  util::JsonWriter j;
  j.BeginObject().Field("schema", schema->name).Key("id").Text(o.id);
  j.Key("record").Encoded(record(result->record));
  if (o.claims) {
    j.Key("claims").BeginArray();
    for (const auto& c : result->claims) {
      j.BeginObject().Key("source").Text(c.source).Field("ts", c.ts_max);
      j.Key("record").Encoded(record(c.record)).EndObject();
    }
    j.EndArray();
  }
  j.EndObject();
  std::string out = j.Take() + "\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return kExitOk;
}

}  // namespace conv::cmd

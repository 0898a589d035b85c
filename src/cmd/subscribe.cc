#include "cmd/subscribe.h"

#include <fmt/format.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include "cmd/common.h"
#include "net/address.h"
#include "net/client.h"
#include "util/duration.h"
#include "util/json.h"

namespace conv::cmd {

CLI::App* RegisterSubscribe(CLI::App& app, SubscribeOptions& o) {
  CLI::App* sub = app.add_subcommand(
      "subscribe", "Print a schema's changes as JSON lines, one per entity change, until stopped");
  sub->add_option("schema", o.schema, "Schema name, e.g. player")->required();
  sub->add_option("--prefix", o.prefix, "Only entities whose id starts with this");
  sub->add_option("--fields", o.fields, "Only these fields, comma-separated (default: all)")
      ->delimiter(',')
      ->type_name("FIELD,...");
  sub->add_flag("--bootstrap", o.bootstrap,
                "First print every matching entity's current state, then live changes");
  sub->add_flag("--include-prev", o.include_prev,
                "Add each change's record as it was at the start of its window");
  sub->add_option("--resume", o.resume,
                  "Continue after this window (the last window a previous run reported): "
                  "print only what changed since, then live changes")
      ->type_name("WINDOW");
  sub->add_option("--interval", o.interval_ms,
                  "At most one change per entity per this many milliseconds (0: every window)")
      ->type_name("MS")
      ->capture_default_str();
  sub->add_option("--count", o.count, "Exit after this many change lines (0: until stopped)")
      ->type_name("N")
      ->capture_default_str();
  AddServerOption(*sub, o.server,
                  "tried in order until one answers, and again after a lost connection (see "
                  "--reconnect-for)");
  AddDurationOption(*sub, "--reconnect-for", o.reconnect_for,
                    "After a lost connection, how long to try the servers of --server again, "
                    "resuming after the last window printed (0s: exit 3 at once)");
  sub->add_option("--auth-token-file", o.auth_token_file,
                  "File (mode 0600) holding the server's auth token")
      ->check(CLI::ExistingFile);
  AddTlsClientOptions(*sub, o.tls);
  return sub;
}

namespace {

// The one subscription this command opens.
constexpr uint64_t kSubId = 1;
// How long one wait for a frame lasts before the stop flag is looked at again (a
// signal usually interrupts the wait sooner).
constexpr std::chrono::milliseconds kPoll{200};
// Loop's result when the connection was lost (or the server closed it): the
// subscription may go on elsewhere.
constexpr int kLost = -1;

volatile std::sig_atomic_t g_stop = 0;

void OnStopSignal(int) {
  g_stop = 1;
}

// SIGINT and SIGTERM set g_stop. No SA_RESTART, so they interrupt a wait for frames.
void InstallStopHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

std::string FieldList(const engine::Schema& schema) {
  std::string out;
  for (const auto& f : schema.fields)
    out += (out.empty() ? "" : ", ") + f.name;
  return out;
}

std::string_view KindName(uint8_t kind) {
  return kind == net::kChangeDelete ? "delete" : "upsert";
}

// What was printed, for the summary line and --resume.
struct Progress {
  uint64_t snapshot_entries = 0;
  uint64_t changes = 0;
  uint64_t windows = 0;      // distinct windows with at least one change printed
  uint64_t last_window = 0;  // the state printed so far is as of the end of this window
  uint64_t last_change_window = 0;
};

class Printer {
 public:
  Printer(const engine::Schema& schema, bool include_prev, uint64_t count)
      : schema_(schema), include_prev_(include_prev), count_(count) {}

  void Snapshot(const net::ChangeEntry& e) {
    util::JsonWriter j;
    j.BeginObject().Field("type", "snapshot").Field("kind", KindName(e.kind)).Key("id").Text(e.id);
    j.Key("record").Encoded(Record(e.record)).EndObject();
    Write(j.Take() + "\n");
    ++progress_.snapshot_entries;
  }

  void SnapshotEnd(const net::SnapshotEnd& m) {
    util::JsonWriter j;
    j.BeginObject().Field("type", "snapshot_end").Field("total", m.total);
    j.Field("window", m.window).Field("reset", m.reset).EndObject();
    Write(j.Take() + "\n");
    progress_.last_window = m.window;
  }

  // Prints the changes of one NOTIFY; stops early once --count is reached. The last
  // window advances only when every change of the frame was printed.
  void Notify(const net::Notify& m) {
    size_t printed = 0;
    for (const auto& c : m.changes) {
      if (done()) break;
      Change(m.window, c);
      ++printed;
    }
    if (printed == m.changes.size()) progress_.last_window = m.window;
  }

  bool done() const { return count_ != 0 && progress_.changes >= count_; }
  const Progress& progress() const { return progress_; }
  void set_last_window(uint64_t w) { progress_.last_window = w; }

 private:
  // Appends a record as `convergence query` prints it.
  std::function<void(std::string&)> Record(std::string_view bytes) const {
    return [this, bytes](std::string& out) { AppendRecordJsonOrNull(out, schema_, bytes); };
  }

  void Change(uint64_t window, const net::ChangeEntry& c) {
    util::JsonWriter j;
    j.BeginObject().Field("type", "change").Field("window", window);
    j.Field("kind", KindName(c.kind)).Key("id").Text(c.id).Key("changed").BeginArray();
    for (size_t i = 0; i < schema_.fields.size(); ++i) {
      if ((c.changed_mask >> i & 1) != 0) j.String(schema_.fields[i].name);
    }
    j.EndArray().Field("ts", c.ts).Key("record").Encoded(Record(c.record));
    if (include_prev_) {
      j.Key("prev");
      if (c.had_prev) {
        j.Encoded(Record(c.prev));
      } else {
        j.Null();
      }
    }
    j.EndObject();
    Write(j.Take() + "\n");
    ++progress_.changes;
    if (progress_.windows == 0 || window != progress_.last_change_window) ++progress_.windows;
    progress_.last_change_window = window;
  }

  static void Write(const std::string& line) {
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
  }

  const engine::Schema& schema_;
  bool include_prev_;
  uint64_t count_;
  Progress progress_;
};

void PrintSummary(const Progress& p) {
  std::string resume = p.last_window == 0
                           ? std::string()
                           : fmt::format(" (continue with --resume {})", p.last_window);
  std::fprintf(stderr,
               "convergence: subscribe: %llu snapshot entries, %llu changes in %llu windows, "
               "last window %llu%s\n",
               static_cast<unsigned long long>(p.snapshot_entries),
               static_cast<unsigned long long>(p.changes),
               static_cast<unsigned long long>(p.windows),
               static_cast<unsigned long long>(p.last_window), resume.c_str());
}

// Reads and prints until --count is reached, a stop signal, or a failure; returns the
// exit code, or kLost.
int Loop(net::Client& client, const engine::Schema& schema, Printer& printer, bool include_prev) {
  const uint8_t kSnapshot = static_cast<uint8_t>(net::FrameType::kSnapshot);
  const uint8_t kSnapshotEnd = static_cast<uint8_t>(net::FrameType::kSnapshotEnd);
  const uint8_t kNotify = static_cast<uint8_t>(net::FrameType::kNotify);
  const uint8_t kError = static_cast<uint8_t>(net::FrameType::kError);
  net::OwnedFrame f;
  while (!printer.done()) {
    if (g_stop) return kExitOk;
    auto got = client.TryReadFrame(kPoll, &f);
    if (!got.ok()) {
      if (g_stop) return kExitOk;
      PrintError(fmt::format("subscribe: connection lost: {}", got.message()));
      return kLost;
    }
    if (!*got) continue;
    if (f.type == kSnapshot) {
      net::Snapshot m;
      if (!net::DecodeSnapshot(f.payload, schema, &m)) {
        PrintError("subscribe: malformed SNAPSHOT from the server");
        return kExitSubscribeConnection;
      }
      if (m.sub != kSubId) continue;
      for (const auto& e : m.entries)
        printer.Snapshot(e);
    } else if (f.type == kSnapshotEnd) {
      net::SnapshotEnd m;
      if (!net::DecodeSnapshotEnd(f.payload, &m)) {
        PrintError("subscribe: malformed SNAPSHOT_END from the server");
        return kExitSubscribeConnection;
      }
      if (m.sub == kSubId) printer.SnapshotEnd(m);
    } else if (f.type == kNotify) {
      net::Notify m;
      if (!net::DecodeNotify(f.payload, schema, include_prev, &m)) {
        PrintError("subscribe: malformed NOTIFY from the server");
        return kExitSubscribeConnection;
      }
      if (m.sub == kSubId) printer.Notify(m);
    } else if (f.type == kError) {
      net::Error e;
      if (!net::DecodeError(f.payload, &e)) {
        PrintError("subscribe: malformed ERROR from the server");
        return kExitSubscribeConnection;
      }
      std::string what = fmt::format("{} ({})", e.message, net::ErrorCodeName(e.code));
      if (e.seq_or_req == 0) {
        PrintError(fmt::format("subscribe: the server closed the connection: {}", what));
        return kLost;
      }
      if (e.seq_or_req == kSubId) {
        PrintError(fmt::format("subscribe: the server refused the subscription: {}", what));
        return kExitSubscribeRefused;
      }
      PrintError(fmt::format("subscribe: ERROR for request {}: {}", e.seq_or_req, what));
    }
    // Any other frame (none is expected) is skipped.
  }
  return kExitOk;
}

// The same id and the same fields, in order.
bool SameSchema(const engine::Schema* now, const engine::Schema& before) {
  if (now == nullptr || now->id != before.id || now->fields.size() != before.fields.size()) {
    return false;
  }
  for (size_t i = 0; i < before.fields.size(); ++i) {
    if (now->fields[i].name != before.fields[i].name ||
        now->fields[i].type != before.fields[i].type) {
      return false;
    }
  }
  return true;
}

}  // namespace

int RunSubscribe(const SubscribeOptions& o) {
  InstallStopHandlers();
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
  auto servers = net::ParseAddressList(o.server);
  if (!servers.ok()) {
    PrintError(servers.message());
    return kExitError;
  }
  net::ClientOptions co;
  co.servers = *servers;
  co.tls = *tls;
  auto client = net::Client::Connect(co, *hello);
  if (!client.ok()) {
    if (g_stop) return kExitOk;
    PrintError(client.message());
    return kExitSubscribeConnection;
  }
  const engine::Schema* found = (*client)->FindSchema(o.schema);
  if (found == nullptr) {
    PrintError(fmt::format("unknown schema '{}' (the server knows: {})", o.schema,
                           KnownSchemas((*client)->welcome())));
    return kExitSubscribeUnknown;
  }
  // A copy: the client it belongs to is replaced when the subscription resumes.
  const engine::Schema copy = *found;
  const engine::Schema* schema = &copy;
  net::Subscribe req;
  req.sub = kSubId;
  req.schema_id = schema->id;
  req.id_prefix = o.prefix;
  for (const auto& name : o.fields) {
    if (name.empty()) {
      PrintError("--fields: an empty field name (a stray comma?)");
      return kExitError;
    }
    int i = schema->FieldIndex(name);
    if (i < 0) {
      PrintError(fmt::format("unknown field '{}' in schema '{}' (its fields: {})", name,
                             schema->name, FieldList(*schema)));
      return kExitSubscribeUnknown;
    }
    req.field_mask |= uint64_t{1} << i;
  }
  req.flags = static_cast<uint8_t>((o.bootstrap ? net::kSubscribeBootstrap : 0) |
                                   (o.include_prev ? net::kSubscribeIncludePrev : 0));
  req.resume_window = o.resume;
  req.interval_ms = o.interval_ms;
  if (auto st = (*client)->Subscribe(req); !st.ok()) {
    PrintError(fmt::format("subscribe: {}", st.message()));
    return kExitSubscribeConnection;
  }
  Printer printer(*schema, o.include_prev, o.count);
  // Until SNAPSHOT_END says otherwise, what this run holds is what --resume named.
  printer.set_last_window(o.resume);
  int code = Loop(**client, *schema, printer, o.include_prev);
  // A lost connection: the servers of --server again (a replica, or the owner's
  // successor), resuming after the last window printed, as --resume does.
  const auto reconnect_for = std::chrono::duration_cast<std::chrono::milliseconds>(o.reconnect_for);
  while (code == kLost) {
    if (reconnect_for.count() == 0) {
      code = kExitSubscribeConnection;
      break;
    }
    const Progress& p = printer.progress();
    if (p.last_window == 0 && (p.snapshot_entries != 0 || p.changes != 0)) {
      PrintError("subscribe: cannot resume: lost in the middle of the bootstrap");
      code = kExitSubscribeConnection;
      break;
    }
    client->reset();
    const auto until = std::chrono::steady_clock::now() + reconnect_for;
    for (;;) {
      client = net::Client::Connect(co, *hello);
      if (client.ok() || g_stop || std::chrono::steady_clock::now() >= until) break;
      std::this_thread::sleep_for(kPoll);
    }
    if (g_stop) {
      code = kExitOk;
      break;
    }
    if (!client.ok()) {
      PrintError(fmt::format("subscribe: could not resume within {}: {}",
                             util::FormatDuration(o.reconnect_for), client.message()));
      code = kExitSubscribeConnection;
      break;
    }
    // The records printed so far and those to come must be read alike.
    if (!SameSchema((*client)->FindSchema(o.schema), *schema)) {
      PrintError(fmt::format(
          "subscribe: cannot resume on {}: its schema '{}' is not the one the subscription "
          "began with (another id or other fields)",
          (*client)->server(), o.schema));
      code = kExitSubscribeConnection;
      break;
    }
    if (p.last_window != 0) {
      req.flags &= static_cast<uint8_t>(~net::kSubscribeBootstrap);
      req.resume_window = p.last_window;
    }
    std::fprintf(stderr, "convergence: subscribe: resuming after window %llu on %s\n",
                 static_cast<unsigned long long>(p.last_window), (*client)->server().c_str());
    if (auto st = (*client)->Subscribe(req); !st.ok()) {
      PrintError(fmt::format("subscribe: {}", st.message()));
      code = kExitSubscribeConnection;
      break;
    }
    code = Loop(**client, *schema, printer, o.include_prev);
  }
  PrintSummary(printer.progress());
  return code;
}

}  // namespace conv::cmd

#include "cmd/serve.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include "cmd/common.h"
#include "cmd/console_page.h"
#include "cmd/follow.h"
#include "engine/engine.h"
#include "net/address.h"
#include "net/metrics.h"
#include "net/metrics_server.h"
#include "net/server.h"
#include "repl/jetstream.h"
#include "repl/ownership.h"
#include "repl/stream_reader.h"
#include "util/clock.h"
#include "util/duration.h"
#include "util/log.h"
#include "wal/files.h"
#include "wal/records.h"
#include "wal/replay.h"

namespace conv::cmd {

CLI::App* RegisterServe(CLI::App& app, ServeOptions& o) {
  CLI::App* sub = app.add_subcommand("serve", "Run the convergence server");
  sub->add_option("--listen", o.listen, "Address to listen on, HOST:PORT (port 0: any free port)")
      ->capture_default_str();
  sub->add_option("--data-dir", o.data_dir, "Data directory (created 0700, locked while serving)")
      ->capture_default_str();
  sub->add_option("--partitions", o.partitions,
                  "Engine partitions, each owned by one thread (0: one per core)")
      ->capture_default_str()
      ->check(CLI::Range(0, 256));
  sub->add_option("--io-threads", o.io_threads,
                  "Network I/O threads for writers (0: one per two cores); readers and subscribers "
                  "get one more")
      ->capture_default_str()
      ->check(CLI::Range(0, 64));
  AddDurationOption(*sub, "--window", o.window, "Coalescing window, e.g. 10ms");
  sub->add_option("--schema-file", o.schema_file, "File with more schemas (see docs/schemas.md)")
      ->check(CLI::ExistingFile);
  sub->add_option("--auth-token-file", o.auth_token_file,
                  "File (mode 0600) holding the token every HELLO must carry")
      ->check(CLI::ExistingFile);
  sub->add_option("--tls-cert", o.tls_cert,
                  "Serve TLS (1.2 or later) with this PEM certificate chain; SIGHUP reloads it")
      ->check(CLI::ExistingFile);
  sub->add_option("--tls-key", o.tls_key, "The PEM private key of --tls-cert")
      ->check(CLI::ExistingFile);
  sub->add_option("--tls-client-ca", o.tls_client_ca,
                  "Mutual TLS: every client must present a certificate signed by a CA in this "
                  "PEM file (then a listen that is not loopback needs no --auth-token-file)")
      ->check(CLI::ExistingFile);
  sub->add_option("--max-frame", o.max_frame, "Largest frame accepted, in bytes")
      ->capture_default_str()
      ->check(CLI::Range(64u, 1u << 30));
  sub->add_option("--max-connections", o.max_connections, "Connections served at once")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1'000'000u));
  AddDurationOption(*sub, "--handshake-timeout", o.handshake_timeout,
                    "Time a new connection has to send HELLO");
  AddDurationOption(
      *sub, "--idle-timeout", o.idle_timeout,
      "Close connections that send no frame for this long; subscribers are exempt (0s: "
      "never)");
  AddDurationOption(*sub, "--queue-goal", o.queue_goal,
                    "How long a window's cut may wait behind queued ops before writers' "
                    "credits shrink: shorter trades throughput for ACK latency (0s: a "
                    "quarter of --window)");
  AddDurationOption(*sub, "--max-future-ts", o.max_future_ts,
                    "How far ahead of the server's clock an op's ts may be (0s: any)");
  sub->add_option("--fsync", o.fsync,
                  "window: acknowledged = fsynced; none: acknowledged = written to the OS "
                  "(survives a process crash, not a power loss)")
      ->capture_default_str()
      ->check(CLI::IsMember({"window", "none"}));
  AddDurationOption(*sub, "--checkpoint-interval", o.checkpoint_interval,
                    "Write a checkpoint this often while writes come in (0s: never)");
  AddDurationOption(*sub, "--resume-retention", o.resume_retention,
                    "How long deletions are remembered for subscribers that resume from a "
                    "window; older resumes get the full state");
  sub->add_option("--subscriber-backlog", o.subscriber_backlog,
                  "Unsent subscription bytes per connection past which changes are conflated "
                  "(latest state per entity)")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{64} << 10, uint64_t{1} << 32));
  sub->add_option("--max-sources", o.max_sources,
                  "Source names known at once; a new name past it makes room by forgetting "
                  "sources idle for --source-retention")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 24));
  AddDurationOption(*sub, "--source-retention", o.source_retention,
                    "How long a source with no claims and no connection keeps its seq mark "
                    "(so a writer can still resend) before it may be forgotten");
  sub->add_flag("--salvage", o.salvage,
                "Start despite a corrupt log: recover up to the corruption, move the rest aside");
  sub->add_option("--replicate", o.replicate,
                  "Also write the log to NATS JetStream, nats://HOST:PORT[,nats://HOST:PORT...]; "
                  "a write is acknowledged once fsynced here and held by JetStream (see "
                  "docs/replication.md; needs --cluster-name)");
  sub->add_option("--follow", o.follow,
                  "Serve as a read replica of --cluster-name from NATS JetStream, "
                  "nats://HOST:PORT[,nats://HOST:PORT...]: state and windows from the owner's "
                  "stream, writes refused with not_owner (no data dir; see docs/replication.md)");
  sub->add_option("--cluster-name", o.cluster_name,
                  "The replicated log's name: JetStream stream CONV_NAME, owner record in KV "
                  "bucket CONV_OWNER_NAME (letters, digits, '_', '-')");
  sub->add_flag("--standby", o.standby,
                "With --follow: a read replica that takes the cluster name over when its "
                "owner's record is not refreshed for --failover-after, then writes to "
                "--data-dir (empty when it starts) and replicates as --replicate would");
  AddDurationOption(*sub, "--failover-after", o.failover_after,
                    "With --standby: how long the owner's record may go unrefreshed before "
                    "the standby takes over (at least 2s)");
  sub->add_option("--advertise", o.advertise,
                  "With --replicate or --standby: the address replicas and not_owner answers "
                  "give clients for this server as the owner (port 0: the bound port); needed "
                  "when --listen is 0.0.0.0 or :: (default: the --listen address)");
  sub->add_option("--replicas", o.replicas,
                  "JetStream replicas of the stream with --replicate (1 to 5)")
      ->capture_default_str();
  sub->add_option("--log-level", o.log_level, "debug, info, warn, error or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warn", "error", "off"}));
  sub->add_option("--log-format", o.log_format,
                  "text: 'TIME LEVEL message'; json: one JSON object per line (ts, level, msg)")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  sub->add_option("--metrics-listen", o.metrics_listen,
                  "Serve Prometheus metrics at http://HOST:PORT/metrics, https with --tls-cert "
                  "(default: off; not loopback needs --auth-token-file, sent as a bearer token, "
                  "or mutual TLS)");
  sub->add_option("--ws-listen", o.ws_listen,
                  "Also serve the protocol over WebSocket at ws://HOST:PORT (wss with "
                  "--tls-cert); same token and loopback rule as --listen (default: off)");
  sub->add_option("--console", o.console,
                  "Serve the live console page at http://HOST:PORT/ (https with --tls-cert), "
                  "and WebSocket there too; same token and loopback rule (default: off)");
  sub->add_option("--ws-allowed-origins", o.ws_allowed_origins,
                  "Origins (e.g. https://ops.example.com) whose pages may connect over "
                  "WebSocket besides the listener's own; * for any")
      ->delimiter(',');
  return sub;
}

namespace {

// Creates the data dir (0700) and takes an exclusive lock on its LOCK file, so two
// servers never share one directory. The fd stays open (and locked) until exit.
util::Result<int> LockDataDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return util::Status::Error(
        fmt::format("--data-dir: cannot create '{}': {}", dir, ec.message()));
  }
  if (!std::filesystem::is_directory(dir)) {
    return util::Status::Error(fmt::format("--data-dir: '{}' is not a directory", dir));
  }
  ::chmod(dir.c_str(), 0700);
  std::string lock_path = dir + "/LOCK";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return util::Status::Error(
        fmt::format("--data-dir: cannot open '{}': {}", lock_path, std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return util::Status::Error(fmt::format(
        "--data-dir: '{}' is in use by another convergence server (its LOCK is held)", dir));
  }
  return fd;
}

class IgnoreRecords : public wal::RecordVisitor {
 public:
  void OnClaim(const wal::ClaimRecord&) override {}
  void OnRetract(const wal::RetractRecord&) override {}
  void OnSource(const wal::SourceRecord&) override {}
  void OnSchema(const wal::SchemaRecord&) override {}
  void OnLease(const wal::LeaseRecord&) override {}
};

// Before anything is acknowledged, makes the stream hold the data dir's log: the
// stream must not be ahead of it (another owner's, or this one's before its disk was
// lost), and what only the data dir holds (windows written but never confirmed when
// the process died, a torn window, or everything for a new --cluster-name) is
// published: the newest local checkpoint when the stream's usable log ends before
// it, then every later window.
//
// A standby taking over (`taking_over`) wrote its data dir from the stream's usable
// log: that log must end where the data dir does (a torn window after it, the dead
// owner's last, is not refused: the new epoch's marker drops it for every reader).
util::Status CatchUpStream(repl::JetStreamLog& replica, const repl::ReplicationOptions& ro,
                           const std::string& dir, uint64_t local_last, util::Logger& log,
                           bool taking_over) {
  auto in_stream = replica.LastReplicatedWindow();
  if (!in_stream.ok())
    return util::Status::Error(fmt::format("--replicate: {}", in_stream.message()));
  if (*in_stream > local_last && !taking_over) {
    return util::Status::Error(fmt::format(
        "refusing to start: stream {} holds windows up to {} but the data dir '{}' only up to "
        "{}; start with the data dir that wrote them, or another --cluster-name",
        repl::StreamName(ro.cluster_name), *in_stream, dir, local_last));
  }
  IgnoreRecords ignore;
  repl::StreamReadReport report;
  if (auto st = repl::ReadReplicatedLog(ro, ignore, &report); !st.ok()) {
    return util::Status::Error(fmt::format("--replicate: {}", st.message()));
  }
  uint64_t from = report.last_window;
  if (taking_over && from != local_last) {
    return util::Status::Error(
        fmt::format("stream {} has a usable log up to window {} now, the data dir written from "
                    "it up to {}: its owner wrote since",
                    repl::StreamName(ro.cluster_name), from, local_last));
  }
  if (from >= local_last) return util::Status::Ok();
  auto listing = wal::ListDir(dir);
  if (!listing.ok()) return listing.status();
  if (!listing->checkpoints.empty() && listing->checkpoints.back().window > from) {
    const auto& cp = listing->checkpoints.back();
    if (auto st = replica.PublishCheckpoint(cp.window, cp.path); !st.ok()) {
      return util::Status::Error(
          fmt::format("--replicate: checkpoint {}: {}", cp.path, st.message()));
    }
    from = cp.window;
  }
  uint64_t windows = 0;
  auto confirm = [&]() -> util::Status {
    wal::WriteOutcome c = replica.Confirm();
    return c.ok() ? util::Status::Ok()
                  : util::Status::Error(fmt::format("--replicate: {}", c.message));
  };
  auto st = wal::ForEachWindowImage(dir, from, [&](uint64_t window, std::string_view blocks) {
    replica.Publish(window, blocks);
    return ++windows % 256 == 0 ? confirm() : util::Status::Ok();
  });
  if (st.ok()) st = confirm();
  if (!st.ok()) return st;
  log.Info(
      "caught the stream up: it had a usable log up to window {}{}; published {} windows{}",
      report.last_window,
      report.torn_window != 0 ? fmt::format(" (window {} torn)", report.torn_window) : "", windows,
      from > report.last_window ? fmt::format(" after the checkpoint at window {}", from) : "");
  return util::Status::Ok();
}

// The replication figures for the metrics endpoint (net/metrics.cc names them).
void AppendReplicationStats(const repl::JetStreamLog& r, net::StatList& stats) {
  repl::ReplicationCounters c = r.counters();
  uint64_t last_closed = 0;
  for (const auto& [name, value] : stats) {
    if (name == "last_window") last_closed = value;
  }
  stats.insert(stats.end(),
               {{"repl_owner", 1},
                {"repl_windows", c.windows},
                {"repl_chunks", c.chunks},
                {"repl_bytes", c.bytes},
                {"repl_sent_bytes", c.sent_bytes},
                {"repl_resends", c.resends},
                {"repl_rounds", c.rounds},
                {"repl_ack_us", c.ack_ns / 1000},
                {"repl_ack_max_us", c.ack_max_ns / 1000},
                {"repl_window", c.last_window},
                {"repl_lag_windows", last_closed > c.last_window ? last_closed - c.last_window : 0},
                {"repl_checkpoint_window", c.checkpoint_window},
                {"repl_purged_below", c.purged_below},
                {"repl_resyncs", c.resyncs},
                {"repl_fenced", r.fenced() ? 1u : 0u}});
}

// How long a fenced owner goes on answering writers `not_owner` (naming the new
// owner) before it exits, so that writers reconnecting to it learn where to go.
constexpr std::chrono::seconds kFencedGrace{5};

// A deposed owner's fence, set from the WAL thread (a refused publish) or the
// ownership refresh (the record names another owner); the main thread acts on it.
struct FenceSignal {
  std::mutex mu;
  std::string owner;  // guarded
  std::atomic<bool> set{false};
  void Set(const std::string& new_owner) {
    std::lock_guard lock(mu);
    if (set) return;
    owner = new_owner;
    set = true;
  }
  std::string Owner() {
    std::lock_guard lock(mu);
    return owner;
  }
};

// A standby's two phases (docs/replication.md, "Standby").
struct Takeover {
  bool standby = false;   // the follower phase: return kTakeOver once the record is stale
  uint64_t revision = 0;  // its out; the owner phase claims the record from it
};
constexpr int kTakeOver = -1;      // the follower phase saw the owner's record go stale
constexpr int kTakeOverLost = -2;  // the owner phase did not win: follow again

int Serve(const ServeOptions& o, Takeover* takeover) {
  util::Logger log(*util::ParseLogLevel(o.log_level), *util::ParseLogFormat(o.log_format));
  const bool taking_over = takeover != nullptr && takeover->revision != 0;

  engine::SchemaSet schemas;
  if (!o.schema_file.empty()) {
    if (auto st = schemas.AddFromFile(o.schema_file); !st.ok()) {
      PrintError(fmt::format("--schema-file: {}", st.message()));
      return kExitError;
    }
  }
  net::ServerOptions server_options;
  server_options.listen = o.listen;
  server_options.max_frame = o.max_frame;
  server_options.max_connections = o.max_connections;
  server_options.subscriber_backlog = o.subscriber_backlog;
  server_options.source_retention = o.source_retention;
  server_options.handshake_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(o.handshake_timeout);
  server_options.idle_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(o.idle_timeout);
  server_options.max_future_ts = o.max_future_ts;
  server_options.queue_goal = o.queue_goal;
  server_options.ws_listen = o.ws_listen;
  server_options.console_listen = o.console;
  server_options.console_page = ConsolePage();
  server_options.ws_allowed_origins = o.ws_allowed_origins;
  if (!o.ws_allowed_origins.empty() && o.ws_listen.empty() && o.console.empty()) {
    PrintError("--ws-allowed-origins needs --ws-listen or --console");
    return kExitError;
  }
  if (!o.auth_token_file.empty()) {
    auto token = ReadTokenFile(o.auth_token_file);
    if (!token.ok()) {
      PrintError(token.message());
      return kExitError;
    }
    server_options.auth_token = *token;
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    PrintError(o.tls_cert.empty() ? "--tls-key needs --tls-cert" : "--tls-cert needs --tls-key");
    return kExitError;
  }
  if (!o.tls_client_ca.empty() && o.tls_cert.empty()) {
    PrintError("--tls-client-ca needs --tls-cert and --tls-key");
    return kExitError;
  }
  if (!o.tls_cert.empty()) {
    auto tls = net::TlsServerContext::Load({o.tls_cert, o.tls_key, o.tls_client_ca});
    if (!tls.ok()) {
      PrintError(tls.message());
      return kExitError;
    }
    server_options.tls = std::move(tls).value();
  }
  if (o.window.count() < 100) {
    PrintError(fmt::format("--window: {} is too short; the least is 100us",
                           util::FormatDuration(o.window)));
    return kExitError;
  }
  if (o.queue_goal.count() != 0 &&
      (o.queue_goal.count() < 100 || o.queue_goal > std::chrono::seconds(10))) {
    PrintError(
        fmt::format("--queue-goal: {} is out of range; it must be 100us to 10s (or 0s: "
                    "one --window)",
                    util::FormatDuration(o.queue_goal)));
    return kExitError;
  }
  if (o.handshake_timeout.count() < 1000) {
    PrintError("--handshake-timeout: the least is 1ms");
    return kExitError;
  }
  const bool following = !o.follow.empty();
  if (!o.replicate.empty() && following) {
    PrintError(
        "--replicate and --follow exclude each other: a server owns its cluster name or "
        "follows it");
    return kExitError;
  }
  if ((o.replicate.empty() && !following) != o.cluster_name.empty()) {
    PrintError(o.cluster_name.empty() ? (following ? "--follow needs --cluster-name"
                                                   : "--replicate needs --cluster-name")
                                      : "--cluster-name needs --replicate or --follow");
    return kExitError;
  }
  repl::ReplicationOptions repl_options;
  repl_options.urls = following ? o.follow : o.replicate;
  repl_options.cluster_name = o.cluster_name;
  repl_options.replicas = o.replicas;
  if (!repl_options.urls.empty()) {
    if (auto st = repl::ValidateOptions(repl_options); !st.ok()) {
      PrintError(st.message());
      return kExitError;
    }
  }
  // Signals are taken synchronously by this thread: block them before any other
  // thread starts so that none of those receives them (the NATS client's threads
  // start with the first connection, below: one of them taking a SIGTERM would kill the
  // server before it stops cleanly).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);  // reloads the TLS certificate
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A replica keeps no data dir: its log is the owner's stream.
  util::Result<int> lock_fd = -1;
  std::unique_ptr<Follower> follower;
  if (following) {
    follower = std::make_unique<Follower>(repl_options, log);
    if (auto st = follower->ReconcileSchemas(schemas); !st.ok()) {
      PrintError(fmt::format("refusing to start: {}", st.message()));
      return kExitError;
    }
  } else {
    lock_fd = LockDataDir(o.data_dir);
    if (!lock_fd.ok()) {
      PrintError(lock_fd.message());
      return kExitError;
    }
    auto persisted = wal::ReadLatestSchemas(o.data_dir);
    if (!persisted.ok()) {
      PrintError(fmt::format("--data-dir: {}", persisted.message()));
      return kExitError;
    }
    if (auto st = schemas.Reconcile(*persisted); !st.ok()) {
      PrintError(fmt::format("refusing to start: {}", st.message()));
      return kExitError;
    }
  }

  std::unique_ptr<repl::JetStreamLog> replica;
  if (!o.replicate.empty()) {
    auto opened = repl::JetStreamLog::Open(repl_options, &log);
    if (!opened.ok()) {
      PrintError(opened.message());
      return kExitError;
    }
    replica = std::move(opened).value();
  }

  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  engine::EngineOptions engine_options;
  engine_options.partitions = o.partitions != 0 ? o.partitions : cores;
  engine_options.lanes = o.io_threads != 0 ? o.io_threads : std::max(1u, cores / 2);
  engine_options.window = o.window;
  engine_options.data_dir = following ? "" : o.data_dir;
  engine_options.follower = following;
  engine_options.fsync = o.fsync == "window";
  engine_options.checkpoint_interval = o.checkpoint_interval;
  engine_options.resume_retention = o.resume_retention;
  engine_options.log = &log;
  engine_options.replica = replica.get();
  FenceSignal fence;
  engine_options.on_fatal = [&log, &fence, r = replica.get()](const std::string& message) {
    if (r != nullptr && r->fenced()) {
      // Deposed: this round and every later one stay unacknowledged (the WAL
      // thread stops here); the main thread tells the writers who owns it now.
      log.Error("deposed: {}", message);
      fence.Set(r->fenced_owner());
      return;
    }
    // No ack may follow a failed write or fdatasync: stop here. A restart recovers
    // everything acknowledged.
    log.Error("stopping: the write-ahead log failed: {}", message);
    std::_Exit(kExitError);
  };

  engine::SourceTable sources(o.max_sources);
  engine::Engine engine(engine_options, schemas, sources);
  wal::RecoveryReport recovery;
  uint64_t t0 = util::MonoNanos();
  if (following) {
    if (auto st = follower->Restore(engine); !st.ok()) {
      PrintError(fmt::format("refusing to start: {}", st.message()));
      return kExitError;
    }
    server_options.owner_address = [f = follower.get()] { return f->owner_address(); };
    server_options.extra_stats = [f = follower.get()](net::StatList& s) { f->AppendStats(s); };
  } else if (auto st = engine.Recover(o.salvage, &recovery); !st.ok()) {
    PrintError(fmt::format("refusing to start: {}", st.message()));
    return kExitError;
  }
  for (const auto& w : recovery.warnings)
    log.Warn("{}", w);
  if (!recovery.torn_file.empty()) {
    log.Warn("cut a torn tail off {} at offset {}: {} bytes (kept in {})", recovery.torn_file,
             recovery.torn_offset, recovery.torn_bytes,
             recovery.torn_saved_as.empty() ? "nothing: all zeros" : recovery.torn_saved_as);
  }
  auto recovered = engine.Stats();
  if (!following)
    log.Info(
        "recovered {} entities, {} sources up to window {} in {} ms ({}checkpoint at window "
        "{}, {} log windows, {} records)",
        recovered.totals.entities, sources.known(), recovery.last_window,
        (util::MonoNanos() - t0) / 1'000'000, recovery.used_checkpoint ? "" : "no ",
        recovery.checkpoint_window, recovery.blocks, recovery.records);
  if (replica != nullptr) {
    if (auto st = CatchUpStream(*replica, repl_options, o.data_dir, recovery.last_window, log,
                                taking_over);
        !st.ok()) {
      if (taking_over) {
        log.Error("--standby: not taking over: {}", st.message());
        return kTakeOverLost;
      }
      PrintError(st.message());
      return kExitError;
    }
  }
  // The owner's record: its epoch is in STATS, its address is what replicas name.
  std::unique_ptr<repl::Ownership> ownership;
  if (replica != nullptr) {
    server_options.extra_stats = [&ownership](net::StatList& s) {
      s.insert(s.end(), {{"role", 1}, {"epoch", ownership != nullptr ? ownership->epoch() : 0}});
    };
  }
  net::Server server(engine, server_options, log);
  if (auto st = server.Listen(); !st.ok()) {
    PrintError(st.message());
    return kExitError;
  }
  std::string host = o.listen.substr(0, o.listen.rfind(':'));
  if (replica != nullptr) {
    // The address others are given for this owner (CheckAdvertise checked --advertise).
    std::string address = fmt::format("{}:{}", host, server.port());
    if (!o.advertise.empty()) {
      std::string advertised_host;
      uint16_t advertised_port = 0;
      (void)net::ParseHostPort(o.advertise, &advertised_host, &advertised_port);
      address =
          advertised_port == 0
              ? fmt::format("{}:{}", o.advertise.substr(0, o.advertise.rfind(':')), server.port())
              : o.advertise;
    }
    // Claimed before any write is taken.
    auto claimed =
        repl::Ownership::Claim(repl_options, address, &log, repl::Ownership::kRefreshInterval,
                               taking_over ? takeover->revision : 0);
    if (!claimed.ok() && taking_over) {
      log.Error("--standby: not taking over: {}", claimed.message());
      return kTakeOverLost;
    }
    if (!claimed.ok()) {
      PrintError(fmt::format("--replicate: {}", claimed.message()));
      return kExitError;
    }
    ownership = std::move(claimed).value();
    // Once another owner writes the record, or its marker is in the stream, nothing
    // more is acknowledged here (docs/replication.md, "Fencing").
    ownership->OnLost([&fence, r = replica.get()](const std::string& owner) {
      r->Fence(owner);
      fence.Set(owner);
    });
    replica->SetOwnerCheck([o = ownership.get()] { return o->Deposed(); });
    if (auto st = replica->PublishEpochMarker(ownership->epoch(), address); !st.ok()) {
      if (taking_over) {
        log.Error("--standby: not taking over: {}", st.message());
        return kTakeOverLost;
      }
      PrintError(fmt::format("--replicate: refusing to take writes: {}", st.message()));
      return kExitError;
    }
    // The stream holds every window since the last owner's newest replicated
    // checkpoint, and each standby start and takeover reads all of it: owners that
    // each live less than --checkpoint-interval would let it grow for good. A new
    // owner's first checkpoint, replicated, purges it.
    if (taking_over && engine.CheckpointSoon()) {
      log.Info("took over: writing a checkpoint now, to purge the stream up to it");
    }
  }
  std::unique_ptr<net::MetricsServer> metrics;
  if (!o.metrics_listen.empty()) {
    net::MetricsServerOptions metrics_options;
    metrics_options.listen = o.metrics_listen;
    metrics_options.bearer_token = server_options.auth_token;
    metrics_options.tls = server_options.tls;
    BuildInfo build = GetBuildInfo();
    auto render = [&server, &engine, build, r = replica.get()] {
      net::MetricsSnapshot snap;
      snap.stats = server.Stats();
      if (r != nullptr) AppendReplicationStats(*r, snap.stats);
      snap.wal_writer = engine.Stats().wal.writer;
      snap.build_info = {
          {"version", build.version}, {"commit", build.commit}, {"build_type", build.build_type}};
      return net::RenderMetrics(snap);
    };
    metrics = std::make_unique<net::MetricsServer>(metrics_options, render, log);
    if (auto st = metrics->Listen(); !st.ok()) {
      PrintError(st.message());
      return kExitError;
    }
  }
  server.Start();
  if (metrics) metrics->Start();
  if (follower != nullptr) {
    // A standby notices a stale record within a quarter of a second.
    if (takeover != nullptr && takeover->standby) {
      follower->set_owner_read_interval(std::chrono::milliseconds(250));
    }
    auto started = follower->Start(engine, [&log](const std::string& message) {
      // The replica cannot go on without the window it lacks: stop; a restart reads
      // the stream again.
      log.Error("stopping: following the stream failed: {}", message);
      std::_Exit(kExitError);
    });
    if (!started.ok()) {
      PrintError(started.message());
      return kExitError;
    }
  }
  log.Info(
      "convergence serving on {}:{} (partitions {}, io threads {}, window {}, fsync {}, "
      "data dir {}, auth {}, tls {}, schemas {})",
      host, server.port(), engine_options.partitions, engine_options.lanes,
      util::FormatDuration(o.window), following ? "none" : o.fsync,
      following ? fmt::format("none (following {})", o.cluster_name) : o.data_dir,
      server_options.auth_token.empty() ? "off" : "on",
      server_options.tls == nullptr ? "off" : (server_options.tls->mutual() ? "mutual" : "on"),
      schemas.size());
  std::printf("listening on %s:%u\n", host.c_str(), server.port());
  if (metrics) {
    std::string metrics_host = o.metrics_listen.substr(0, o.metrics_listen.rfind(':'));
    const char* scheme = server_options.tls != nullptr ? "https" : "http";
    log.Info("metrics at {}://{}:{}/metrics", scheme, metrics_host, metrics->port());
    std::printf("metrics on %s://%s:%u/metrics\n", scheme, metrics_host.c_str(), metrics->port());
  }
  const char* http = server_options.tls != nullptr ? "https" : "http";
  const char* ws = server_options.tls != nullptr ? "wss" : "ws";
  if (server.ws_port() != 0) {
    std::string ws_host = o.ws_listen.substr(0, o.ws_listen.rfind(':'));
    log.Info("WebSocket at {}://{}:{}/", ws, ws_host, server.ws_port());
    std::printf("websocket on %s://%s:%u/\n", ws, ws_host.c_str(), server.ws_port());
  }
  if (server.console_port() != 0) {
    std::string console_host = o.console.substr(0, o.console.rfind(':'));
    log.Info("console at {}://{}:{}/", http, console_host, server.console_port());
    std::printf("console on %s://%s:%u/\n", http, console_host.c_str(), server.console_port());
  }
  std::fflush(stdout);

  int sig = 0;
  std::chrono::steady_clock::time_point fenced_until{};
  for (;;) {
    timespec tick{0, 100'000'000};
    sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig < 0 && takeover != nullptr && takeover->standby) {
      if (auto revision = follower->StaleRevision(o.failover_after); revision.has_value()) {
        log.Warn("the owner record of {} was not refreshed for {} (revision {}): taking over",
                 o.cluster_name, util::FormatDuration(o.failover_after), *revision);
        if (metrics) metrics->Stop();
        follower->Stop();
        server.Shutdown();
        takeover->revision = *revision;
        return kTakeOver;
      }
    }
    if (sig < 0) {
      if (!fence.set) continue;
      auto now = std::chrono::steady_clock::now();
      if (fenced_until == std::chrono::steady_clock::time_point{}) {
        std::string owner = fence.Owner();
        log.Error("deposed: telling writers that {} owns {} now; stopping in {} s",
                  owner.empty() ? "another server" : owner, o.cluster_name, kFencedGrace.count());
        server.Fence(owner);
        fenced_until = now + kFencedGrace;
      } else if (now >= fenced_until) {
        log.Error("stopping: deposed as the owner of {}", o.cluster_name);
        std::_Exit(kExitError);
      }
      continue;
    }
    if (sig != SIGHUP) break;
    if (server_options.tls == nullptr) {
      log.Info("received SIGHUP: nothing to reload (no --tls-cert)");
      continue;
    }
    if (auto st = server_options.tls->Reload(); st.ok()) {
      log.Info("received SIGHUP: reloaded the TLS certificate; new connections use it");
    } else {
      log.Error("received SIGHUP: keeping the TLS certificate in use: {}", st.message());
    }
  }
  log.Info("received {}", sig == SIGINT ? "SIGINT" : "SIGTERM");
  if (fence.set) {
    // Nothing more can be made durable here: no last window to flush.
    log.Error("stopping: deposed as the owner of {}", o.cluster_name);
    std::_Exit(kExitError);
  }
  if (metrics) metrics->Stop();
  if (follower != nullptr) follower->Stop();
  server.Shutdown();
  if (*lock_fd >= 0) ::close(*lock_fd);
  return kExitOk;
}

// Removes what a takeover that did not win wrote to the standby's data dir.
util::Status ClearDataDir(const std::string& dir) {
  auto listing = wal::ListDir(dir);
  if (!listing.ok()) return listing.status();
  std::vector<std::string> paths;
  for (const auto& f : listing->segments)
    paths.push_back(f.path);
  for (const auto& f : listing->checkpoints)
    paths.push_back(f.path);
  paths.insert(paths.end(), listing->stale_checkpoints.begin(), listing->stale_checkpoints.end());
  // The first file that cannot be removed stops it, named (a later success must not
  // hide it).
  for (const auto& path : paths) {
    std::error_code ec;
    if (!std::filesystem::remove(path, ec) && ec) {
      return util::Status::Error(fmt::format(
          "--data-dir: cannot clear '{}': cannot remove '{}': {}", dir, path, ec.message()));
    }
  }
  return wal::FsyncDir(dir);
}

// --advertise, and a --listen that could not be named to others (docs/replication.md,
// "Addresses").
util::Status CheckAdvertise(const ServeOptions& o) {
  const bool owner = !o.replicate.empty() || o.standby;
  if (!o.advertise.empty()) {
    if (!owner) {
      return util::Status::Error(
          "--advertise needs --replicate or --standby: it is the address an owner names in its "
          "record");
    }
    std::string host;
    uint16_t port;
    if (auto st = net::ParseHostPort(o.advertise, &host, &port); !st.ok()) {
      return util::Status::Error(fmt::format("--advertise: {}", st.message()));
    }
    if (net::IsWildcardHost(host)) {
      return util::Status::Error(fmt::format(
          "--advertise: '{}' is a wildcard address; give one that replicas and clients reach "
          "this server at",
          o.advertise));
    }
    return util::Status::Ok();
  }
  std::string host;
  uint16_t port;
  if (owner && net::ParseHostPort(o.listen, &host, &port).ok() && net::IsWildcardHost(host)) {
    return util::Status::Error(fmt::format(
        "--listen {} listens on every interface: an owner must name an address others reach it "
        "at; give --advertise HOST:PORT",
        o.listen));
  }
  return util::Status::Ok();
}

}  // namespace

int RunServe(const ServeOptions& o) {
  if (auto st = CheckAdvertise(o); !st.ok()) {
    PrintError(st.message());
    return kExitError;
  }
  if (!o.standby) return Serve(o, nullptr);
  if (o.follow.empty()) {
    PrintError("--standby needs --follow (and --cluster-name): a standby is a read replica first");
    return kExitError;
  }
  if (o.failover_after < std::chrono::seconds(2)) {
    PrintError(fmt::format(
        "--failover-after: {} is too short; the least is 2s (the owner refreshes its record "
        "every second)",
        util::FormatDuration(o.failover_after)));
    return kExitError;
  }
  std::error_code ec;
  std::filesystem::create_directories(o.data_dir, ec);
  auto listing = wal::ListDir(o.data_dir);
  if (!listing.ok()) {
    PrintError(fmt::format("--data-dir: {}", listing.message()));
    return kExitError;
  }
  if (!listing->segments.empty() || !listing->checkpoints.empty()) {
    PrintError(fmt::format(
        "--standby: the data dir '{}' holds a log or a checkpoint; a standby starts from an "
        "empty one (the stream fills it when it takes over)",
        o.data_dir));
    return kExitError;
  }
  util::Logger log(*util::ParseLogLevel(o.log_level), *util::ParseLogFormat(o.log_format));
  repl::ReplicationOptions repl_options;
  repl_options.urls = o.follow;
  repl_options.cluster_name = o.cluster_name;
  repl_options.replicas = o.replicas;
  for (;;) {
    Takeover watch;
    watch.standby = true;
    int code = Serve(o, &watch);
    if (code != kTakeOver) return code;
    // The stream read to its end, as the data dir's one checkpoint; then the owner's
    // path from it, claiming the record from the revision read.
    repl::StreamReadReport report;
    uint64_t t0 = util::MonoNanos();
    if (auto st = repl::WriteStreamCheckpoint(repl_options, o.data_dir, &report); !st.ok()) {
      log.Error("--standby: not taking over: {}", st.message());
      if (auto cleared = ClearDataDir(o.data_dir); !cleared.ok()) {
        PrintError(cleared.message());
        return kExitError;
      }
      continue;
    }
    log.Info("--standby: wrote the stream up to window {} into {} in {} ms", report.last_window,
             o.data_dir, (util::MonoNanos() - t0) / 1'000'000);
    ServeOptions owner = o;
    owner.replicate = o.follow;
    owner.follow.clear();
    owner.standby = false;
    Takeover claim;
    claim.revision = watch.revision;
    code = Serve(owner, &claim);
    if (code != kTakeOverLost) return code;
    if (auto cleared = ClearDataDir(o.data_dir); !cleared.ok()) {
      PrintError(cleared.message());
      return kExitError;
    }
  }
}

}  // namespace conv::cmd

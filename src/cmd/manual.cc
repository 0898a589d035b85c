#include "cmd/manual.h"

#include <map>
#include <string_view>

namespace conv::cmd {

namespace {

// Keyed by subcommand name; "" is convergence(1). Plain ASCII; markup in manual.h.
const std::map<std::string_view, ManualEntry>& Entries() {
  static const auto* entries = new std::map<std::string_view, ManualEntry>{
      {"",
       {
           .description =
               {
                   "`convergence` is a state-convergence server and its tools, in one binary. "
                   "Many writers (*sources*) stream what they know about typed entities "
                   "(players, devices, services); the server converges it into one current "
                   "state per entity, answers point reads, coalesces updates per window and "
                   "keeps them in a write-ahead log.",
                   "Each command has its own page, `convergence-`*command*(1), and lists its "
                   "flags with `convergence` *command* `--help`. Durations take a unit: `us`, "
                   "`ms`, `s`, `m` or `h` (`10ms`, `60s`).",
               },
           .sections =
               {
                   {"Files",
                    {
                        "`/usr/share/doc/convergence/examples/convergence.service` :: An "
                        "example systemd unit running `convergence serve` (the prefix depends "
                        "on the installation).",
                        "`/usr/share/doc/convergence/examples/schemas.txt` :: An example schema "
                        "file for `serve --schema-file`.",
                    }},
               },
           .exit_status =
               {
                   {"0", "Success."},
                   {"2", "A bad flag, or an error; each command's page lists its own codes."},
               },
           .examples =
               {
                   {"Start a server on the default address, 127.0.0.1:3727, with its data in "
                    "`./convergence-data`:",
                    "convergence serve"},
                   {"Read an entity from it:", "convergence query player p-17"},
                   {"Follow every change to the players:",
                    "convergence subscribe player --bootstrap"},
                   {"Show the version, git commit and build type:", "convergence --version"},
               },
           .see_also = {},
       }},
      {"serve",
       {
           .description =
               {
                   "Runs the server: it accepts writers and readers on `--listen` (protocol "
                   "v1, see `docs/protocol.md`), applies ASSERT, PATCH and RETRACT ops per "
                   "entity and source, converges each entity's claims, and closes a "
                   "coalescing window every `--window`. Each window's changes go to the "
                   "write-ahead log in `--data-dir` before writers are acknowledged.",
                   "At start-up the server locks the data dir, replays the newest valid "
                   "checkpoint and every later window of the log, and logs what it recovered. "
                   "A torn tail of the newest segment (a crash in the middle of a write) is "
                   "cut off with a warning; other corruption stops the start unless "
                   "`--salvage` is given.",
                   "When it is ready it prints `listening on` *HOST*:*PORT* on standard "
                   "output (the bound port, also when `--listen` asked for port 0), and with "
                   "`--metrics-listen` then `metrics on http://`*HOST*:*PORT*`/metrics`, with "
                   "`--ws-listen` `websocket on ws://`*HOST*:*PORT*`/`, with `--console` "
                   "`console on http://`*HOST*:*PORT*`/`.",
                   "A non-loopback `--listen` is refused unless `--auth-token-file` names a "
                   "file readable by its owner only (its content is the token every client "
                   "HELLO must carry) or mutual TLS is on (`--tls-client-ca`).",
                   "With `--tls-cert` and `--tls-key` every connection speaks TLS 1.2 or "
                   "later (clients: `--tls` or `--tls-ca`); with `--tls-client-ca` every "
                   "client must also present a certificate signed by that CA.",
               },
           .sections =
               {
                   {"Signals",
                    {
                        "`SIGINT`, `SIGTERM` :: Stop gracefully: stop accepting and reading, "
                        "close one last window, make it durable, send every writer its final "
                        "ACK and a `shutting_down` error, close the connections and exit 0. "
                        "Ops that arrived after reading stopped are neither applied nor "
                        "acknowledged; writers resend them to the next server.",
                        "`SIGHUP` :: Read the `--tls-cert`, `--tls-key` and `--tls-client-ca` "
                        "files again; new connections use them. A reload that fails keeps the "
                        "files in use and logs why.",
                    }},
                   {"WebSocket and console",
                    {
                        "With `--ws-listen` *HOST*:*PORT* the server also speaks the protocol "
                        "over WebSocket (RFC 6455; `wss://` with `--tls-cert`), for browsers: "
                        "the same sessions, limits, token and loopback rule as `--listen`. "
                        "`--console` *HOST*:*PORT* does the same and serves, at `/`, a console "
                        "page compiled into the binary: a live table of a schema, per-second "
                        "charts from STATS and the claims of an entity. A browser page may "
                        "connect only from the listener's own origin or one in "
                        "`--ws-allowed-origins`. See `docs/operations.md`.",
                    }},
                   {"Metrics",
                    {
                        "With `--metrics-listen` *HOST*:*PORT* the server answers `GET "
                        "/metrics` in the Prometheus text format: ops by kind "
                        "(`convergence_ops_total`), ERROR frames by code "
                        "(`convergence_errors_total`), write-ahead log batches, records and "
                        "bytes, an fdatasync latency histogram "
                        "(`convergence_wal_fsync_duration_seconds`), the coalescing ratio, "
                        "entities, sources and connections. Each STATS counter has one "
                        "metric; `docs/operations.md` lists them.",
                        "With `--tls-cert` the endpoint is HTTPS with the same certificate. "
                        "Like `--listen`, a non-loopback `--metrics-listen` needs "
                        "`--auth-token-file` or mutual TLS; with a token, every scrape must send "
                        "`Authorization: Bearer` *TOKEN* (Prometheus: `authorization: "
                        "{credentials_file: ...}`). Other paths answer 404.",
                    }},
                   {"Replication",
                    {
                        "With `--replicate` *URLS* `--cluster-name` *NAME* the server is the "
                        "owner of *NAME*: every window also goes to the NATS JetStream stream "
                        "`CONV_`*NAME* and a write is acknowledged once JetStream holds it; the "
                        "owner records its address and epoch in the KV bucket "
                        "`CONV_OWNER_`*NAME*.",
                        "With `--follow` *URLS* `--cluster-name` *NAME* it is a read replica: "
                        "no data dir; it rebuilds the state from the stream, then applies each "
                        "new window with the owner's window number, so QUERY and SUBSCRIBE "
                        "(bootstrap, resume, include_prev) answer as the owner does. A writer's "
                        "HELLO gets the error `not_owner` naming the owner's address. See "
                        "`docs/replication.md`.",
                        "With `--standby` as well (and an empty `--data-dir`) the replica takes "
                        "*NAME* over when the owner's record has not been refreshed for "
                        "`--failover-after` (default 3s): it writes the stream into its data "
                        "dir, claims the record from the revision it read and takes writes as "
                        "the owner. An owner that another replaced acknowledges nothing more, "
                        "answers its writers `not_owner` naming the new owner and exits 5 s "
                        "later (status 2).",
                    }},
                   {"Logging",
                    {
                        "Logs go to standard error, one line per event. `--log-format text` "
                        "(the default) writes *TIME LEVEL message*, with newlines and other "
                        "control characters in the message escaped; `--log-format json` writes "
                        "one JSON object per line with the fields `ts` (UTC, RFC 3339 with "
                        "milliseconds), `level` (`debug`, `info`, `warn`, `error`) and `msg`.",
                    }},
                   {"Files",
                    {
                        "*DATA_DIR*`/LOCK` :: Locked while a server runs, so that two servers "
                        "never share a data dir.",
                        "*DATA_DIR*`/wal-*.log` :: Log segments, one block per window.",
                        "*DATA_DIR*`/checkpoint-*.ckpt` :: Checkpoints: the state as of one "
                        "window. Older "
                        "segments are deleted after each.",
                        "*DATA_DIR*`/torn-*.bin`, `*.salvaged`, `salvaged-*.bin` :: Bytes cut "
                        "off by recovery or moved aside by `--salvage`, kept for inspection "
                        "with `convergence wal-dump`.",
                    }},
               },
           .exit_status =
               {
                   {"0", "Stopped by SIGINT or SIGTERM after a graceful stop."},
                   {"2",
                    "Start-up failed (bad flag, unreadable or invalid schema file, a schema "
                    "change other than appended fields, a token file with loose permissions, "
                    "a data dir in use, corruption in the log without `--salvage`, an "
                    "address that cannot be bound), or a write or fdatasync of the log failed "
                    "(the server stops before acknowledging anything of that window)."},
               },
           .examples =
               {
                   {"Serve on loopback with the data in `/var/lib/convergence` and metrics "
                    "for a local Prometheus:",
                    "convergence serve --data-dir /var/lib/convergence \\\n"
                    "    --metrics-listen 127.0.0.1:9727"},
                   {"Serve the console on loopback (open http://127.0.0.1:8080/):",
                    "convergence serve --console 127.0.0.1:8080"},
                   {"Serve on every interface with a token and more schemas, logging JSON:",
                    "umask 077; head -c 32 /dev/urandom | base64 > token\n"
                    "convergence serve --listen 0.0.0.0:3727 --auth-token-file token \\\n"
                    "    --schema-file schemas.txt --log-format json"},
                   {"Acknowledge writes once written to the OS rather than fdatasynced "
                    "(survives a crash of the process, not of the machine):",
                    "convergence serve --fsync none"},
               },
           .see_also = {"systemd.service(5)"},
       }},
      {"query",
       {
           .description =
               {
                   "Connects to a server, reads one entity and prints "
                   "`{\"schema\":`...`,\"id\":`...`,\"record\":{`...`}}` on one line. With "
                   "`--claims` it also prints each source's claim: "
                   "`\"claims\":[{\"source\":`...`,\"ts\":`...`,\"record\":{`...`}}]`.",
                   "Every value reads back exactly. An id, source name or string value that is "
                   "valid UTF-8 prints as a JSON string; one that is not prints as "
                   "`{\"base64\":\"`...`\"}` holding its bytes (ff fe: `{\"base64\":\"//4=\"}`, "
                   "while the id U+00FF U+00FE, valid UTF-8, prints as a string). Values of bytes "
                   "fields print as base64 strings. f64 values print in the shortest form that "
                   "reads back "
                   "exactly (-0.0 as `-0`); NaN, infinity and minus infinity print as the "
                   "strings `\"NaN\"`, `\"Infinity\"` and `\"-Infinity\"` (the schema says "
                   "the field is an f64, so a string there is one of these).",
               },
           .sections = {},
           .exit_status =
               {
                   {"0", "The entity exists; it was printed."},
                   {"1", "No such entity."},
                   {"2", "Error: unreachable server, refused handshake, unknown schema, bad flag."},
               },
           .examples =
               {
                   {"Read player p-17 and every source's claim on it:",
                    "convergence query player p-17 --claims"},
                   {"Read from a server that needs a token:",
                    "convergence query --server 192.0.2.10:3727 --auth-token-file token \\\n"
                    "    device sensor-4"},
               },
           .see_also = {},
       }},
      {"subscribe",
       {
           .description =
               {
                   "Connects to a server as a reader, subscribes to *schema* (optionally only "
                   "ids starting with `--prefix` and only the `--fields` named) and prints one "
                   "JSON object per line on standard output, flushed after each line:",
                   "- `{\"type\":\"snapshot\",\"kind\":\"upsert\"|\"delete\",\"id\":`..."
                   "`,\"record\":{`...`}}` for each entity of the initial state (with "
                   "`--bootstrap`, or with `--resume`: then deletes are entities removed since "
                   "that window, with an empty record).",
                   "- `{\"type\":\"snapshot_end\",\"total\":`*N*`,\"window\":`*W*"
                   "`,\"reset\":true|false}` once, always: the state printed so far is as of "
                   "the end of window *W*, and changes follow from window *W*+1 with no gap "
                   "and no duplicate. `reset` true means the snapshot was the full state "
                   "(drop what you held); false means a delta since `--resume`, or nothing "
                   "before live changes.",
                   "- `{\"type\":\"change\",\"window\":`*W*`,\"kind\":`...`,\"id\":`..."
                   "`,` `\"changed\":[`*field*`,`...`],\"ts\":`*T*`,\"record\":{`...`}}` "
                   "(one line) for each entity whose converged state changed in window *W*: the "
                   "changed "
                   "fields, the largest op ts applied to it in the window and its new record; "
                   "with `--include-prev` also `\"prev\":{`...`}` (the record at the start of "
                   "the window) or `\"prev\":null` (the entity did not exist).",
                   "Records print as with `convergence query`. On exit a summary goes to "
                   "standard error: snapshot entries, changes, windows, and the last window "
                   "whose changes were all printed; pass it to `--resume` to continue where "
                   "this run stopped.",
               },
           .sections =
               {
                   {"Signals",
                    {
                        "`SIGINT`, `SIGTERM` :: Stop: print the summary and exit 0.",
                    }},
               },
           .exit_status =
               {
                   {"0", "Stopped by `--count`, SIGINT or SIGTERM."},
                   {"2", "A bad flag or an unreadable `--auth-token-file`."},
                   {"3",
                    "The server is unreachable, refused the handshake, closed the connection "
                    "or sent a connection-level error (for instance `shutting_down`)."},
                   {"4", "The server does not know the schema, or the schema has no such field."},
                   {"5",
                    "The server refused the subscription (its message is printed), for "
                    "instance an `--interval` over 3600000 or a `--prefix` over 255 bytes."},
               },
           .examples =
               {
                   {"Every player's current state, then every change as it happens:",
                    "convergence subscribe player --bootstrap"},
                   {"Positions of the players of one zone, at most once a second per player, "
                    "with the previous values:",
                    "convergence subscribe player --prefix zone4/ --fields x,y,z \\\n"
                    "    --interval 1000 --include-prev"},
                   {"Continue after window 1234, the last window a previous run reported, and "
                    "stop after 100 changes:",
                    "convergence subscribe player --resume 1234 --count 100"},
               },
           .see_also = {},
       }},
      {"load",
       {
           .description =
               {
                   "Generates load against a server: `--workers` writer connections, each its "
                   "own source named `load-1` ... `load-`*N* (a later run continues each "
                   "source's seq where the server left it), writing `--mix` percentages of "
                   "ASSERT, PATCH and RETRACT over `--entities` entities, optionally "
                   "throttled by `--rate`; and `--readers` connections issuing point QUERYs "
                   "back to back to measure their latency.",
                   "Throughput counts ops acknowledged within `--duration`; after it the "
                   "workers wait up to 10 s for the last ACK. The ACK latency of every "
                   "acknowledged op, from its generation to the receipt of the first "
                   "(cumulative) ACK covering it, is reported at p50, p99 and p999. The "
                   "report is printed as Markdown tables, or as JSON with `--json`, and "
                   "includes the server's coalescing ratio from its STATS. `--html` *FILE* "
                   "also writes it as one self-contained HTML page: throughput over time "
                   "(counts sampled every 100 ms) and CDFs of the latencies measured.",
                   "`--subscribers` opens that many connections, each subscribed to all of "
                   "`--schema` (with `--bootstrap`: the full state first; with "
                   "`--include-prev`: previous records too); the writers start once every "
                   "subscriber has its SNAPSHOT_END. The report adds the changes received, "
                   "their rate, their latency (receive time minus the change's ts; every "
                   "change of up to 10 subscribers) at p50, p99 and p999, the server's "
                   "conflations, the bootstrap time and entities, and how long after the "
                   "writers drained every subscriber received a sentinel change written "
                   "last.",
                   "`--workers` defaults to 1, except with `--subscribers` *N* `--bootstrap`: "
                   "then no writer starts unless `--workers` is given, and the run ends once "
                   "every subscriber's bootstrap is complete (a bootstrap alone). "
                   "`--workers 0 --readers` *N* measures point reads alone for `--duration`. "
                   "`--workers 0` with neither readers nor subscribers is refused.",
               },
           .sections = {},
           .exit_status =
               {
                   {"0", "A clean run: every op acknowledged, no errors."},
                   {"2", "A bad flag."},
                   {"3", "The server is unreachable or refused the handshake."},
                   {"4", "The server does not know `--schema`."},
                   {"5",
                    "The run saw errors or unacknowledged ops, or a subscriber failed or "
                    "never received the final state."},
               },
           .examples =
               {
                   {"Nine writers for 10 seconds with the default 70/20/10 mix:",
                    "convergence load --workers 9 --duration 10s"},
                   {"Hot entities (10% of them receive 90% of the writes) and two readers, "
                    "as JSON:",
                    "convergence load --workers 4 --hot-pct 10 --readers 2 --json"},
                   {"Nine writers and ten subscribers:",
                    "convergence load --workers 9 --subscribers 10 --entities 10000"},
                   {"Time a bootstrap of what the server holds (no writers start):",
                    "convergence load --subscribers 1 --bootstrap --quiet"},
                   {"Point read latency of an idle server, readers alone:",
                    "convergence load --workers 0 --readers 1 --duration 10s"},
                   {"The report as a page with charts:",
                    "convergence load --workers 9 --subscribers 10 --html load.html"},
               },
           .see_also = {},
       }},
      {"wal-dump",
       {
           .description =
               {
                   "Reads a data dir (its checkpoints, then its segments) or one segment or "
                   "checkpoint file, offline and read-only; it may run next to a live server.",
                   "By default it prints every block and record in readable form. `--json` "
                   "prints one object per record (`file`, `offset`, `window`, `kind` = claim, "
                   "retract, source or schema, then the record's fields; ids, source names and "
                   "values print as with `convergence query`, as do the ids and source names "
                   "of the readable form). `--stats` prints "
                   "totals: windows, records by kind, distinct entities and sources, ops "
                   "represented and the coalescing ratio. `--verify` checks every block's CRC "
                   "and record and prints each problem with its file and offset.",
               },
           .sections = {},
           .exit_status =
               {
                   {"0", "Clean."},
                   {"1", "A torn tail only: what recovery cuts off at start-up."},
                   {"2", "Corruption, or the path cannot be read."},
               },
           .examples =
               {
                   {"Check a data dir before starting a server on it:",
                    "convergence wal-dump --verify /var/lib/convergence"},
                   {"Count what the log holds:", "convergence wal-dump --stats ./convergence-data"},
                   {"Every record of one segment as JSON:",
                    "convergence wal-dump --json ./convergence-data/wal-0000000000000001.log"},
               },
           .see_also = {},
       }},
      {"bench",
       {
           .description =
               {
                   "Runs the performance page's scenarios and prints the report as Markdown "
                   "(or JSON with `--json`): `write` (9 writers, 10,000 entities, the "
                   "70/20/10 mix), `subscribers` (the same with 0, 1, 10 and 100 "
                   "subscribers, unlimited and at a fixed 100K ops/s), `reads` (one point "
                   "reader at three background write rates), `bootstrap` (one subscriber "
                   "bootstrapping 100,000 entities), `coalescing` (hot entities) and "
                   "`saturation` (the write scenario at an unlimited rate: ACK latency, "
                   "notification latency with 1, 10 and 100 subscribers and QUERY latency "
                   "beside the writers, against targets of 3 and 2 windows, and QUERY "
                   "latency of an idle server) and `scale` (per state size of "
                   "`--scale-entities`: preload, memory, write throughput and claim "
                   "records/s, a checkpoint, one subscriber bootstrapping the whole state, "
                   "and a restart; not with `--server`). Each measurement runs against a "
                   "fresh embedded server on loopback, or against `--server` when given. Each "
                   "scenario's targets are listed with their verdicts. `--html` *FILE* also "
                   "writes the report as one self-contained HTML page: per scenario, "
                   "throughput over time of every run, CDFs of ACK, notification and QUERY "
                   "latency, and each target drawn as a line against what was measured.",
               },
           .sections = {},
           .exit_status =
               {
                   {"0", "Every scenario ran without errors."},
                   {"2",
                    "A bad flag, a scenario failed, or `--out` or `--html` could not be "
                    "written."},
               },
           .examples =
               {
                   {"A short run of every scenario:", "convergence bench --quick"},
                   {"Only the write scenario for 30 seconds, report kept in a file:",
                    "convergence bench --scenario write --duration 30s --out perf.md"},
                   {"Latency at saturation (ACK, notifications, QUERY):",
                    "convergence bench --scenario saturation"},
                   {"The cost of the state at 1,000,000 and 10,000,000 entities:",
                    "convergence bench --scenario scale --scale-entities 1000000,10000000"},
                   {"Every scenario briefly, with the charts in one HTML page:",
                    "convergence bench --quick --html perf.html"},
               },
           .see_also = {},
       }},
  };
  return *entries;
}

}  // namespace

const ManualEntry* FindManualEntry(std::string_view command) {
  const auto& entries = Entries();
  auto it = entries.find(command);
  return it == entries.end() ? nullptr : &it->second;
}

}  // namespace conv::cmd

#include "net/server.h"

#include <fmt/format.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/address.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <algorithm>

#include <sys/resource.h>

#include <cerrno>

#include "net/listener.h"
#include "net/session.h"
#include "util/clock.h"

namespace conv::net {

namespace {
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
}

Server::Server(engine::Engine& engine, ServerOptions options, util::Logger& log)
    : engine_(engine),
      options_(std::move(options)),
      log_(log),
      max_connections_(options_.max_connections),
      fanout_(std::make_unique<Fanout>(engine, options_.subscriber_backlog,
                                       options_.snapshot_stall_limit)) {
  for (size_t i = 0; i < engine_.lane_count(); ++i) {
    io_.push_back(std::make_unique<IoThread>(&engine_.lane(i)));
  }
  // Connections that say HELLO without a source (readers, subscribers) move here, so
  // that a QUERY or a NOTIFY never waits behind writers' input.
  io_.push_back(std::make_unique<IoThread>(nullptr));
  read_io_ = io_.back().get();
}

Server::~Server() {
  Shutdown();
}

util::Status Server::Listen() {
  const bool authenticated =
      !options_.auth_token.empty() || (options_.tls != nullptr && options_.tls->mutual());
  auto open = [&](const std::string& listen, std::string_view flag,
                  std::unique_ptr<asio::ip::tcp::acceptor>* out, uint16_t* port) {
    auto acceptor = OpenListener(
        io_[0]->ctx, listen, flag, authenticated,
        fmt::format("{}: refusing to listen on {} without authentication: anyone who can reach "
                    "that address could write and read every entity. Give --auth-token-file "
                    "FILE, or mutual TLS (--tls-cert, --tls-key and --tls-client-ca), or listen "
                    "on 127.0.0.1",
                    flag, listen));
    if (!acceptor.ok()) return acceptor.status();
    *out = std::move(acceptor).value();
    *port = (*out)->local_endpoint().port();
    return util::Status::Ok();
  };
  if (auto st = open(options_.listen, "--listen", &acceptor_, &port_); !st.ok()) return st;
  if (!options_.ws_listen.empty()) {
    if (auto st = open(options_.ws_listen, "--ws-listen", &ws_acceptor_, &ws_port_); !st.ok()) {
      return st;
    }
  }
  if (!options_.console_listen.empty()) {
    if (options_.console_page.empty()) {
      return util::Status::Error("--console: this build has no console page");
    }
    if (auto st = open(options_.console_listen, "--console", &console_acceptor_, &console_port_);
        !st.ok()) {
      return st;
    }
  }
  return FitDescriptorLimit();
}

util::Status Server::FitDescriptorLimit() {
  // Every connection holds a descriptor; the log, checkpoints, the data dir lock, the
  // listeners and the I/O threads need theirs. Raise the soft limit to what
  // --max-connections needs; where the hard limit does not allow it, serve fewer
  // connections so that the log can always open its next segment.
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return util::Status::Ok();
  const uint64_t want = uint64_t{options_.max_connections} + kReservedDescriptors;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max == RLIM_INFINITY ? want : std::min<rlim_t>(want, rl.rlim_max);
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want) return util::Status::Ok();
  if (rl.rlim_cur < 2 * kReservedDescriptors) {
    return util::Status::Error(fmt::format(
        "the open file limit is {} (ulimit -n); the server needs at least {} descriptors",
        static_cast<uint64_t>(rl.rlim_cur), 2 * kReservedDescriptors));
  }
  max_connections_ = static_cast<uint32_t>(rl.rlim_cur - kReservedDescriptors);
  log_.Warn(
      "--max-connections {} needs {} file descriptors but the limit is {} (ulimit -n): serving "
      "at most {} connections",
      options_.max_connections, want, static_cast<uint64_t>(rl.rlim_cur), max_connections_);
  return util::Status::Ok();
}

void Server::Start() {
  started_us_ = util::MonoNanos() / 1000;
  fanout_->Start();
  engine_.Start(this);
  // Leases survive a restart (docs/protocol.md, session rule 4): every source whose
  // last connection asked for one gets it again, counted from now, before any
  // connection can say HELLO (the I/O threads do not run yet).
  const engine::SourceTable& sources = engine_.sources();
  for (uint32_t src = 1; src <= sources.size(); ++src) {
    if (uint64_t lease = sources.lease_ms(src); lease != 0) {
      StartLease(src, std::chrono::milliseconds(lease), *io_[src % engine_.lane_count()]);
    }
  }
  Accept(*acceptor_, false, false);
  if (ws_acceptor_ != nullptr) Accept(*ws_acceptor_, true, false);
  if (console_acceptor_ != nullptr) Accept(*console_acceptor_, true, true);
  for (auto& t : io_) {
    IoThread* io = t.get();
    io->guard.emplace(io->ctx.get_executor());
    io->thread = std::thread([io] { io->ctx.run(); });
  }
  started_ = true;
}

void Server::Accept(asio::ip::tcp::acceptor& acceptor, bool ws, bool console) {
  asio::co_spawn(
      io_[0]->ctx,
      [this, &acceptor, ws, console]() -> asio::awaitable<void> {
        for (;;) {
          IoThread& target = *io_[next_io_++ % engine_.lane_count()];
          auto [ec, socket] = co_await acceptor.async_accept(target.ctx, kNoThrow);
          if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
            log_.Warn("accept failed: {}", ec.message());
            if (ec == asio::error::no_descriptors || ec.value() == ENFILE) {
              // Out of descriptors (another process, or more than this server counts):
              // retrying at once would spin. Connections wait in the listen backlog.
              asio::steady_timer pause(io_[0]->ctx, std::chrono::milliseconds(100));
              co_await pause.async_wait(kNoThrow);
            }
            continue;
          }
          // The slot is taken here, on the accepting thread: sessions are built on
          // their own threads, later, so connections accepted back to back would all
          // see the count from before them. ~Session gives the slot back.
          if (counters_.connections.fetch_add(1) >= max_connections_) {
            counters_.connections.fetch_sub(1);
            counters_.connections_rejected.fetch_add(1);
            counters_.CountError(ErrorCode::kOverloaded);
            auto frame = std::make_shared<std::string>();
            std::string why =
                fmt::format("the server has {} connections (--max-connections)", max_connections_);
            if (ws) {
              // Before the upgrade only HTTP can be read (and in clear only).
              *frame = FormatHttpResponse(503, "text/plain; charset=utf-8", why + "\n");
            } else {
              EncodeError(*frame, {0, static_cast<uint64_t>(ErrorCode::kOverloaded), why});
            }
            auto sock = std::make_shared<asio::ip::tcp::socket>(std::move(socket));
            asio::async_write(*sock, asio::buffer(*frame), [sock, frame](auto, auto) {
              asio::error_code ignored;
              sock->shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
              sock->close(ignored);
            });
            continue;
          }
          asio::post(target.ctx, [this, &target, ws, console, s = std::move(socket)]() mutable {
            if (stopping()) {
              counters_.connections.fetch_sub(1);
              return;
            }
            SslPtr tls;
            if (options_.tls != nullptr) {
              auto ssl = options_.tls->NewConnection(s.native_handle());
              if (!ssl.ok()) {
                log_.Warn("cannot start TLS on a connection: {}", ssl.message());
                counters_.connections.fetch_sub(1);
                return;  // the socket closes with this scope
              }
              tls = std::move(ssl).value();
            }
            std::unique_ptr<WsConnection> wsc;
            if (ws) {
              WsHttpPolicy policy;
              policy.allowed_origins = options_.ws_allowed_origins;
              if (console) policy.console_page = options_.console_page;
              // A message may carry one maximal frame, its length field included.
              wsc = std::make_unique<WsConnection>(std::move(policy),
                                                   uint64_t{options_.max_frame} + kFrameHeader);
            }
            auto session = std::make_shared<Session>(std::move(s), target, *this, false,
                                                     std::move(tls), std::move(wsc));
            target.sessions.emplace(session.get(), session);
            session->Start();
          });
        }
      },
      asio::detached);
}

void Server::Fence(const std::string& owner) {
  {
    std::lock_guard lock(fence_mu_);
    if (fenced_) return;
    fenced_owner_ = owner;
    fenced_ = true;
  }
  std::string message = DeposedMessage(owner);
  for (auto& t : io_) {
    asio::post(t->ctx, [io = t.get(), message] {
      for (auto& [p, s] : io->sessions) {
        if (s->writer()) s->Fail(ErrorCode::kNotOwner, message);
      }
    });
  }
}

std::optional<std::string> Server::fenced_owner() {
  if (!fenced_) return std::nullopt;
  std::lock_guard lock(fence_mu_);
  return fenced_owner_;
}

void Server::Shutdown() {
  if (!started_ || shut_down_) return;
  shut_down_ = true;
  stopping_ = true;
  log_.Info("stopping: closing the listener and flushing the last window");
  asio::post(io_[0]->ctx, [this] {
    asio::error_code ignored;
    acceptor_->close(ignored);
    if (ws_acceptor_ != nullptr) ws_acceptor_->close(ignored);
    if (console_acceptor_ != nullptr) console_acceptor_->close(ignored);
  });
  for (auto& t : io_) {
    asio::post(t->ctx, [io = t.get()] {
      for (auto& [p, s] : io->sessions)
        s->StopReading();
    });
  }
  uint64_t w = engine_.Flush();
  for (auto& t : io_) {
    asio::post(t->ctx, [io = t.get()] {
      for (auto& [p, s] : io->sessions)
        s->Fail(ErrorCode::kShuttingDown, "the server is stopping");
      // A pending lease would keep the thread running until it expires.
      for (auto& [p, timer] : io->leases)
        timer->cancel();
    });
  }
  // Each I/O thread returns once its sessions have written their last bytes (or
  // their close grace period ran out).
  for (auto& t : io_) {
    asio::post(t->ctx, [io = t.get()] { io->guard.reset(); });
  }
  for (auto& t : io_) {
    if (t->thread.joinable()) t->thread.join();
  }
  engine_.Stop();
  fanout_->Stop();
  if (engine_.options().follower) {
    log_.Info("stopped at the owner's window {}", engine_.last_window());
  } else if (w != 0) {
    log_.Info("stopped after window {}", w);
  } else {
    log_.Info("stopped; the last window was not made durable (see the error above)");
  }
}

void Server::Adopt(int fd, asio::ip::tcp protocol, std::string input,
                   std::chrono::steady_clock::time_point connected_at, SslPtr tls,
                   std::unique_ptr<WsConnection> ws) {
  IoThread& target = *read_io_;
  asio::post(target.ctx, [this, &target, fd, protocol, input = std::move(input), connected_at,
                          tls = std::move(tls), ws = std::move(ws)]() mutable {
    asio::ip::tcp::socket socket(target.ctx);
    asio::error_code ec;
    socket.assign(protocol, fd, ec);
    if (ec) ::close(fd);
    if (ec || stopping()) {
      counters_.connections.fetch_sub(1);  // the slot the accept loop took
      return;                              // (a stop: the socket closes with this scope)
    }
    auto session = std::make_shared<Session>(std::move(socket), target, *this, true, std::move(tls),
                                             std::move(ws));
    target.sessions.emplace(session.get(), session);
    session->StartAdopted(input, connected_at);
  });
}

Server::SourceSlot& Server::Slot(uint32_t source) {
  if (slots_.size() <= source) slots_.resize(source + 1);
  return slots_[source];
}

size_t Server::ForgetIdleSources() {
  const uint64_t now = util::MonoNanos() / 1000;
  const auto retention = static_cast<uint64_t>(options_.source_retention.count());
  const engine::SourceTable& sources = engine_.sources();
  return engine_.ForgetSources([&](uint32_t id) {
    SourceSlot& slot = Slot(id);
    if (slot.owner.lock() != nullptr || slot.consuming != 0) return false;
    uint64_t durable = sources.durable_seq(id);
    if (durable < slot.sent) return false;
    // Its seq mark is kept while a writer may still resend what it did not see
    // acknowledged; a source that never wrote has none to keep.
    uint64_t since = std::max(slot.active_us, started_us_);
    if (durable != 0 && now - since < retention) return false;
    // A lease timer still armed for it finds another generation and does nothing.
    slot = SourceSlot{.gen = slot.gen + 1};
    return true;
  });
}

util::Result<uint32_t> Server::ClaimSource(std::string_view name, const std::shared_ptr<Session>& s,
                                           bool* reused) {
  std::shared_ptr<Session> old;
  uint32_t source;
  {
    std::lock_guard lock(owners_mu_);
    auto id = engine_.sources().Intern(name, reused);
    // A sweep visits every source: when one found nothing, a flood of new names
    // does not sweep again for a while (it gets overloaded, and retries).
    const uint64_t now = util::MonoNanos() / 1000;
    if (!id.ok() && now - empty_sweep_us_ >= kSweepPause) {
      if (ForgetIdleSources() > 0) {
        id = engine_.sources().Intern(name, reused);
      } else {
        empty_sweep_us_ = now;
      }
    }
    if (!id.ok()) return id;
    source = *id;
    SourceSlot& slot = Slot(source);
    ++slot.gen;
    ++slot.consuming;
    slot.active_us = util::MonoNanos() / 1000;
    old = slot.owner.lock();
    slot.owner = s;
  }
  if (old && old != s) {
    counters_.takeovers.fetch_add(1);
    asio::post(old->context(), [old] {
      old->Fail(ErrorCode::kSourceTakenOver,
                "another connection said HELLO with this source name and took over");
    });
  }
  return source;
}

void Server::StopConsuming(uint32_t source, uint64_t sent_seq) {
  std::shared_ptr<Session> owner;
  {
    std::lock_guard lock(owners_mu_);
    SourceSlot& slot = Slot(source);
    slot.sent = std::max(slot.sent, sent_seq);
    --slot.consuming;
    slot.active_us = util::MonoNanos() / 1000;
    owner = slot.owner.lock();
  }
  if (owner) asio::post(owner->context(), [owner] { owner->CheckWelcome(); });
}

bool Server::HandoverSeq(uint32_t source, uint64_t* seq) {
  std::lock_guard lock(owners_mu_);
  SourceSlot& slot = Slot(source);
  if (slot.consuming > 1) return false;  // the caller is one of them
  *seq = slot.sent;
  return true;
}

bool Server::ReleaseSource(uint32_t source, const Session* s) {
  std::lock_guard lock(owners_mu_);
  SourceSlot& slot = Slot(source);
  if (slot.owner.lock().get() != s) return false;
  slot.owner.reset();
  slot.active_us = util::MonoNanos() / 1000;
  return true;
}

void Server::StartLease(uint32_t source, std::chrono::milliseconds lease, IoThread& io) {
  uint64_t gen;
  {
    std::lock_guard lock(owners_mu_);
    gen = Slot(source).gen;
  }
  if (stopping()) return;  // a stop cancels leases; the claims stay (docs/protocol.md)
  auto timer = std::make_shared<asio::steady_timer>(io.ctx, lease);
  io.leases.emplace(timer.get(), timer);
  timer->async_wait([this, timer, source, gen, lease, &io](const asio::error_code& ec) {
    io.leases.erase(timer.get());
    if (ec || stopping()) return;
    {
      std::lock_guard lock(owners_mu_);
      SourceSlot& slot = slots_[source];
      if (slot.gen != gen || slot.owner.lock() != nullptr) return;  // came back
      // The retraction counts as a party that still hands the source's changes to
      // the engine: a HELLO of the source from now on waits (HandoverSeq) until it is
      // durable, so no op of a new connection can be applied before it and retracted.
      ++slot.consuming;
    }
    counters_.lease_expirations.fetch_add(1, std::memory_order_relaxed);
    log_.Info("source '{}' did not come back within its {} ms lease: retracting its claims",
              engine_.sources().Name(source), lease.count());
    io.lane->RetractSource(source, util::WallMicros());
    io.retractions.emplace_back(source, io.lane->open_window());
  });
}

void Server::OnChanges(uint64_t w, std::vector<std::string> changes) {
  fanout_->OnChanges(w, std::move(changes));
}

void Server::OnCut(uint64_t w) {
  for (auto& t : io_) {
    asio::post(t->ctx, [io = t.get(), w] {
      for (auto& [p, s] : io->sessions)
        s->OnCut(w);
      if (io->lane != nullptr) io->lane->Cut(w);
    });
  }
}

void Server::OnDurable(uint64_t w) {
  CreditBudget::Times times;
  times.window = static_cast<uint64_t>(engine_.options().window.count());
  times.goal = options_.queue_goal.count() != 0 ? static_cast<uint64_t>(options_.queue_goal.count())
                                                : CreditBudget::DefaultGoal(times.window);
  times.queue = engine_.last_queue_us();
  times.durable = engine_.last_durable_us();
  for (auto& t : io_) {
    asio::post(t->ctx, [server = this, io = t.get(), w, times] {
      uint64_t now = util::MonoNanos() / 1000;
      uint64_t acked = 0, constrained = 0;
      CreditBudget::Times t = times;
      for (auto& [p, s] : io->sessions) {
        uint64_t n = s->OnDurable(w);
        if (s->credit_constrained()) {
          acked += n;
          ++constrained;
          t.rtt = std::max(t.rtt, s->rtt_us());
        }
      }
      if (io->lane == nullptr) return;  // the read thread: no writers
      std::erase_if(io->retractions, [&](const std::pair<uint32_t, uint64_t>& r) {
        if (r.second > w) return false;
        server->StopConsuming(r.first, 0);  // the retraction is durable
        return true;
      });
      if (uint64_t share = io->budget.Share(acked, constrained, now, t)) {
        for (auto& [p, s] : io->sessions) {
          if (s->credit_constrained()) s->OfferCredit(share);
        }
      }
    });
  }
}

StatList Server::Stats() {
  engine::EngineStats e = engine_.Stats();
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  uint64_t ops_in = e.totals.applied + e.totals.duplicates + get(counters_.duplicates);
  util::Histogram q;
  for (auto& t : io_) {
    std::lock_guard lock(t->query_mu);
    q.Merge(t->query_ns);
  }
  FanoutCounters& f = fanout_->counters();
  util::Histogram lag = fanout_->LagMicros();
  util::Histogram delay = fanout_->DelayMicros();
  StatList stats = {
      {"ops_in", ops_in},
      {"ops_applied", e.totals.applied},
      {"asserts", e.totals.asserts},
      {"patches", e.totals.patches},
      {"retracts", e.totals.retracts},
      {"duplicates", e.totals.duplicates + get(counters_.duplicates)},
      {"op_errors", get(counters_.op_errors)},
      {"entities", e.totals.entities},
      {"claims", e.totals.claims},
      {"claim_bytes", e.totals.claim_bytes},
      {"sources", engine_.sources().known()},
      {"sources_forgotten", engine_.sources().forgotten()},
      {"windows", e.windows.windows},
      {"last_window", e.windows.last_window},
      {"window_ops", e.windows.window_ops},
      {"claim_changes", e.windows.claim_changes},
      {"entity_changes", e.windows.entity_changes},
      {"partitions", e.partitions},
      {"io_threads", engine_.lane_count()},
      {"window_us", static_cast<uint64_t>(engine_.options().window.count())},
      {"wal", e.logging ? 1u : 0u},
      {"fsync_window", e.fsync ? 1u : 0u},
      {"wal_batches", e.wal.writer.blocks},
      {"wal_records", e.wal.records},
      {"wal_bytes", e.wal.writer.bytes},
      {"wal_segments_created", e.wal.writer.segments},
      {"wal_fsyncs", e.wal.writer.fsyncs},
      {"wal_fsync_us", e.wal.writer.fsync_ns / 1000},
      {"wal_fsync_max_us", e.wal.writer.fsync_max_ns / 1000},
      {"disk_full", e.wal.disk_full ? 1u : 0u},
      {"disk_full_events", e.wal.disk_full_events},
      {"durable_window", e.windows.durable_window},
      {"checkpoints", e.checkpoints.checkpoints},
      {"checkpoint_window", e.checkpoints.last_window},
      {"checkpoint_records", e.checkpoints.last_records},
      {"checkpoint_ms", e.checkpoints.last_ms},
      {"segments_deleted", e.checkpoints.segments_deleted},
      {"connections", get(counters_.connections)},
      {"connections_total", get(counters_.connections_total)},
      {"connections_rejected", get(counters_.connections_rejected)},
      {"takeovers", get(counters_.takeovers)},
      {"lease_expirations", get(counters_.lease_expirations)},
      {"credit_waits", get(counters_.credit_waits)},
      {"frames_in", get(counters_.frames_in)},
      {"bytes_in", get(counters_.bytes_in)},
      {"bytes_out", get(counters_.bytes_out)},
      {"queries", get(counters_.queries)},
      {"query_p50_ns", q.Percentile(0.5)},
      {"query_p99_ns", q.Percentile(0.99)},
      {"query_p999_ns", q.Percentile(0.999)},
      {"hot_window_ops", e.windows.hot_ops},
      {"hot_claim_changes", e.windows.hot_claim_changes},
      {"subscribers", get(f.subscribers)},
      {"subscriptions_total", get(f.subscriptions_total)},
      {"notifications", get(f.notifications)},
      {"notify_frames", get(f.notify_frames)},
      {"notify_lag_p50_us", lag.Percentile(0.5)},
      {"notify_lag_p99_us", lag.Percentile(0.99)},
      {"window_queue_p50_us", e.windows.queue_us.Percentile(0.5)},
      {"window_queue_p99_us", e.windows.queue_us.Percentile(0.99)},
      {"window_seal_p50_us", e.windows.seal_us.Percentile(0.5)},
      {"window_seal_p99_us", e.windows.seal_us.Percentile(0.99)},
      {"window_durable_p50_us", e.windows.durable_us.Percentile(0.5)},
      {"window_durable_p99_us", e.windows.durable_us.Percentile(0.99)},
      {"fanout_delay_p50_us", delay.Percentile(0.5)},
      {"fanout_delay_p99_us", delay.Percentile(0.99)},
      {"snapshot_entries", get(f.snapshot_entries)},
      {"snapshots", get(f.snapshots)},
      {"resume_resets", get(f.resets)},
      {"conflations", get(f.conflations)},
      {"conflated_changes", get(f.conflated_changes)},
      {"shared_conflations", get(f.shared_conflations)},
      {"subscriber_backlog_bytes", get(f.backlog_bytes)},
      {"stalled_snapshots", get(f.stalled_snapshots)},
      {"subscriber_held_bytes", get(f.held_bytes)},
      {"held_overflows", get(f.held_overflows)},
  };
  for (uint64_t code = 1; code < counters_.errors.size(); ++code) {
    std::string_view name = ErrorCodeName(code);
    if (name == "unknown") break;
    stats.emplace_back(fmt::format("errors_{}", name), get(counters_.errors[code]));
  }
  if (options_.extra_stats) options_.extra_stats(stats);
  return stats;
}

}  // namespace conv::net

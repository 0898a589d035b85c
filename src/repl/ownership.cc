#include "repl/ownership.h"

#include <fmt/format.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "repl/nats_link.h"
#include "util/clock.h"

namespace conv::repl {

namespace {

constexpr const char* kKey = "owner";

struct KvDeleter {
  void operator()(kvStore* kv) const { kvStore_Destroy(kv); }
  void operator()(kvEntry* e) const { kvEntry_Destroy(e); }
};
using KvPtr = std::unique_ptr<kvStore, KvDeleter>;
using EntryPtr = std::unique_ptr<kvEntry, KvDeleter>;

// The record as it is now; nullopt when there is none (or it was deleted).
util::Result<std::optional<OwnerRecord>> ReadRecord(kvStore* kv) {
  kvEntry* e = nullptr;
  natsStatus st = kvStore_Get(&e, kv, kKey);
  EntryPtr guard(e);
  if (st == NATS_NOT_FOUND) return std::optional<OwnerRecord>();
  if (st != NATS_OK) {
    return util::Status::Error(fmt::format("cannot read the owner record: {}", NatsError(st)));
  }
  auto rec = ParseOwnerValue(kvEntry_ValueString(e), kvEntry_Revision(e));
  if (!rec.ok()) return rec.status();
  rec->written_ns = kvEntry_Created(e);
  return std::optional<OwnerRecord>(std::move(rec).value());
}

}  // namespace

std::string OwnerBucket(std::string_view cluster_name) {
  return fmt::format("CONV_OWNER_{}", cluster_name);
}

std::string EncodeOwnerValue(std::string_view address, uint64_t epoch) {
  return epoch == 0 ? fmt::format("address {}\n", address)
                    : fmt::format("address {}\nepoch {}\n", address, epoch);
}

util::Result<OwnerRecord> ParseOwnerValue(std::string_view value, uint64_t revision) {
  OwnerRecord r;
  r.revision = revision;
  r.epoch = revision;  // the claim write carries no epoch: it is its own
  size_t offset = 0;
  while (offset < value.size()) {
    size_t end = value.find('\n', offset);
    if (end == std::string_view::npos) end = value.size();
    std::string_view line = value.substr(offset, end - offset);
    size_t space = line.find(' ');
    std::string_view key = line.substr(0, space);
    std::string_view text = space == std::string_view::npos ? "" : line.substr(space + 1);
    if (key == "address" && !text.empty()) {
      r.address = std::string(text);
    } else if (key == "epoch") {
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), r.epoch);
      if (ec != std::errc() || p != text.data() + text.size() || r.epoch == 0) {
        return util::Status::Error(fmt::format(
            "owner record revision {}: epoch '{}' at offset {} is not a positive number", revision,
            text, offset + 6));
      }
    } else if (!line.empty()) {
      return util::Status::Error(fmt::format(
          "owner record revision {}: unknown line '{}' at offset {}", revision, line, offset));
    }
    offset = end + 1;
  }
  if (r.address.empty()) {
    return util::Status::Error(fmt::format("owner record revision {}: no address line", revision));
  }
  return r;
}

struct Ownership::State {
  ReplicationOptions options;
  std::string address;
  util::Logger* log = nullptr;
  std::chrono::milliseconds refresh{1000};
  ConnPtr nc;
  JsPtr js;
  KvPtr kv;
  std::atomic<uint64_t> epoch{0};
  std::atomic<uint64_t> revision{0};
  std::atomic<bool> held{true};
  std::atomic<uint64_t> refreshes{0};
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;                                // guarded by mu
  std::function<void(const std::string&)> on_lost;  // guarded by mu
  std::string holder;                               // guarded by mu: who wrote the record after us
  std::thread thread;

  // The record names another owner now: held turns false, once.
  void Lost(const OwnerRecord& now) {
    std::function<void(const std::string&)> callback;
    {
      std::lock_guard lock(mu);
      if (!held) return;
      held = false;
      holder = now.address;
      callback = on_lost;
    }
    if (log != nullptr) {
      log->Error("the owner record of {} was written by {} (epoch {}) after ours (epoch {})",
                 options.cluster_name, now.address, now.epoch, epoch.load());
    }
    if (callback) callback(now.address);
  }

  void Run() {
    std::unique_lock lock(mu);
    while (!cv.wait_for(lock, refresh, [&] { return stop; })) {
      lock.unlock();
      Refresh();
      lock.lock();
      if (!held) return;
    }
  }

  void Refresh() {
    std::string value = EncodeOwnerValue(address, epoch);
    uint64_t rev = 0;
    natsStatus st = kvStore_Update(&rev, kv.get(), kKey, value.data(),
                                   static_cast<int>(value.size()), revision);
    if (st == NATS_OK) {
      revision = rev;
      ++refreshes;
      return;
    }
    // Refused: someone else wrote the record (a takeover), or NATS is unreachable
    // (tried again at the next refresh).
    auto now = ReadRecord(kv.get());
    if (now.ok() && now->has_value() && (*now)->revision != revision) {
      Lost(**now);
    } else if (log != nullptr) {
      log->Warn("cannot refresh the owner record of {}: {}", options.cluster_name, NatsError(st));
    }
  }
};

util::Result<std::unique_ptr<Ownership>> Ownership::Claim(const ReplicationOptions& options,
                                                          const std::string& address,
                                                          util::Logger* log,
                                                          std::chrono::milliseconds refresh,
                                                          uint64_t expected_revision) {
  if (auto st = ValidateOptions(options); !st.ok()) return st;
  auto s = std::make_unique<State>();
  s->options = options;
  s->address = address;
  s->log = log;
  s->refresh = refresh;
  auto link = ConnectJetStream(options.urls);
  if (!link.ok()) return link.status();
  s->nc = std::move(link->nc);
  s->js = std::move(link->js);
  const std::string bucket = OwnerBucket(options.cluster_name);
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = bucket.c_str();
  cfg.History = 1;
  cfg.StorageType = js_FileStorage;
  cfg.Replicas = options.replicas;
  // As for the stream: a NATS cluster that is starting may lack the peers for now.
  const uint64_t deadline =
      util::MonoNanos() + static_cast<uint64_t>(options.setup_timeout.count()) * 1'000'000;
  natsStatus st;
  for (;;) {
    kvStore* kv = nullptr;
    st = js_CreateKeyValue(&kv, s->js.get(), &cfg);
    if (st != NATS_OK) {
      kvStore_Destroy(kv);
      kv = nullptr;
      st = js_KeyValue(&kv, s->js.get(), bucket.c_str());  // there, with another config
    }
    if (st == NATS_OK) {
      s->kv.reset(kv);
      break;
    }
    if (util::MonoNanos() >= deadline) {
      return util::Status::Error(
          fmt::format("cannot create the KV bucket {}: {}", bucket, NatsError(st)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::string value = EncodeOwnerValue(address, 0);
  uint64_t rev = 0;
  while (expected_revision != 0) {
    st = kvStore_Update(&rev, s->kv.get(), kKey, value.data(), static_cast<int>(value.size()),
                        expected_revision);
    if (st == NATS_OK) break;
    auto now = ReadRecord(s->kv.get());
    if (now.ok() && now->has_value() && (*now)->revision != expected_revision) {
      return util::Status::Error(fmt::format(
          "the owner record of {} was written at revision {} by {} (epoch {}) after revision {}: "
          "another server took over",
          options.cluster_name, (*now)->revision, (*now)->address, (*now)->epoch,
          expected_revision));
    }
    if (util::MonoNanos() >= deadline) {
      return util::Status::Error(fmt::format("cannot claim the owner record of {} in {}: {}",
                                             options.cluster_name, bucket, NatsError(st)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (; expected_revision == 0;) {
    st = kvStore_Create(&rev, s->kv.get(), kKey, value.data(), static_cast<int>(value.size()));
    if (st == NATS_OK) break;
    auto before = ReadRecord(s->kv.get());
    if (before.ok() && before->has_value()) {
      // A previous owner's record: replaced only if nobody wrote it since we read it.
      st = kvStore_Update(&rev, s->kv.get(), kKey, value.data(), static_cast<int>(value.size()),
                          (*before)->revision);
      if (st == NATS_OK) {
        if (log != nullptr) {
          log->Info("took the owner record of {} over from {} (epoch {})", options.cluster_name,
                    (*before)->address, (*before)->epoch);
        }
        break;
      }
    }
    if (util::MonoNanos() >= deadline) {
      return util::Status::Error(fmt::format("cannot claim the owner record of {} in {}: {}",
                                             options.cluster_name, bucket,
                                             before.ok() ? NatsError(st) : before.message()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  s->epoch = rev;
  s->revision = rev;
  if (log != nullptr) {
    log->Info("owner of {} at {}, epoch {} (KV bucket {})", options.cluster_name, address, rev,
              bucket);
  }
  State* raw = s.get();
  raw->thread = std::thread([raw] { raw->Run(); });
  return std::unique_ptr<Ownership>(new Ownership(std::move(s)));
}

Ownership::Ownership(std::unique_ptr<State> s) : s_(std::move(s)) {}

Ownership::~Ownership() {
  {
    std::lock_guard lock(s_->mu);
    s_->stop = true;
  }
  s_->cv.notify_all();
  if (s_->thread.joinable()) s_->thread.join();
}

uint64_t Ownership::epoch() const {
  return s_->epoch;
}
bool Ownership::held() const {
  return s_->held;
}
uint64_t Ownership::refreshes() const {
  return s_->refreshes;
}

void Ownership::OnLost(std::function<void(const std::string& owner)> callback) {
  std::lock_guard lock(s_->mu);
  s_->on_lost = std::move(callback);
}

util::Result<std::optional<std::string>> Ownership::Deposed() {
  if (!s_->held) {
    std::lock_guard lock(s_->mu);
    return std::optional<std::string>(s_->holder);
  }
  auto now = ReadRecord(s_->kv.get());
  if (!now.ok()) return now.status();
  if (!now->has_value() || (*now)->epoch == s_->epoch) return std::optional<std::string>();
  s_->Lost(**now);
  return std::optional<std::string>((*now)->address);
}

struct OwnerReader::State {
  ReplicationOptions options;
  ConnPtr nc;
  JsPtr js;
  KvPtr kv;
};

util::Result<std::unique_ptr<OwnerReader>> OwnerReader::Open(const ReplicationOptions& options) {
  auto s = std::make_unique<State>();
  s->options = options;
  auto link = ConnectJetStream(options.urls);
  if (!link.ok()) return link.status();
  s->nc = std::move(link->nc);
  s->js = std::move(link->js);
  return std::unique_ptr<OwnerReader>(new OwnerReader(std::move(s)));
}

OwnerReader::OwnerReader(std::unique_ptr<State> s) : s_(std::move(s)) {}
OwnerReader::~OwnerReader() = default;

util::Result<std::optional<OwnerRecord>> OwnerReader::Read() {
  if (s_->kv == nullptr) {
    kvStore* kv = nullptr;
    natsStatus st = js_KeyValue(&kv, s_->js.get(), OwnerBucket(s_->options.cluster_name).c_str());
    if (st == NATS_NOT_FOUND) return std::optional<OwnerRecord>();
    if (st != NATS_OK) {
      kvStore_Destroy(kv);
      return util::Status::Error(fmt::format("cannot open the KV bucket {}: {}",
                                             OwnerBucket(s_->options.cluster_name), NatsError(st)));
    }
    s_->kv.reset(kv);
  }
  return ReadRecord(s_->kv.get());
}

}  // namespace conv::repl

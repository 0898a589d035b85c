#pragma once

// Who owns a cluster name (docs/replication.md, "Ownership"): one record in the
// JetStream KV bucket CONV_OWNER_<NAME>, key `owner`, written only with
// compare-and-set. Its value is the owner's address for clients, and the owner's
// epoch: the KV revision of the write with which it claimed the name (every
// refresh repeats it; the claim write itself carries none, so its own revision is
// its epoch). A takeover is a compare-and-set from the revision the taker read,
// so a newer epoch is always a larger number.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "repl/jetstream.h"
#include "util/log.h"
#include "util/status.h"

namespace conv::repl {

std::string OwnerBucket(std::string_view cluster_name);

struct OwnerRecord {
  std::string address;     // HOST:PORT clients should write to
  uint64_t epoch = 0;      // revision of the claim write
  uint64_t revision = 0;   // of this write (a claim or a refresh)
  int64_t written_ns = 0;  // when it was written (Unix ns, the NATS server's clock)
};

// The record's value, and back. Parse fails naming what is wrong.
std::string EncodeOwnerValue(std::string_view address, uint64_t epoch);
util::Result<OwnerRecord> ParseOwnerValue(std::string_view value, uint64_t revision);

// The owner's side: claims the record and refreshes it in a thread of its own.
class Ownership {
 public:
  static constexpr std::chrono::milliseconds kRefreshInterval{1000};

  // Creates the bucket (--replicas replicas) if needed, then the record, or
  // replaces the one there (compare-and-set on the revision read: a previous owner
  // that stopped or died), and starts refreshing it every `refresh`.
  // With `expected_revision` (a standby's takeover) the record is only replaced if
  // it is still at that revision: of several standbys that read it there, one wins.
  static util::Result<std::unique_ptr<Ownership>> Claim(
      const ReplicationOptions& options, const std::string& address, util::Logger* log,
      std::chrono::milliseconds refresh = kRefreshInterval, uint64_t expected_revision = 0);
  ~Ownership();
  Ownership(const Ownership&) = delete;
  Ownership& operator=(const Ownership&) = delete;

  uint64_t epoch() const;
  // False once a refresh found the record written by someone else (its
  // compare-and-set refused): refreshing stops; the log names the new holder.
  bool held() const;
  uint64_t refreshes() const;
  // Called once, from the refresh thread, when a refresh finds the record written
  // by someone else; its argument is the address the record names now.
  void OnLost(std::function<void(const std::string& owner)> callback);
  // Reads the record now: the address of the owner that replaced this one (and
  // held() turns false), or nullopt while this one holds it; an error when the
  // record cannot be read (undecided).
  util::Result<std::optional<std::string>> Deposed();

 private:
  struct State;
  explicit Ownership(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

// A reader of the record (a replica).
class OwnerReader {
 public:
  static util::Result<std::unique_ptr<OwnerReader>> Open(const ReplicationOptions& options);
  ~OwnerReader();
  OwnerReader(const OwnerReader&) = delete;
  OwnerReader& operator=(const OwnerReader&) = delete;
  // The record now; nullopt when no owner ever claimed the name.
  util::Result<std::optional<OwnerRecord>> Read();

 private:
  struct State;
  explicit OwnerReader(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace conv::repl

#pragma once

// A subscriber for tests: sends SUBSCRIBE and rebuilds the state the server's
// SNAPSHOT, SNAPSHOT_END and NOTIFY frames describe, checking the frame order rules
// of docs/protocol.md as it goes.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "net/client.h"
#include "net/messages.h"

namespace conv::testing {

class Feed {
 public:
  // Takes over a connected client (a reader).
  explicit Feed(std::unique_ptr<net::Client> client);

  void Subscribe(const net::Subscribe& s);
  // Reads and applies one frame; false on timeout or a closed connection.
  bool ReadOne(std::chrono::milliseconds timeout);
  // Reads until SNAPSHOT_END arrived; fails the test otherwise.
  void WaitSnapshotEnd();
  // Reads until `id` holds exactly `record` (mask + values); fails the test otherwise.
  void WaitForRecord(const std::string& id, const std::string& record);
  // Reads until `id` is absent; fails the test otherwise.
  void WaitForAbsent(const std::string& id);

  net::Client& client() { return *client_; }
  const std::map<std::string, std::string>& state() const { return state_; }
  bool snapshot_done() const { return snapshot_done_; }
  const net::SnapshotEnd& snapshot_end() const { return end_; }
  // Entries of the last snapshot (ids, in arrival order).
  const std::vector<net::ChangeEntry>& snapshot() const { return snapshot_; }
  // Every NOTIFY received, in order.
  const std::vector<net::Notify>& notifies() const { return notifies_; }
  // Window of the last NOTIFY (or of SNAPSHOT_END before any): resume from it.
  uint64_t window() const { return window_; }
  std::vector<net::Error> errors;

 private:
  std::unique_ptr<net::Client> client_;
  net::Subscribe sub_;
  const engine::Schema* schema_ = nullptr;
  std::map<std::string, std::string> state_;
  std::vector<net::ChangeEntry> snapshot_;
  bool snapshot_done_ = false;
  net::SnapshotEnd end_;
  std::vector<net::Notify> notifies_;
  uint64_t window_ = 0;
};

// Applies SNAPSHOT entries or NOTIFY changes to a subscriber's state (id -> record).
void ApplyEntries(std::map<std::string, std::string>& state,
                  const std::vector<net::ChangeEntry>& entries);

// Every entity of `schema` among `ids` as the server has it now (QUERY), absent ones
// left out.
std::map<std::string, std::string> ServerState(net::Client& c, const engine::Schema& schema,
                                               const std::vector<std::string>& ids);

}  // namespace conv::testing

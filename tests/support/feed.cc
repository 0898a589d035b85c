#include "support/feed.h"

#include <doctest/doctest.h>

#include "support/test_server.h"

namespace conv::testing {

Feed::Feed(std::unique_ptr<net::Client> client) : client_(std::move(client)) {}

void Feed::Subscribe(const net::Subscribe& s) {
  sub_ = s;
  schema_ = client_->FindSchema(s.schema_id);
  REQUIRE(schema_ != nullptr);
  snapshot_done_ = false;
  snapshot_.clear();
  std::string frame;
  net::EncodeSubscribe(frame, s);
  REQUIRE(client_->Send(frame).ok());
}

bool Feed::ReadOne(std::chrono::milliseconds timeout) {
  client_->set_timeout(timeout);
  auto f = client_->ReadFrame();
  if (!f.ok()) return false;
  auto type = static_cast<net::FrameType>(f->type);
  switch (type) {
    case net::FrameType::kSnapshot: {
      net::Snapshot s;
      REQUIRE(net::DecodeSnapshot(f->payload, *schema_, &s));
      CHECK(s.sub == sub_.sub);
      CHECK_FALSE(snapshot_done_);
      for (auto& e : s.entries)
        snapshot_.push_back(std::move(e));
      break;
    }
    case net::FrameType::kSnapshotEnd: {
      REQUIRE(net::DecodeSnapshotEnd(f->payload, &end_));
      CHECK(end_.sub == sub_.sub);
      CHECK_FALSE(snapshot_done_);
      CHECK(end_.total == snapshot_.size());
      if (end_.reset) state_.clear();
      ApplyEntries(state_, snapshot_);
      snapshot_done_ = true;
      window_ = end_.window;
      break;
    }
    case net::FrameType::kNotify: {
      net::Notify n;
      REQUIRE(net::DecodeNotify(f->payload, *schema_,
                                (sub_.flags & net::kSubscribeIncludePrev) != 0, &n));
      CHECK(n.sub == sub_.sub);
      CHECK(snapshot_done_);  // live changes only after the snapshot's end
      CHECK(n.window >= window_);
      window_ = n.window;
      ApplyEntries(state_, n.changes);
      notifies_.push_back(std::move(n));
      break;
    }
    case net::FrameType::kError:
      errors.push_back(ErrorOf(*f));
      break;
    default:
      break;  // ACK, PONG, ...
  }
  return true;
}

void Feed::WaitSnapshotEnd() {
  auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
  while (!snapshot_done_ && std::chrono::steady_clock::now() < deadline) {
    if (!ReadOne(kReplyTimeout)) break;
  }
  REQUIRE_MESSAGE(snapshot_done_, "no SNAPSHOT_END");
}

void Feed::WaitForRecord(const std::string& id, const std::string& record) {
  auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
  auto ok = [&] {
    auto it = state_.find(id);
    return snapshot_done_ && it != state_.end() && it->second == record;
  };
  while (!ok() && std::chrono::steady_clock::now() < deadline) {
    if (!ReadOne(kReplyTimeout)) break;
  }
  REQUIRE_MESSAGE(ok(), "the feed never showed the expected state of " << id);
}

void Feed::WaitForAbsent(const std::string& id) {
  auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
  auto ok = [&] { return snapshot_done_ && state_.count(id) == 0; };
  while (!ok() && std::chrono::steady_clock::now() < deadline) {
    if (!ReadOne(kReplyTimeout)) break;
  }
  REQUIRE_MESSAGE(ok(), "the feed still holds " << id);
}

void ApplyEntries(std::map<std::string, std::string>& state,
                  const std::vector<net::ChangeEntry>& entries) {
  for (const auto& e : entries) {
    if (e.kind == net::kChangeDelete) {
      state.erase(e.id);
    } else {
      state[e.id] = e.record;
    }
  }
}

std::map<std::string, std::string> ServerState(net::Client& c, const engine::Schema& schema,
                                               const std::vector<std::string>& ids) {
  std::map<std::string, std::string> out;
  for (const auto& id : ids) {
    auto r = c.Query(schema, id, false);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
    if (r->found) out[id] = r->record;
  }
  return out;
}

}  // namespace conv::testing

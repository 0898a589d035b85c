// The WAL thread with a replica (engine/durability.h): rounds are written, synced and
// published while an earlier round still waits for the replica's Confirm; they become
// durable in round order, and a failed Confirm leaves every later round unacknowledged.

#include "engine/durability.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "support/process.h"
#include "wal/replica.h"

using namespace conv;
using namespace std::chrono_literals;

namespace {

// A replica whose Confirm waits until the test answers it.
class HeldReplica final : public wal::LogReplica {
 public:
  void Publish(uint64_t window, std::string_view) override {
    std::lock_guard lock(mu_);
    published_.push_back(window);
    cv_.notify_all();
  }
  wal::WriteOutcome Confirm(uint64_t through) override {
    std::unique_lock lock(mu_);
    asked_.push_back(through);
    cv_.notify_all();
    cv_.wait(lock, [&] { return answer_.has_value() || confirm_all_; });
    if (confirm_all_) return {};
    wal::WriteOutcome o = *answer_;
    answer_.reset();
    return o;
  }
  util::Status PublishCheckpoint(uint64_t, const std::string&) override {
    return util::Status::Ok();
  }

  // Waits (bounded) until `pred` holds over what was published and asked.
  template <typename Pred>
  bool WaitFor(Pred pred) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return pred(published_, asked_); });
  }
  void Answer(wal::WriteOutcome o) {
    std::lock_guard lock(mu_);
    answer_ = std::move(o);
    cv_.notify_all();
  }
  // Every Confirm from now on succeeds at once.
  void ConfirmAll() {
    std::lock_guard lock(mu_);
    confirm_all_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint64_t> published_;
  std::vector<uint64_t> asked_;
  std::optional<wal::WriteOutcome> answer_;
  bool confirm_all_ = false;
};

engine::WindowBatch Batch(uint64_t window, uint32_t source, uint64_t seq) {
  engine::WindowBatch b;
  b.window = window;
  b.marks.emplace_back(source, seq);
  return b;
}

// What the durability thread reported, for the test to wait on.
struct DurableLog {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<uint64_t> windows;
  std::vector<std::string> fatal;

  void Durable(uint64_t w) {
    std::lock_guard lock(mu);
    windows.push_back(w);
    cv.notify_all();
  }
  void Fatal(const std::string& m) {
    std::lock_guard lock(mu);
    fatal.push_back(m);
    cv.notify_all();
  }
  template <typename Pred>
  bool WaitFor(Pred pred) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 10s, pred);
  }
  std::vector<uint64_t> Windows() {
    std::lock_guard lock(mu);
    return windows;
  }
};

// A Durability with a HeldReplica, its thread running until Finish().
class Pipeline {
 public:
  Pipeline() {
    d_.SetReplica(&replica_);
    thread_ = std::thread([this] { d_.Run([this](uint64_t w) { log_.Durable(w); }); });
  }
  ~Pipeline() { Finish(); }
  std::tuple<HeldReplica&, DurableLog&, engine::Durability&> parts() {
    return {replica_, log_, d_};
  }
  void Finish() {
    if (!thread_.joinable()) return;
    d_.Stop();
    thread_.join();
  }

 private:
  testing::TempDir dir_{"conv-durability"};
  HeldReplica replica_;
  DurableLog log_;
  engine::Durability d_{
      dir_.path(), {}, nullptr, nullptr, [this](const std::string& m) { log_.Fatal(m); }};
  std::thread thread_;
};

}  // namespace

TEST_CASE("durability: later rounds are written and published while the replica confirms one") {
  Pipeline p;
  auto [replica, log, d] = p.parts();

  d.Submit(Batch(1, 7, 10));
  REQUIRE(replica.WaitFor([](auto&, auto& asked) { return asked.size() == 1; }));
  // Round 1 waits for its Confirm; rounds 2 and 3 are written and published meanwhile,
  // and nothing is durable yet.
  d.Submit(Batch(2, 7, 20));
  d.Submit(Batch(3, 8, 5));
  REQUIRE(replica.WaitFor([](auto& published, auto&) { return published.size() == 3; }));
  CHECK(log.Windows().empty());
  std::unordered_map<uint32_t, uint64_t> marks;
  CHECK(d.DurableMarks(&marks) == 0);
  CHECK(marks.empty());

  // Round 1 confirmed: durable alone, the rounds behind it still wait.
  replica.Answer({});
  REQUIRE(log.WaitFor([&] { return log.windows.size() == 1; }));
  CHECK(log.Windows() == std::vector<uint64_t>{1});
  REQUIRE(replica.WaitFor([](auto&, auto& asked) { return asked.size() == 2; }));
  CHECK(log.Windows() == std::vector<uint64_t>{1});
  replica.ConfirmAll();
  REQUIRE(log.WaitFor([&] { return !log.windows.empty() && log.windows.back() == 3; }));
  CHECK(d.DurableMarks(&marks) == 3);
  CHECK(marks == std::unordered_map<uint32_t, uint64_t>{{7, 20}, {8, 5}});

  p.Finish();
  std::vector<uint64_t> durable = log.Windows();
  CHECK(std::is_sorted(durable.begin(), durable.end()));
  CHECK(log.fatal.empty());
}

TEST_CASE("durability: a failed Confirm acknowledges nothing more, later rounds included") {
  Pipeline p;
  auto [replica, log, d] = p.parts();

  d.Submit(Batch(1, 7, 10));
  REQUIRE(replica.WaitFor([](auto&, auto& asked) { return asked.size() == 1; }));
  replica.Answer({});
  REQUIRE(log.WaitFor([&] { return log.windows.size() == 1; }));

  d.Submit(Batch(2, 7, 20));
  REQUIRE(replica.WaitFor([](auto&, auto& asked) { return asked.size() == 2; }));
  d.Submit(Batch(3, 7, 30));
  REQUIRE(replica.WaitFor([](auto& published, auto&) { return published.size() == 3; }));
  replica.Answer({wal::WriteErrc::kIo, "fenced: another owner wrote"});
  REQUIRE(log.WaitFor([&] { return !log.fatal.empty(); }));
  CHECK(log.fatal == std::vector<std::string>{"fenced: another owner wrote"});

  // The WAL thread stops too: a round submitted now is neither confirmed nor durable.
  d.Submit(Batch(4, 7, 40));
  p.Finish();
  CHECK(log.Windows() == std::vector<uint64_t>{1});
  std::unordered_map<uint32_t, uint64_t> marks;
  CHECK(d.DurableMarks(&marks) == 1);
  CHECK(marks.at(7) == 10);
  CHECK(replica.WaitFor([](auto&, auto& asked) { return asked.size() == 2; }));
}

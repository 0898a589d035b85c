#include "cmd/load_result.h"

#include <fmt/format.h>

#include <algorithm>

namespace conv::cmd {

namespace {

// The sum of `field` over `items`.
template <typename T>
uint64_t Sum(const std::vector<T>& items, uint64_t T::*field) {
  uint64_t n = 0;
  for (const T& item : items)
    n += item.*field;
  return n;
}

}  // namespace

uint64_t LoadReport::Stat(const net::StatList& s, const std::string& name) const {
  for (const auto& [n, v] : s) {
    if (n == name) return v;
  }
  return 0;
}

uint64_t LoadReport::StatDelta(const std::string& name) const {
  uint64_t a = Stat(stats_after, name);
  uint64_t b = Stat(stats_before, name);
  return a > b ? a - b : 0;
}

double LoadReport::CoalescingRatio() const {
  uint64_t ops = StatDelta("window_ops");
  uint64_t changes = StatDelta("claim_changes");
  return changes == 0 ? 0 : static_cast<double>(ops) / static_cast<double>(changes);
}

uint64_t LoadReport::TotalSent() const {
  return Sum(workers, &WorkerReport::sent);
}

uint64_t LoadReport::TotalAcked() const {
  return Sum(workers, &WorkerReport::acked);
}

uint64_t LoadReport::TotalErrors() const {
  return reader_errors + (sentinel_error.empty() ? 0 : 1) + Sum(workers, &WorkerReport::errors) +
         Sum(subscribers, &SubscriberReport::errors);
}

std::string LoadReport::DescribeErrors() const {
  std::string first = sentinel_error;
  for (const auto& w : workers) {
    if (first.empty() && !w.first_error.empty()) first = w.source + ": " + w.first_error;
  }
  for (size_t i = 0; i < subscribers.size(); ++i) {
    if (first.empty() && !subscribers[i].first_error.empty()) {
      first = fmt::format("subscriber {}: {}", i + 1, subscribers[i].first_error);
    }
  }
  if (first.empty()) first = first_reader_error;
  return fmt::format("{} errors (first: {})", TotalErrors(), first.empty() ? "?" : first);
}

uint64_t LoadReport::TotalChanges() const {
  return Sum(subscribers, &SubscriberReport::changes);
}

uint64_t LoadReport::TotalNotifyFrames() const {
  return Sum(subscribers, &SubscriberReport::notify_frames);
}

double LoadReport::Throughput() const {
  if (seconds <= 0) return 0;
  return static_cast<double>(Sum(workers, &WorkerReport::acked_in_time)) / seconds;
}

double LoadReport::NotificationRate() const {
  if (seconds <= 0) return 0;
  return static_cast<double>(Sum(subscribers, &SubscriberReport::changes_in_time)) / seconds;
}

Spread SpreadOf(std::vector<double> v) {
  Spread s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  return s;
}

SubscriberSummary SummarizeSubscribers(const LoadReport& r) {
  std::vector<double> rates, boot, entities, converge, after_ack;
  SubscriberSummary s;
  for (const auto& sub : r.subscribers) {
    if (r.seconds > 0) rates.push_back(static_cast<double>(sub.changes_in_time) / r.seconds);
    if (sub.subscribe_ms >= 0) boot.push_back(sub.subscribe_ms);
    entities.push_back(static_cast<double>(sub.snapshot_entries));
    s.entities_total += sub.snapshot_entries;
    if (sub.converge_ms >= 0) {
      converge.push_back(sub.converge_ms);
      after_ack.push_back(sub.sentinel_after_ack_ms);
    }
  }
  s.rate = SpreadOf(std::move(rates));
  s.bootstrap_ms = SpreadOf(std::move(boot));
  s.entities = SpreadOf(std::move(entities));
  s.converge_ms = SpreadOf(std::move(converge));
  s.after_ack_ms = SpreadOf(std::move(after_ack));
  return s;
}

}  // namespace conv::cmd

#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cmd/load.h"
#include "cmd/load_result.h"
#include "engine/schema.h"
#include "net/client.h"
#include "util/histogram.h"

namespace conv::cmd {

// Shared by the load generator and its subscribers: when the writers run, and the
// sentinel change that tells a subscriber it has received everything before it.
struct SubscriberClock {
  // Monotonic ns; changes received in [start, end) count toward the rate.
  std::atomic<uint64_t> writers_start_ns{UINT64_MAX};
  std::atomic<uint64_t> writers_end_ns{UINT64_MAX};
  // Set (then `sentinel_armed`, release) before the sentinel op is sent.
  std::string sentinel_id;
  std::atomic<bool> sentinel_armed{false};
  std::atomic<bool> stop{false};
};

// One subscriber of the load generator: its own connection, one SUBSCRIBE to the
// whole id space of the schema, frames read on its own thread. It counts what
// arrives and, with `measure_latency`, records each change's latency (receive wall
// time minus the change's ts, the newest op ts of the entity in its window) without
// decoding records. Without it, a NOTIFY is counted from its header (the load
// generator shares the machine with the server: stepping over every change of 100
// subscribers would take CPU from the writers), until the sentinel is armed.
class LoadSubscriber {
 public:
  LoadSubscriber(const LoadOptions& options, const engine::Schema& schema, std::string token,
                 net::SslCtxPtr tls, const SubscriberClock& clock, bool measure_latency);

  // Connects, subscribes and reads until clock.stop.
  void Run();

  // Readable from other threads while Run goes on.
  bool live() const { return live_.load(std::memory_order_acquire); }
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  bool got_sentinel() const { return sentinel_ns_.load(std::memory_order_acquire) != 0; }
  uint64_t changes_live() const { return changes_live_.load(std::memory_order_relaxed); }
  uint64_t entities_live() const { return entities_live_.load(std::memory_order_relaxed); }
  // Monotonic ns at which the sentinel's change arrived (0: not yet).
  uint64_t sentinel_ns() const { return sentinel_ns_.load(std::memory_order_acquire); }

  // After Run returned.
  const SubscriberReport& report() const { return report_; }
  const util::Histogram& latency_us() const { return latency_us_; }

 private:
  void OnFrame(uint8_t type, std::string_view payload);
  bool OnNotify(std::string_view payload, uint64_t now_mono, uint64_t now_wall);
  void Fail(std::string message);

  const LoadOptions& options_;
  const engine::Schema& schema_;
  std::string token_;
  net::SslCtxPtr tls_;  // null: plain TCP
  const SubscriberClock& clock_;
  bool include_prev_;
  bool measure_latency_;
  std::vector<engine::FieldType> types_;  // the schema's field types, by index
  uint64_t subscribe_ns_ = 0;
  SubscriberReport report_;
  util::Histogram latency_us_;
  std::atomic<bool> live_{false};
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> sentinel_ns_{0};
  std::atomic<uint64_t> changes_live_{0};
  std::atomic<uint64_t> entities_live_{0};
};

}  // namespace conv::cmd

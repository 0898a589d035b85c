#pragma once

#include <algorithm>
#include <cstdint>

namespace conv::net {

// Writer credits (docs/protocol.md, "Flow control"): how many ops a writer may keep
// unacknowledged. Admission is bounded by time: the writers of one I/O thread that
// use their credit may have in flight together what the server acknowledged to them
// per unit of time times a target latency, shared equally (CreditBudget). By
// Little's law a writer that keeps its credit in flight then waits about the target
// for each ACK when the server is the limit, however many writers there are. The
// target itself follows the queue in front of the partitions: it grows while that
// queue stays under one window (ACKs come sooner than the target, more is
// acknowledged per unit of time and credits grow, until the writers, not the
// server, are the limit) and shrinks when it does not.
//
// Each writer's WriterCredit applies its share where it matters: a cut for a writer
// that has more unacknowledged than its new credit, a raise for one that used at
// least half of its credit. A writer that never comes near its credit never gets an
// announcement. A credit falls by at most half per announcement, so a writer that
// obeyed the previous credit never has more than twice the new one unacknowledged:
// the server pauses reading only past limit() = 2 x credit.

// One writer session's, on its I/O thread.
class WriterCredit {
 public:
  static constexpr uint64_t kInitial = 1024;  // announced in WELCOME
  static constexpr uint64_t kMin = 256;
  static constexpr uint64_t kMax = uint64_t{1} << 20;

  uint64_t credit() const { return credit_; }
  // Unacknowledged ops past which the server stops reading from the writer.
  uint64_t limit() const { return 2 * credit_; }
  uint64_t consumed() const { return consumed_; }
  uint64_t acked() const { return acked_; }
  uint64_t unacked() const { return consumed_ - acked_; }
  bool over_limit() const { return unacked() > limit(); }
  // Whether the writer used at least half of its credit since the last Offer().
  bool constrained() const { return peak_ >= credit_ / 2; }

  void Consumed() {
    ++consumed_;
    peak_ = std::max(peak_, consumed_ - acked_);
  }
  void Acked(uint64_t ops) { acked_ += ops; }

  // The budget's share for this writer; returns the credit to announce, or 0.
  uint64_t Offer(uint64_t share) {
    uint64_t peak = peak_;
    peak_ = unacked();
    uint64_t target = std::clamp(share, kMin, kMax);
    if (target < credit_) {
      target = std::max(target, credit_ / 2);
      if (peak <= target || credit_ - target < credit_ / 8) return 0;
    } else {
      if (peak < credit_ / 2 || target - credit_ < credit_ / 8) return 0;
    }
    credit_ = target;
    return credit_;
  }

 private:
  uint64_t credit_ = kInitial;
  uint64_t consumed_ = 0;  // ops taken from the writer (duplicates are not)
  uint64_t acked_ = 0;     // of them, acknowledged
  uint64_t peak_ = 0;      // most unacknowledged since the last Offer()
};

// One I/O thread's writers together: what was acknowledged to those that use their
// credit, per unit of time, times the target latency, shared equally. Times are us.
//
// The target latency adapts to the queue in front of the partitions (as LEDBAT
// keeps a queueing delay at a goal): a window's cut waits behind the ops queued
// before it, and how long it waited is measured (PartitionSeal::cut_in_ns). While
// it is within the goal (serve --queue-goal, a quarter of the window by default) the target grows
// by a quarter per window (more in flight, more throughput while the server has
// room); past it the target shrinks in proportion. The target stays between one
// window and the ceiling: a quarter more than an op that waits a whole window for
// its cut and then the window's way to durable (seal, log write and fdatasync,
// smoothed; the queue before the cut is the goal's to bound) and its writer's network
// round trip needs, and at least two windows. By Little's law a writer waits about the target for
// an ACK when the server is the limit, so the ceiling bounds the ACK latency; credits sized for
// more buy no throughput when the writers and the server share the cores (the partition queue stays
// short while ops wait for a core instead), and one below it starves the writers: one that sent its
// credit just after an ACK gets the next one only a window, the way to durable and a round trip
// later.
class CreditBudget {
 public:
  static constexpr double kCeilingWindows = 2;
  // The queue goal unless serve --queue-goal sets one: a quarter of the window. At
  // saturation on 2 cores shared with 9 writers it gave ACK p99 27-30 ms at 1.5-1.8M
  // ops/s, against 31-35 ms at 1.8-2.0M with half a window and 35-41 ms with a whole
  // one (docs/performance.md, Saturation).
  static uint64_t DefaultGoal(uint64_t window) { return window / 4; }
  static constexpr double kCeilingGain = 1.25;

  // One durable window's times, us: `window` the window length; `queue` the last
  // window's cut-to-reached time (how long its cut waited behind the ops queued
  // before it) and `goal` what it may be; `durable` the time from there to durable
  // (seal, log write, fdatasync: Coalescer::last_durable_us); `rtt` the longest
  // smoothed round trip (TCP_INFO) of the writers sharing the budget, which an ACK
  // and the ops it lets the writer send spend on the network.
  struct Times {
    uint64_t window = 0;
    uint64_t goal = 0;
    uint64_t queue = 0;
    uint64_t durable = 0;
    uint64_t rtt = 0;  // the longest network round trip of the writers sharing the budget
  };

  // After a durable window: `ops` were acknowledged at `now` to the `constrained`
  // writers of this thread that used at least half their credit. Returns each
  // constrained writer's share, once per window at most (0: nothing new).
  uint64_t Share(uint64_t ops, uint64_t constrained, uint64_t now, const Times& t) {
    const double window = static_cast<double>(t.window);
    if (target_ == 0) target_ = 2 * window;
    // Smoothed like the rate below: one slow fdatasync is no trend.
    const double durable = static_cast<double>(t.durable);
    durable_ = durable_ == 0 ? durable : (3 * durable_ + durable) / 4;
    rtt_ = static_cast<double>(t.rtt);  // smoothed by the kernel
    if (constrained == 0) {
      last_ = 0;  // a time without writers that use their credit says nothing of the server
      ops_ = 0;
      return 0;
    }
    if (last_ == 0) last_ = now - std::min(now, t.window);
    // The rate over at least one window: group commits can make two windows durable
    // microseconds apart.
    ops_ += ops;
    if (now - last_ < t.window && share_ != 0) return 0;
    double rate = static_cast<double>(ops_) / static_cast<double>(now - last_);
    last_ = now;
    ops_ = 0;
    // Smoothed both ways: a window acknowledged in a burst after a stall is no trend,
    // and taking its rate at once let credits jump and the queue after them.
    rate_ = rate_ == 0 ? rate : (3 * rate_ + rate) / 4;
    const double q = static_cast<double>(t.queue);
    const double g = static_cast<double>(std::max<uint64_t>(t.goal, 1));
    target_ *= q <= g ? 1.25 : std::max(0.5, g / q);
    target_ = std::clamp(target_, window, ceiling(t.window));
    double share = rate_ * target_ / static_cast<double>(constrained);
    share_ = share >= static_cast<double>(WriterCredit::kMax) ? WriterCredit::kMax
                                                              : static_cast<uint64_t>(share);
    return share_;
  }
  double target() const { return target_; }
  // The most the target may be, us.
  double ceiling(uint64_t window) const {
    const double w = static_cast<double>(window);
    return std::max(kCeilingWindows * w, kCeilingGain * (w + durable_ + rtt_));
  }

 private:
  double target_ = 0;   // us
  uint64_t last_ = 0;   // start of the measurement under way
  uint64_t ops_ = 0;    // acknowledged since last_
  uint64_t share_ = 0;  // the last share computed
  double rate_ = 0;     // ops acknowledged per us
  double durable_ = 0;  // reached to durable, smoothed, us
  double rtt_ = 0;      // the writers' longest round trip, us
};

}  // namespace conv::net

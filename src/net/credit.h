#pragma once

#include <algorithm>
#include <cstdint>

namespace conv::net {

// Writer credits (docs/protocol.md, "Flow control"): how many ops a writer may keep
// unacknowledged. Admission is bounded by time: the writers of one I/O thread that
// use their credit may have in flight together what the server acknowledged to them
// per unit of time times a target latency (CreditBudget::Target: two windows plus
// the least recent cut-to-durable time), shared equally. By Little's law a writer
// that keeps its credit in flight then waits about the target for each ACK when the
// server is the limit, however many writers there are; when the server has room,
// ACKs come sooner than the target, more is acknowledged per unit of time and the
// credits grow, until the writers, not the server, are the limit.
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
  static constexpr uint64_t kInitial = 4096;  // announced in WELCOME
  static constexpr uint64_t kMin = 256;
  static constexpr uint64_t kMax = uint64_t{1} << 20;

  uint64_t credit() const { return credit_; }
  // Unacknowledged ops past which the server stops reading from the writer.
  uint64_t limit() const { return 2 * credit_; }
  uint64_t consumed() const { return consumed_; }
  uint64_t acked() const { return acked_; }
  uint64_t unacked() const { return consumed_ - acked_; }
  bool over_limit() const { return unacked() >= limit(); }
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

// One I/O thread's writers together: what was acknowledged to those that use
// their credit, per unit of time, and so each one's share. Times are microseconds.
class CreditBudget {
 public:
  // The ACK latency credits aim at: kTargetWindows windows plus the least recent
  // cut-to-durable time. An op waits up to a window for its cut, then for the
  // window to be sealed and made durable: with credits of rate x target, writers
  // that keep their credit in flight wait `target` (Little's law) when the server
  // is the limit, and ACKs come sooner, so credits grow, when it is not.
  static constexpr uint64_t kTargetWindows = 2;
  static uint64_t Target(uint64_t window, uint64_t least_lag) {
    return kTargetWindows * window + least_lag;
  }

  // After a durable window: `ops` were acknowledged at `now` to the `constrained`
  // writers of this thread that used at least half their credit. Returns each one's
  // share (0: none is constrained).
  uint64_t Share(uint64_t ops, uint64_t constrained, uint64_t now, uint64_t target) {
    uint64_t since = last_ == 0 ? target : now - last_;
    last_ = now;
    // A gap without acknowledgements (idle writers) is not a slow server.
    since = std::clamp<uint64_t>(since, 1, target);
    double rate = static_cast<double>(ops) / static_cast<double>(since);
    // Rises are taken at once; falls are smoothed, one slow window is no trend.
    rate_ = rate > rate_ ? rate : (3 * rate_ + rate) / 4;
    if (constrained == 0) return 0;
    double share = rate_ * static_cast<double>(target) / static_cast<double>(constrained);
    return share >= static_cast<double>(WriterCredit::kMax) ? WriterCredit::kMax
                                                            : static_cast<uint64_t>(share);
  }

 private:
  uint64_t last_ = 0;
  double rate_ = 0;  // ops acknowledged per us
};

}  // namespace conv::net

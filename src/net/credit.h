#pragma once

#include <algorithm>
#include <cstdint>

namespace conv::net {

// A writer connection's credit: how many ops it may keep unacknowledged
// (docs/protocol.md, "Flow control"). Admission is bounded by time: a writer is
// granted about what the server acknowledged for it over one cycle (a window plus
// the time from its cut to durable), with some headroom. Under saturation every
// writer's share of what the server completes per cycle is what it may have in
// flight, so an op waits about one cycle, whatever the number of writers; when the
// server has room, acknowledgements come sooner than a cycle and the credit grows
// (at least by the cycle's ratio to its own latency, about 1.6x per window at the
// default window) until the writer, not the server, is the limit.
//
// Announcements are made only where they matter: a cut for a writer that has more
// unacknowledged than its new credit, a raise for one that used at least half of
// its credit. A writer that never comes near its credit never gets one, whatever
// the measurement. A credit falls by at most half per announcement, so a writer
// that obeyed the previous credit never has more than twice the new one
// unacknowledged: the server pauses reading only past limit() = 2 x credit.
//
// One session's, on its I/O thread; times are microseconds of one clock.
class WriterCredit {
 public:
  static constexpr uint64_t kInitial = 4096;  // announced in WELCOME
  static constexpr uint64_t kMin = 256;
  static constexpr uint64_t kMax = uint64_t{1} << 20;
  // Credit = rate x cycle x kHeadroom: ops wait for about kHeadroom cycles at
  // saturation; above 1 so that a writer the server can serve faster grows.
  static constexpr double kHeadroom = 1.25;

  uint64_t credit() const { return credit_; }
  // Unacknowledged ops past which the server stops reading from the writer.
  uint64_t limit() const { return 2 * credit_; }
  uint64_t consumed() const { return consumed_; }
  uint64_t acked() const { return acked_; }
  uint64_t unacked() const { return consumed_ - acked_; }
  bool over_limit() const { return unacked() >= limit(); }

  // One op was taken from the writer at `now`.
  void Consumed(uint64_t now) {
    if (consumed_ == acked_) busy_since_ = now;
    ++consumed_;
    peak_ = std::max(peak_, consumed_ - acked_);
  }

  // `ops` more ops were acknowledged at `now`; `cycle` is the server's window plus
  // its recent cut-to-durable time. Returns the new credit to announce, or 0.
  uint64_t Acked(uint64_t ops, uint64_t now, uint64_t cycle) {
    if (ops == 0) return 0;
    uint64_t start = std::max(last_ack_, busy_since_);
    last_ack_ = now;
    acked_ += ops;
    if (consumed_ == acked_) busy_since_ = now;
    if (now <= start) return 0;
    double rate = static_cast<double>(ops) / static_cast<double>(now - start);  // ops/us
    // Rises are taken at once (the writer showed it can be served that fast); falls
    // are smoothed, as one slow window is not yet a trend.
    rate_ = rate > rate_ ? rate : (rate_ + rate) / 2;
    double want = rate_ * static_cast<double>(cycle) * kHeadroom;
    uint64_t target =
        want >= static_cast<double>(kMax) ? kMax : std::max(kMin, static_cast<uint64_t>(want));
    uint64_t peak = peak_;
    peak_ = unacked();
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
  uint64_t consumed_ = 0;    // ops taken from the writer
  uint64_t acked_ = 0;       // of them, acknowledged
  uint64_t peak_ = 0;        // most unacknowledged since the last acknowledgement
  uint64_t busy_since_ = 0;  // when the writer last went from none unacknowledged to some
  uint64_t last_ack_ = 0;
  double rate_ = 0;  // ops acknowledged per us while the writer had some in flight
};

}  // namespace conv::net

"""A read replica's notification lag behind its owner (scripts/bench-follow-lag.sh).

Subscribes to the same schema and prefix on the owner and on the replica, each in
a thread of its own, notes when each window's first NOTIFY change arrives on each
side, and after SECONDS prints, over the replica's windows: its lag in windows (the
newest window the owner's subscriber had when the replica's arrived, minus the
replica's window) and in ms (the same window's arrival on the replica minus on the
owner), as p50 p99 max.
Usage: python3 scripts/follow_lag.py OWNER REPLICA SECONDS [PREFIX]"""

import bisect
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients",
                                "python"))
from convergence import Client, SnapshotEnd  # noqa: E402


def follow(address, prefix, arrivals, ready):
    with Client(address) as c:
        with c.subscribe("player", prefix=prefix, bootstrap=True) as sub:
            for ev in sub:
                if isinstance(ev, SnapshotEnd):
                    ready.set()
                    continue
                w = getattr(ev, "window", 0)
                if w and w not in arrivals:
                    arrivals[w] = time.monotonic()


def quantiles(values):
    if not values:
        return "- - -"
    v = sorted(values)
    return (f"{v[len(v) // 2]:.1f} {v[min(len(v) - 1, int(len(v) * 0.99))]:.1f} "
            f"{v[-1]:.1f}")


def main():
    owner, replica, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    prefix = sys.argv[4] if len(sys.argv) > 4 else ""
    on_owner, on_replica = {}, {}
    ready = [threading.Event(), threading.Event()]
    for address, arrivals, r in ((owner, on_owner, ready[0]), (replica, on_replica, ready[1])):
        threading.Thread(target=follow, args=(address, prefix, arrivals, r), daemon=True).start()
    for r in ready:
        if not r.wait(60):
            sys.exit("a subscription got no SNAPSHOT_END in 60 s")
    print("ready", flush=True)
    time.sleep(seconds)
    owner_items = sorted(dict(on_owner).items(), key=lambda kv: kv[1])
    owner_times = [t for _, t in owner_items]
    newest, best = [], 0
    for w, _ in owner_items:
        best = max(best, w)
        newest.append(best)
    lag_windows, lag_ms = [], []
    for w, t in dict(on_replica).items():
        i = bisect.bisect_right(owner_times, t)
        lag_windows.append(max(0, (newest[i - 1] if i else 0) - w))
        if w in on_owner:
            lag_ms.append((t - on_owner[w]) * 1000)
    print(f"windows owner {len(on_owner)} replica {len(on_replica)}; "
          f"lag windows p50/p99/max {quantiles(lag_windows)}; ms p50/p99/max {quantiles(lag_ms)}")


if __name__ == "__main__":
    main()

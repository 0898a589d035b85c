"""Benchmarks of the Python client against a running server (not tests).

  python3 clients/python/bench.py [--address HOST:PORT] [--ops N] [--runs 3] [--profile]

writes: one process pipelines N patches (batch) and waits for the last ACK (sync):
ops/s. decode: a subscriber (live only) reads the NOTIFY frames of the same N patches
to N distinct entities, written before it starts reading: changes/s from its first
read to its last change. Start the server with a --subscriber-backlog larger than
those changes (e.g. 1073741824), or it conflates them (fewer changes). Prints each
run and the median. --profile runs each once more under cProfile and prints the top
entries by own time.
"""

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from convergence import Client, SnapshotEnd  # noqa: E402


def writes(address: str, n: int, source: str) -> float:
    with Client(address, source=source, timeout=60) as c:
        t = time.perf_counter()
        with c.batch():
            for i in range(n):
                c.patch("player", f"w-{i % 10000}", {"x": float(i), "score": i})
        c.sync()
        return n / (time.perf_counter() - t)


def decode(address: str, n: int, source: str, run: int) -> float:
    prefix = f"{source}-{run}-"
    with Client(address, source=source, timeout=60) as w:
        sub = w.subscribe("player", prefix=prefix, bootstrap=False)
        first = sub.next(10)
        assert isinstance(first, SnapshotEnd), first

        def write():
            with Client(address, source=source + "-w", timeout=60) as c:
                with c.batch():
                    for i in range(n):
                        c.patch("player", f"{prefix}{i}", {"x": float(i), "score": i,
                                                           "name": "player"})
                c.sync()

        # Write everything first, so that the subscriber's rate is its own, not the
        # writer's: the server keeps what the subscriber has not read (up to its
        # backlog, then it conflates, which only ever lowers the count).
        t = threading.Thread(target=write)
        t.start()
        t.join()
        got = 0
        start = last = time.perf_counter()
        while got < n:
            ev = sub.next(1)
            if ev is None:  # conflated by the server: fewer than n changes
                break
            got += 1
            last = time.perf_counter()
        elapsed = last - start
        sub.close()
        return got / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", default="127.0.0.1:3727")
    ap.add_argument("--ops", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    tag = str(os.getpid())
    w = [writes(args.address, args.ops, f"bench-{tag}-{r}") for r in range(args.runs)]
    print("writes/s:  " + "  ".join(f"{x:,.0f}" for x in w) + f"   median {statistics.median(w):,.0f}")
    d = [decode(args.address, args.ops, f"bench-{tag}-d{r}", r) for r in range(args.runs)]
    print("changes/s: " + "  ".join(f"{x:,.0f}" for x in d) + f"   median {statistics.median(d):,.0f}")
    if args.profile:
        for name, fn in (("writes", lambda: writes(args.address, args.ops, f"bench-{tag}-p")),
                         ("decode", lambda: decode(args.address, args.ops, f"bench-{tag}-pd", 99))):
            prof = cProfile.Profile()
            prof.enable()
            fn()
            prof.disable()
            print(f"\nprofile: {name}")
            pstats.Stats(prof).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()

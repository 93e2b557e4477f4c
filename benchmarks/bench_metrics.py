"""The cost of gatekeep's metrics on the hot path: memory-backend ``hit`` with metrics
on (the default: per-rule counters, 1-in-8 latency sampling) vs ``metrics=None``.

    python benchmarks/bench_metrics.py [--rounds 25] [--n 20000]

Interleaved rounds, medians; the keys rotate over 1,000 clients.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import timeit

from gatekeep import Limiter, MemoryBackend
from gatekeep.metrics import Metrics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    keys = [f"client-{i}" for i in range(1000)]
    variants = {
        "metrics off": Limiter("1000000/second", backend=MemoryBackend(), metrics=None),
        "metrics on": Limiter("1000000/second", backend=MemoryBackend(), metrics=Metrics()),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, limiter in variants.items():
            it = itertools.cycle(keys)
            seconds = timeit.timeit(lambda lim=limiter, it=it: lim.hit(next(it)), number=args.n)
            samples[name].append(seconds / args.n * 1e6)
    med = {name: statistics.median(v) for name, v in samples.items()}
    print("| variant | µs per hit (median) |\n|---|---|")
    for name, us in med.items():
        print(f"| {name} | {us:.3f} |")
    print(
        f"\nmetrics cost: {100 * (med['metrics on'] / med['metrics off'] - 1):+.1f}% "
        "(target <= 10%)"
    )


if __name__ == "__main__":
    main()

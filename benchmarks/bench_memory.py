"""The in-process backends alone: gatekeep's MemoryBackend vs limits' MemoryStorage.

Nothing else lives in this process (no Redis client, no event loop, no other
storage and its expiry thread), so the figures are the decisions' own cost.
``benchmarks/bench_limiters.py`` measures the same calls beside everything else.

    python benchmarks/bench_memory.py [--rounds 15] [--n 20000]

Each variant hits 1,000 keys in turn at "1000000/second" (never denies: the cost of
a decision), in interleaved rounds; medians; ratios against limits' fixed window.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import timeit
from collections.abc import Callable
from importlib.metadata import version

from limits import parse as limits_parse
from limits import storage as limits_storage
from limits import strategies as limits_strategies

from gatekeep import ALGORITHMS, Limiter, MemoryBackend

RATE = "1000000/second"


class TwinPath(MemoryBackend):
    """The in-process backend without its fused paths: every hit is the twin's ``check``
    + ``commit`` through ``run()``, what an algorithm without ``fused_hit`` gets. The
    variants through it are what justifies (or not) inlining an algorithm's arithmetic."""

    def fused_hit(self, plan, counters=None):  # type: ignore[no-untyped-def]
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    keys = [f"client-{i}" for i in range(1000)]

    variants: dict[str, Callable[[str], object]] = {}
    for algo in ALGORITHMS:
        variants[f"gatekeep {algo}"] = Limiter(RATE, backend=MemoryBackend(), algorithm=algo).hit
    for algo in ALGORITHMS:
        variants[f"gatekeep {algo}, twin path (no fused_hit)"] = Limiter(
            RATE, backend=TwinPath(), algorithm=algo
        ).hit
    variants["gatekeep token_bucket, metrics off"] = Limiter(
        RATE, backend=MemoryBackend(), metrics=None
    ).hit
    item = limits_parse(RATE)
    for name, cls in (
        ("fixed", limits_strategies.FixedWindowRateLimiter),
        ("moving", limits_strategies.MovingWindowRateLimiter),
        ("sliding", limits_strategies.SlidingWindowCounterRateLimiter),
    ):
        strategy = cls(limits_storage.MemoryStorage())
        variants[f"limits {name}"] = lambda key, strategy=strategy: strategy.hit(item, key)  # type: ignore[misc]

    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.rounds + 1):
        for name, fn in variants.items():
            it = itertools.cycle(keys)
            seconds = timeit.timeit(lambda fn=fn, it=it: fn(next(it)), number=args.n)
            if round_:  # the first round warms up
                samples[name].append(seconds / args.n * 1e6)
    med = {name: statistics.median(v) for name, v in samples.items()}
    base = med["limits fixed"]
    print(f"limits {version('limits')}; {args.rounds} rounds of {args.n} hits, medians\n")
    print("| variant | µs per hit | x limits fixed window (ops/s) |\n|---|---:|---:|")
    for name, us in med.items():
        print(f"| {name} | {us:.3f} | {base / us:.2f} |")
    print(
        f"\nrange over rounds, token bucket vs limits fixed: "
        f"{min(samples['limits fixed']) / max(samples['gatekeep token_bucket']):.2f}x to "
        f"{max(samples['limits fixed']) / min(samples['gatekeep token_bucket']):.2f}x"
    )


if __name__ == "__main__":
    main()

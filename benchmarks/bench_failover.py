"""What a limiter decision costs while Redis is down, with and without gatekeep's breaker.

Starts one throwaway redis-server, then measures, per decision:

- gatekeep ``FailoverBackend`` with its breaker open (Redis unreachable), sync and
  async: the in-process twin enforcing this instance's share; the probes that go
  to Redis every 0.5 s are inside the figures;
- the same with Redis up (breaker closed), and the memory backend alone, for scale;
- gatekeep's fail-fast ``RedisBackend`` without a breaker (every call tries Redis);
- a ``RedisBackend`` on a redis-py client with its defaults (3 retries with
  exponential backoff, no socket timeout) while Redis refuses connections, and
  while it hangs (SIGSTOP): only a handful of calls, each capped.

    python benchmarks/bench_failover.py [--n 20000] [--slow-calls 3] [--cap 12]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import platform
import signal
import statistics
import threading
import time
from collections.abc import Awaitable, Callable

import redis

import gatekeep
from gatekeep import AsyncLimiter, Limiter, MemoryBackend, RedisBackend
from gatekeep.backends.connect import connect
from gatekeep.backends.failover import FailoverBackend
from gatekeep.testing import ServerProcess, find_server, free_port

LIMIT = "100/second"
INSTANCES = 4


def per_call(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        with contextlib.suppress(Exception):
            fn()
        out.append(time.perf_counter() - t)
    return out


def aper_call(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    async def main() -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - t)
        return out

    return asyncio.run(main())


def capped(fn: Callable[[], object], cap: float) -> tuple[float, str]:
    """Seconds one call took (in a thread, abandoned after ``cap``) and how it ended."""
    result: list[str] = []

    def run() -> None:
        try:
            fn()
            result.append("returned")
        except Exception as exc:
            result.append(type(exc).__name__)

    t = time.perf_counter()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(cap)
    took = time.perf_counter() - t
    return took, result[0] if result else f"still waiting after {cap:.0f} s"


def stats(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs) * 1e6, xs[int(len(xs) * 0.99) - 1] * 1e6


def opened(backend: FailoverBackend, limiter: Limiter) -> None:
    while backend.breaker.state.value != "open":
        limiter.hit("warm")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000, help="decisions per fast variant")
    ap.add_argument("--slow-calls", type=int, default=3, help="calls per redis-py default variant")
    ap.add_argument("--cap", type=float, default=12.0, help="seconds before a call is abandoned")
    args = ap.parse_args()
    logging.getLogger("gatekeep.breaker").setLevel(logging.ERROR)  # quiet state changes
    n = args.n
    rows: list[tuple[str, str, str, str]] = []
    server = ServerProcess.start(find_server("redis"))
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: connection refused
    try:
        # 1. breaker open, sync and async
        fb = FailoverBackend(connect(dead), instances=INSTANCES)
        lim = Limiter(LIMIT, backend=fb)
        opened(fb, lim)
        med, p99 = stats(per_call(lambda: lim.hit("k"), n))
        rows.append(
            (
                "gatekeep FailoverBackend, Redis down, breaker open (sync)",
                f"{med:.1f}",
                f"{p99:.1f}",
                f"{n} calls; {fb.breaker.counters.calls} "
                "went to Redis (3 opened the breaker, the rest are probes)",
            )
        )
        afb = FailoverBackend(connect(dead), instances=INSTANCES)
        alim = AsyncLimiter(LIMIT, backend=afb)
        opened(afb, Limiter(LIMIT, backend=afb))
        med, p99 = stats(aper_call(lambda: alim.hit("k"), n))
        rows.append(
            (
                "gatekeep FailoverBackend, Redis down, breaker open (async)",
                f"{med:.1f}",
                f"{p99:.1f}",
                f"{n} calls; {afb.breaker.counters.calls} "
                "went to Redis (3 opened the breaker, the rest are probes)",
            )
        )
        # 2. for scale: the twin alone, and Redis up
        mem = Limiter(LIMIT, backend=MemoryBackend())
        med, p99 = stats(per_call(lambda: mem.hit("k"), n))
        rows.append(("MemoryBackend alone (the twin)", f"{med:.1f}", f"{p99:.1f}", f"{n} calls"))
        up = FailoverBackend(connect(server.url), instances=INSTANCES)
        uplim = Limiter("1000000/second", backend=up)
        med, p99 = stats(per_call(lambda: uplim.hit("k"), n // 4))
        rows.append(
            (
                "gatekeep FailoverBackend, Redis up (breaker closed)",
                f"{med:.1f}",
                f"{p99:.1f}",
                f"{n // 4} calls, 1 EVALSHA each",
            )
        )
        up.close()
        # 3. fail-fast client, no breaker: every call goes to the refused port
        bare = Limiter(LIMIT, backend=connect(dead))
        med, p99 = stats(per_call(lambda: bare.hit("k"), n // 10))
        rows.append(
            (
                "gatekeep RedisBackend (fail-fast), no breaker, Redis down",
                f"{med:.1f}",
                f"{p99:.1f}",
                f"{n // 10} calls, each raises ConnectionError to the caller",
            )
        )
        # 4. redis-py defaults: retries with backoff; no socket timeout
        port = int(dead.rsplit(":", 1)[1].split("/")[0])
        default = Limiter(LIMIT, backend=RedisBackend(redis.Redis(port=port)))
        took = [capped(lambda: default.hit("k"), args.cap) for _ in range(args.slow_calls)]
        rows.append(
            (
                "redis-py defaults, no breaker, Redis down (refused)",
                f"{statistics.median(t for t, _ in took) * 1e6:,.0f}",
                f"{max(t for t, _ in took) * 1e6:,.0f} (max)",
                f"{args.slow_calls} calls: " + ", ".join(f"{t:.2f} s {how}" for t, how in took),
            )
        )
        hung = ServerProcess.start(find_server("redis"))
        try:
            hung_default = Limiter(LIMIT, backend=RedisBackend(redis.Redis(port=hung.port)))
            hung_default.hit("k")  # connected and the script cached
            hung_fast = FailoverBackend(connect(hung.url), instances=INSTANCES)
            hung_lim = Limiter(LIMIT, backend=hung_fast)
            hung_lim.hit("k")
            hung.signal(signal.SIGSTOP)
            took = [
                capped(lambda: hung_default.hit("k"), min(args.cap, 5.0))
                for _ in range(min(args.slow_calls, 2))
            ]
            rows.append(
                (
                    "redis-py defaults, no breaker, Redis hung (SIGSTOP)",
                    f"> {min(args.cap, 5.0) * 1e6:,.0f}"
                    if "still" in took[0][1]
                    else f"{statistics.median(t for t, _ in took) * 1e6:,.0f}",
                    "-",
                    ", ".join(f"{t:.2f} s {how}" for t, how in took),
                )
            )
            first = [capped(lambda: hung_lim.hit("k"), args.cap)[0] for _ in range(1)]
            med, p99 = stats(per_call(lambda: hung_lim.hit("k"), n))
            rows.append(
                (
                    "gatekeep FailoverBackend, Redis hung (SIGSTOP)",
                    f"{med:.1f}",
                    f"{p99:.1f}",
                    f"first call {first[0] * 1000:.0f} ms (the deadline), "
                    f"then breaker open; {n} calls",
                )
            )
        finally:
            hung.signal(signal.SIGCONT)
            hung.stop()
    finally:
        server.stop()

    print(
        f"gatekeep {gatekeep.__version__}, redis-py {redis.__version__}, Python "
        f"{platform.python_version()}, {platform.machine()}; limit {LIMIT!r}, "
        f"instances={INSTANCES}\n"
    )
    print("| variant | median µs / decision | p99 µs | notes |")
    print("|---|---:|---:|---|")
    for name, med_s, p99_s, note in rows:
        print(f"| {name} | {med_s} | {p99_s} | {note} |")


if __name__ == "__main__":
    main()

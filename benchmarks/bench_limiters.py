"""gatekeep limiters side by side with redis-py's ceiling and with `limits` 5.x.

One throwaway local redis-server, one run, interleaved rounds; prints medians and
ratios (absolute figures drift ±20-40 % between runs on small machines, ratios
from one run are what count).

    python benchmarks/bench_limiters.py [--rounds 7] [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from collections.abc import Awaitable, Callable

import redis
import redis.asyncio

import gatekeep
from gatekeep import ALGORITHMS, AsyncLimiter, Limiter, MemoryBackend, RedisBackend
from gatekeep.testing import ServerProcess, find_server

RATE = "1000000/second"  # never denies: we measure the cost of a decision


class CountingConnection(redis.Connection):
    """Counts the writes a client makes: one per round trip (pipelines included)."""

    sent = 0

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        CountingConnection.sent += 1
        return super().send_packed_command(command, check_health)


def timed(fn: Callable[[], object], n: int) -> float:
    """Seconds per call over n calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def atimed(
    loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[object]], n: int, tasks: int = 1
) -> float:
    async def worker(count: int) -> None:
        for _ in range(count):
            await fn()

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(worker(n // tasks) for _ in range(tasks)))
        return (time.perf_counter() - start) / (n // tasks * tasks)

    return loop.run_until_complete(main())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    n = args.n

    from limits import parse as limits_parse
    from limits import storage as lstorage
    from limits import strategies as lstrat
    from limits.aio import storage as laio_storage
    from limits.aio import strategies as laio_strat

    server = ServerProcess.start(find_server("redis"))
    try:
        client = redis.Redis(port=server.port)
        version = client.info("server")["redis_version"]
        loop = asyncio.new_event_loop()
        aclient = redis.asyncio.Redis(port=server.port, max_connections=64)
        backend = RedisBackend(client, aclient=aclient)
        sha1 = client.script_load("return 1")

        ops: dict[str, Callable[[], float]] = {}
        ops["redis-py PING"] = lambda: timed(client.ping, n)
        ops["redis-py EVALSHA return 1"] = lambda: timed(lambda: client.evalsha(sha1, 0), n)

        keys = iter(range(10**9))
        for algo in ALGORITHMS:
            lim = Limiter(RATE, backend=backend, algorithm=algo, prefix="bench")
            ops[f"gatekeep {algo} hit, Redis"] = lambda lim=lim: timed(
                lambda: lim.hit(f"k{next(keys) % 1000}"), n
            )
        for algo in ("token_bucket", "gcra"):
            alim = AsyncLimiter(RATE, backend=backend, algorithm=algo, prefix="bench")
            ops[f"gatekeep {algo} hit, redis.asyncio, 1 task"] = lambda alim=alim: atimed(
                loop, lambda: alim.hit("a1"), n
            )
            ops[f"gatekeep {algo} hit, redis.asyncio, 50 tasks"] = lambda alim=alim: atimed(
                loop, lambda: alim.hit("a50"), n, tasks=50
            )
        many = Limiter(RATE, backend=backend, prefix="bench")
        batch = [f"m{i}" for i in range(100)]
        ops["gatekeep token_bucket hit_many(100), per decision"] = lambda: (
            timed(lambda: many.hit_many(batch), max(1, n // 100)) / 100
        )

        for algo in ALGORITHMS:
            mem = Limiter(RATE, backend=MemoryBackend(), algorithm=algo)
            ops[f"gatekeep {algo} hit, memory"] = lambda mem=mem: timed(
                lambda: mem.hit(f"k{next(keys) % 1000}"), n
            )
        bare = Limiter(RATE, backend=MemoryBackend(), metrics=None)
        ops["gatekeep token_bucket hit, memory, metrics off"] = lambda: timed(
            lambda: bare.hit(f"k{next(keys) % 1000}"), n
        )
        ops["redis.asyncio PING, 1 task"] = lambda: atimed(loop, aclient.ping, n)

        item = limits_parse("1000000/second")
        lredis = lstorage.RedisStorage(f"redis://127.0.0.1:{server.port}")
        laio = laio_storage.RedisStorage(
            f"async+redis://127.0.0.1:{server.port}", implementation="redispy"
        )
        strategies = {
            "fixed": (lstrat.FixedWindowRateLimiter, laio_strat.FixedWindowRateLimiter),
            "moving": (lstrat.MovingWindowRateLimiter, laio_strat.MovingWindowRateLimiter),
            "sliding": (
                lstrat.SlidingWindowCounterRateLimiter,
                laio_strat.SlidingWindowCounterRateLimiter,
            ),
        }
        for name, (sync_cls, aio_cls) in strategies.items():
            # each strategy its own in-process storage, as an app with one strategy has
            rs, ms = sync_cls(lredis), sync_cls(lstorage.MemoryStorage())
            ops[f"limits {name} hit, Redis"] = lambda rs=rs, name=name: timed(
                lambda: rs.hit(item, name, f"k{next(keys) % 1000}"), n
            )
            ops[f"limits {name} hit, memory"] = lambda ms=ms, name=name: timed(
                lambda: ms.hit(item, name, f"k{next(keys) % 1000}"), n
            )
            ai = aio_cls(laio)
            ops[f"limits.aio {name} hit, Redis"] = lambda ai=ai, name=name: atimed(
                loop, lambda: ai.hit(item, "aio", name), n
            )

        for fn in ops.values():  # warm up: connections, script caches
            fn()
        samples: dict[str, list[float]] = {name: [] for name in ops}
        for _ in range(args.rounds):
            for name, fn in ops.items():
                samples[name].append(fn())
        med = {name: statistics.median(v) for name, v in samples.items()}

        ping = med["redis-py PING"]
        fastest_limits = min(
            v for k, v in med.items() if k.startswith("limits ") and k.endswith("Redis")
        )
        limits_mem_fixed = med["limits fixed hit, memory"]
        print(f"# gatekeep {gatekeep.__version__} limiter benchmark")
        print(
            f"Redis {version} (throwaway, loopback), redis-py {redis.__version__}, "
            f"Python {platform.python_version()}, {args.rounds} rounds x {n} calls, medians"
        )
        print()
        print("| operation | µs/op | ops/s | x PING rate | note |")
        print("|---|---|---|---|---|")
        for name, sec in med.items():
            note = ""
            if name.startswith("gatekeep") and name.endswith("Redis"):
                note = f"{fastest_limits / sec:.2f}x fastest limits Redis"
            if "memory" in name and name.startswith("gatekeep"):
                note = f"{limits_mem_fixed / sec:.2f}x limits memory fixed"
            if name == "gatekeep token_bucket hit, memory":
                off = med["gatekeep token_bucket hit, memory, metrics off"]
                note += f"; metrics cost {100 * (sec / off - 1):+.1f}% vs metrics off"
            if "hit_many" in name:
                single = med["gatekeep token_bucket hit, Redis"]
                note = f"{single / sec:.2f}x single hits/s"
            rate_ratio = f"{ping / sec:.2f}" if "memory" not in name else "-"
            print(f"| {name} | {sec * 1e6:.1f} | {1 / sec:,.0f} | {rate_ratio} | {note} |")

        # Round trips: every command the client sends, counted on its connections
        print()
        print("| operation | Redis round trips per call |")
        print("|---|---|")
        for label, call in (
            ("gatekeep hit (one limit)", lambda lim: lim.hit("rt")),
            (
                "gatekeep hit (three limits)",
                lambda lim: lim.hit("rt", "1000/s; 10000/min; 1000000/h"),
            ),
            ("gatekeep hit_many(100)", lambda lim: lim.hit_many([f"rt{i}" for i in range(100)])),
        ):
            counting = redis.Redis(
                connection_pool=redis.ConnectionPool(
                    port=server.port, connection_class=CountingConnection
                )
            )
            lim = Limiter(RATE, backend=RedisBackend(counting), prefix="rt")
            call(lim)  # loads the script, opens the connection
            CountingConnection.sent = 0
            for _ in range(10):
                call(lim)
            print(f"| {label} | {CountingConnection.sent / 10:g} |")
            counting.close()

        # Redis memory per key: 10,000 keys, 50 hits each at 100/minute
        print()
        print("| algorithm | MEMORY USAGE of one key | used_memory per key |")
        print("|---|---|---|")
        client.flushall()
        client.execute_command("MEMORY", "PURGE")
        for algo in ALGORITHMS:
            client.flushall()
            lim = Limiter("100/minute", backend=backend, algorithm=algo, prefix="mem")
            before = client.info("memory")["used_memory"]
            nkeys = 10_000
            pipe_keys = [f"user{i}" for i in range(nkeys)]
            for _ in range(50):
                lim.hit_many(pipe_keys)
            after = client.info("memory")["used_memory"]
            one = lim.keys("user1", lim.plan(None))[0]
            usage = client.memory_usage(one)
            print(f"| {algo} | {usage} B | {(after - before) / nkeys:.0f} B |")
        client.flushall()
        loop.run_until_complete(aclient.aclose())
        loop.run_until_complete(laio.storage.aclose()) if hasattr(laio, "storage") else None
        loop.close()
        client.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()

"""Issue 14 items 2 and 3 beside a plain ``hit``: what ``acquire``, ``reserve`` +
``settle`` and the middleware's ``settle=`` cost, per operation.

Per operation: client µs (wall), client CPU µs (``time.process_time``), round trips
(the server's socket reads) and server µs (``INFO commandstats`` after ``CONFIG
RESETSTAT``, counted once; see ``_common``), on a throwaway redis-server (or
valkey-server) this script starts on a free port. Interleaved rounds, medians.

Operations, one sync call at a time on 1,000 keys in turn, at "1000000/second"
(never denies, never waits):

- ``hit``: the reference;
- ``acquire`` allowed at once (the flow around one hit);
- ``reserve`` alone (a hit that returns a Reservation);
- ``reserve + settle`` at the estimate (nothing sent), below it (a refund) and above
  it (a charge): the settlement is one more script call;
- an ASGI request through ``RateLimitMiddleware`` with a plain rule, and with a
  ``settle="x-tokens-used"`` rule (the settlement after the response).

    python benchmarks/bench_settle.py [--rounds 5] [--n 1000] [--server valkey]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).parent))

from _common import Op, median, run_rounds, table

from gatekeep import Limiter, RedisBackend
from gatekeep.ratelimit import Rule
from gatekeep.ratelimit.asgi import RateLimitMiddleware
from gatekeep.testing import ServerProcess, find_server

RATE = "1000000/second"


def limiter_ops(url: str) -> dict[str, Op]:
    backend = RedisBackend(url)
    limiter = Limiter(RATE, backend=backend, prefix="s", metrics=None)
    keys = [f"k{i}" for i in range(1000)]
    turn = itertools.cycle(keys)

    def each(fn: Callable[[str], object]) -> Op:
        def op(n: int) -> None:
            for _ in range(n):
                fn(next(turn))

        return op

    def settle(actual: int) -> Callable[[str], object]:
        return lambda k: limiter.reserve(k, cost=5).settle(actual)

    return {
        "hit": each(limiter.hit),
        "acquire (allowed at once)": each(lambda k: limiter.acquire(k, timeout=1)),
        "reserve": each(lambda k: limiter.reserve(k, cost=5)),
        "reserve + settle at the estimate": each(settle(5)),
        "reserve + settle below (refund)": each(settle(2)),
        "reserve + settle above (charge)": each(settle(9)),
    }


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"x-tokens-used", b"3")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


def _scope(client: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": (client, 5000),
        "server": ("test", 80),
        "scheme": "http",
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }


def request_ops(url: str, loop: asyncio.AbstractEventLoop) -> dict[str, Op]:
    out: dict[str, Op] = {}
    scopes = [_scope(f"10.0.{i // 250}.{i % 250}") for i in range(1000)]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    for name, rule in (
        ("ASGI request, plain rule", Rule(RATE, name="api")),
        ("ASGI request, settle= rule", Rule(RATE, name="llm", settle="x-tokens-used")),
    ):
        app = RateLimitMiddleware(_app, rules=[rule], backend=RedisBackend(url), metrics=None)

        async def many(n: int, app: Any = app) -> None:
            for i in range(n):
                await app(scopes[i % 1000], receive, send)

        out[name] = lambda n, many=many: loop.run_until_complete(many(n))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=1000, help="operations per case per round")
    ap.add_argument("--server", choices=("redis", "valkey"), default="redis")
    args = ap.parse_args()
    server = ServerProcess.start(find_server(args.server))
    loop = asyncio.new_event_loop()
    try:
        probe = redis.Redis(port=server.port)
        ops = {**limiter_ops(server.url), **request_ops(server.url, loop)}
        samples, mixes = run_rounds(probe, {k: (op, args.n) for k, op in ops.items()}, args.rounds)
        med = {name: median(s) for name, s in samples.items()}
        hit = med["hit"]
        rows = [
            (
                name,
                f"{m.wall_us:.1f}",
                f"{m.cpu_us:.1f}",
                f"{mixes[name].round_trips:.2f}",
                f"{m.server_us:.2f}",
                f"{m.wall_us / hit.wall_us:.2f}",
            )
            for name, m in med.items()
        ]
        print(
            f"{args.server} {probe.info('server')['redis_version']}, Python "
            f"{platform.python_version()}, {args.rounds} rounds x {args.n} ops, medians\n"
        )
        print(
            table(
                ["operation", "client µs", "client CPU µs", "round trips", "server µs", "x hit"],
                rows,
            )
        )
    finally:
        loop.close()
        server.stop()


if __name__ == "__main__":
    main()

"""Concurrency limits (issue 14 item 1) beside a plain ``hit``: what a slot costs.

Per operation: client µs (wall), client CPU µs, server µs (``INFO commandstats`` after
``CONFIG RESETSTAT``, counted once: see ``_common``), round trips (the server's socket
reads) and the commands sent and run, on one throwaway redis-server. Operations, one
at a time on 1,000 keys in turn:

- ``hit``: ``Limiter.hit`` (token bucket, "1000000/second": never denies), the baseline;
- ``acquire`` / ``release`` / ``renew``: ``ConcurrencyLimiter`` (limit 1,000,000, so
  never full; a 300 s lease, so the heartbeat does not beat during the run), and
  ``acquire + release``: ``with limiter.slot(key)``, the whole life of a short holder;
- ``async acquire + release``: the same with ``AsyncConcurrencyLimiter``;
- WSGI requests through ``RateLimitMiddleware``: one rule "1000000/second", and the same
  rule with ``concurrency=1000000``: the rate and the slot in one call, then the release
  when the server closes the response.

    python benchmarks/bench_concurrency.py [--rounds 5] [--n 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).parent))

from _common import median, run_rounds, table

from gatekeep import AsyncConcurrencyLimiter, ConcurrencyLimiter, Limiter, RedisBackend
from gatekeep.algorithms.concurrency import RENEW
from gatekeep.backends.leases import LeaseCall, lease_run
from gatekeep.ratelimit import Rule
from gatekeep.ratelimit.asgi import RateLimitMiddleware as ASGIMiddleware
from gatekeep.ratelimit.wsgi import RateLimitMiddleware
from gatekeep.scripts import concurrency_script
from gatekeep.testing import ServerProcess, find_server

KEYS = [f"user:{i}" for i in range(1000)]
BIG = 1_000_000


def ops(backend: RedisBackend, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    keys = itertools.cycle(KEYS)
    limiter = Limiter(f"{BIG}/second", backend=backend, metrics=None)
    slots = ConcurrencyLimiter(BIG, backend=backend, ttl=300.0, metrics=None)
    aslots = AsyncConcurrencyLimiter(BIG, backend=backend, ttl=300.0, metrics=None)
    held: list[Any] = []
    script = concurrency_script()

    def hit(n: int) -> None:
        for _ in range(n):
            limiter.hit(next(keys))

    def acquire(n: int) -> None:
        held.extend(slots.acquire(next(keys)) for _ in range(n))

    def renew(n: int) -> None:
        for slot in itertools.islice(itertools.cycle(held), n):
            lease = slot.lease
            args = ("", RENEW, 1, lease.limit, lease.ttl_us, lease.id)
            lease_run(backend, LeaseCall(script, (lease.key,), args, None, _no_twin, []))

    def release(n: int) -> None:
        for _ in range(min(n, len(held))):
            held.pop().release()

    def slot(n: int) -> None:
        for _ in range(n):
            with slots.slot(next(keys)):
                pass

    async def aslot_n(n: int) -> None:
        for _ in range(n):
            async with aslots.slot(next(keys)):
                pass

    def aslot(n: int) -> None:
        loop.run_until_complete(aslot_n(n))

    def app(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    plain = RateLimitMiddleware(app, rules=[Rule(f"{BIG}/second")], backend=backend, metrics=None)
    leased = RateLimitMiddleware(
        app,
        rules=[Rule(f"{BIG}/second", concurrency=BIG, lease=300.0)],
        backend=backend,
        metrics=None,
        prefix="leased",
    )

    def request(mw: Any) -> Any:
        def run(n: int) -> None:
            for i in range(n):
                environ = {
                    "REQUEST_METHOD": "GET",
                    "PATH_INFO": "/",
                    "REMOTE_ADDR": f"10.0.{i % 4}.{i % 250}",
                }
                body = mw(environ, lambda status, headers, exc_info=None: None)
                for _ in body:
                    pass
                close = getattr(body, "close", None)
                if close is not None:  # what a WSGI server does
                    close()

        return run

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    aplain = ASGIMiddleware(asgi_app, rules=[Rule(f"{BIG}/second")], backend=backend, metrics=None)
    aleased = ASGIMiddleware(
        asgi_app,
        rules=[Rule(f"{BIG}/second", concurrency=BIG, lease=300.0)],
        backend=backend,
        metrics=None,
        prefix="aleased",
    )

    def arequest(mw: Any, timings: list[float] | None = None) -> Any:
        async def run_n(n: int) -> None:
            for i in range(n):
                scope = {
                    "type": "http",
                    "method": "GET",
                    "path": "/",
                    "raw_path": b"/",
                    "root_path": "",
                    "query_string": b"",
                    "headers": [],
                    "client": (f"10.1.{i % 4}.{i % 250}", 5000),
                }
                send = _Send()
                await mw(scope, _receive, send)
                if timings is not None:  # from the last byte handed over to the app's end
                    timings.append(time.perf_counter() - send.body_at)

        return lambda n: loop.run_until_complete(run_n(n))

    return {
        "hit (plain limiter)": hit,
        "acquire": acquire,
        "renew (heartbeat, per lease)": renew,
        "release": release,
        "with slot(): acquire + release": slot,
        "async with slot()": aslot,
        "WSGI request, rate rule": request(plain),
        "WSGI request, rate + concurrency rule": request(leased),
        "ASGI request, rate rule": arequest(aplain),
        "ASGI request, rate + concurrency rule": arequest(aleased, AFTER_BODY),
    }


#: Seconds from an ASGI response's last ``send`` to the middleware's return: the release.
AFTER_BODY: list[float] = []


class _Send:
    """An ASGI ``send`` that notes when the body went out."""

    body_at = 0.0

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.body":
            self.body_at = time.perf_counter()


async def _receive() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


def _no_twin(*args: Any) -> list[int]:  # pragma: no cover - a RedisBackend never calls it
    raise AssertionError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    with ServerProcess.start(find_server("redis")) as server:
        probe = redis.Redis(port=server.port)
        backend = RedisBackend(server.url)
        table_ops = ops(backend, loop)
        samples, mixes = run_rounds(
            probe, {name: (op, args.n) for name, op in table_ops.items()}, args.rounds
        )
        rows = []
        for name, got in samples.items():
            med, mix = median(got), mixes[name]
            sent = " ".join(f"{k} x{v:g}" for k, v in sorted(mix.sent.items()))
            inner = " ".join(f"{k} x{v:g}" for k, v in sorted(mix.inner.items()))
            rows.append(
                (
                    name,
                    f"{med.wall_us:.1f}",
                    f"{med.cpu_us:.1f}",
                    f"{med.server_us:.1f}",
                    f"{mix.round_trips:g}",
                    sent,
                    inner,
                )
            )
        probe.close()
        backend.close()
        loop.run_until_complete(backend.aclose())
    loop.close()
    print(f"redis-server, {args.rounds} rounds x {args.n} operations, medians\n")
    header = ["operation", "client µs", "client CPU µs", "server µs", "round trips"]
    print(table([*header, "sent", "run by scripts"], rows))
    after = sorted(AFTER_BODY)
    print(
        f"\nASGI with a concurrency rule: the release ends {1e6 * after[len(after) // 2]:.0f} µs "
        f"(median; p90 {1e6 * after[int(len(after) * 0.9)]:.0f} µs) after the response's last "
        "send, which the client does not wait for"
    )


if __name__ == "__main__":
    main()

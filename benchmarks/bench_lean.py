"""Issue 12's figures in one run: gatekeep beside `limits`, `slowapi` and `starsessions`,
and each front door against the physical floor of a request that needs Redis.

Per operation: client µs (wall), client CPU µs (``time.process_time``), server µs
(``INFO commandstats`` after ``CONFIG RESETSTAT``: counted once, summed over every line
as issue 12 first measured it, and the EVALSHA / EVAL lines alone; see ``_common``),
round trips (the server's socket reads, ``total_reads_processed``: a pipeline is
one) and commands (from ``MONITOR``), in a pass of their own, and Redis bytes
per limiter key / per session (``MEMORY USAGE``). Operations:

- every gatekeep algorithm (and a token bucket with two limits) and `limits`' fixed
  window, sliding window counter and moving window, one sync ``hit`` at a time on
  1,000 keys in turn, at "1000000/second" (never denies);
- requests called in-process through ASGI (Starlette), WSGI (Flask) and Django:
  gatekeep's rate-limit middleware (headers on) beside slowapi's; a session read-only
  request and a read + write request beside starsessions'; and the floor: the bare app
  plus N raw ``PING`` round trips on a plain socket (asyncio stream or blocking
  socket, no client library), N = 1 for a rate-limited or read-only request, 2 for a
  read + write one.

One throwaway redis-server, interleaved rounds (every case in every round), medians;
a target's ratio is the median over rounds of the two cases' ratio in the same round.
Prints markdown tables with issue 12's targets and a pass/fail per row (absolute µs drift by
20-40 % between runs on a shared machine).

    python benchmarks/bench_lean.py [--quick] [--rounds 9] [--n 1000] [--requests 400]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).parent))

import _lean_apps as apps
from _common import (
    AsyncPing,
    Op,
    SyncPing,
    bytes_of_new_keys,
    inner_commands_counted_twice,
    run_rounds,
)
from _inprocess import WSGIApp, set_cookie, wsgi_call
from _lean_report import cost_table, floor, target_tables

import gatekeep
from gatekeep import ALGORITHMS, Limiter, RedisBackend
from gatekeep.testing import ServerProcess, find_server

RATE = "1000000/second"  # never denies: the cost of a decision
TWO = "1000000/second; 100000000/hour"
MEMORY_RATE, MEMORY_HITS = "100/minute", 50
#: The session requests of every front door.
SESSION_REQUESTS = {"/read": "read-only", "/write": "read+write"}


def each(fn: Callable[[str], object], keys: Iterator[str]) -> Op:
    def op(n: int) -> None:
        for _ in range(n):
            fn(next(keys))

    return op


def limiter_ops(url: str, port: int) -> tuple[dict[str, Op], dict[str, Callable[[], object]]]:
    """The decisions, and for each a way to make one key's state (for its bytes)."""
    from limits import parse
    from limits.storage import RedisStorage
    from limits.strategies import (
        FixedWindowRateLimiter,
        MovingWindowRateLimiter,
        SlidingWindowCounterRateLimiter,
    )

    keys = (f"k{i % 1000}" for i in itertools.count())
    backend = RedisBackend(url)
    ops: dict[str, Op] = {}
    state: dict[str, Callable[[], object]] = {}
    variants = [(f"gatekeep {a}", a, RATE) for a in ALGORITHMS]
    variants.append(("gatekeep token_bucket, two limits", "token_bucket", TWO))
    for name, algo, rate in variants:
        ops[name] = each(Limiter(rate, backend=backend, algorithm=algo, prefix="b").hit, keys)
        small = MEMORY_RATE if rate == RATE else f"{MEMORY_RATE}; 1000/hour"
        mem = Limiter(small, backend=backend, algorithm=algo, prefix="m")
        state[name] = lambda mem=mem: [mem.hit("mem") for _ in range(MEMORY_HITS)]
    storage = RedisStorage(url)
    item, window = parse(RATE), parse(MEMORY_RATE)
    for name, cls in (
        ("limits fixed window", FixedWindowRateLimiter),
        ("limits sliding window counter", SlidingWindowCounterRateLimiter),
        ("limits moving window", MovingWindowRateLimiter),
    ):
        strategy = cls(storage)
        ops[name] = each(lambda k, s=strategy, t=name: s.hit(item, t, k), keys)
        state[name] = lambda s=strategy: [s.hit(window, "mem") for _ in range(MEMORY_HITS)]
    client = redis.Redis.from_url(url)
    sha = client.script_load("return 1")
    ops["EVALSHA `return 1` (redis-py)"] = lambda n: [client.evalsha(sha, 0) for _ in range(n)]
    ping = SyncPing(port)
    ops["raw PING (blocking socket)"] = lambda n: [ping() for _ in range(n)]
    return ops, state


def rate_limited(name: str) -> bool:
    """Whether a request case rate-limits (and must send rate-limit headers)."""
    return "RateLimit" in name or "slowapi" in name


class Requests:
    """Every request case, ASGI, WSGI and Django, built on one event loop."""

    def __init__(self, url: str, port: int, loop: asyncio.AbstractEventLoop) -> None:
        self.url, self.loop = url, loop
        self.ops: dict[str, Op] = {}
        self.seeds: dict[str, Callable[[], object]] = {}
        self.closers: list[Callable[[], Any]] = []
        self.aping, self.sping = AsyncPing(port), SyncPing(port)
        self._asgi()
        self._flask()
        self._django()

    def asgi(self, name: str, app: Any, path: str, cookie: bytes | None = None) -> None:
        from bench_sessions import call

        status, headers = self.loop.run_until_complete(call(app, path, cookie))
        assert status == 200, (name, status)
        assert not rate_limited(name) or any(b"ratelimit" in k.lower() for k, _ in headers), name

        async def many(n: int) -> None:
            for _ in range(n):
                await call(app, path, cookie)

        self.ops[name] = lambda n: self.loop.run_until_complete(many(n))

    def wsgi(self, name: str, app: WSGIApp, path: str, cookie: str | None = None) -> None:
        status, headers = wsgi_call(app, path, cookie)
        assert status.startswith("200"), (name, status)
        assert not rate_limited(name) or any("ratelimit" in k.lower() for k, _ in headers), name

        def op(n: int) -> None:
            for _ in range(n):
                wsgi_call(app, path, cookie)

        self.ops[name] = op

    def _asgi(self) -> None:
        from bench_middleware import routes, slowapi_app
        from bench_sessions import call, make_apps
        from bench_sessions import set_cookie as asgi_cookie
        from slowapi.middleware import SlowAPIASGIMiddleware
        from starlette.applications import Starlette
        from starlette.middleware import Middleware

        from gatekeep.asgi import RateLimitMiddleware

        bare = Starlette(routes=routes())
        backend = RedisBackend(self.url)
        self.closers.append(backend.aclose)
        limited = Starlette(
            routes=routes(),
            middleware=[Middleware(RateLimitMiddleware, default=RATE, backend=backend, prefix="b")],
        )
        self.asgi("ASGI bare app, /", bare, "/")
        self.asgi(floor("ASGI", "/"), apps.AsyncFloor(bare, self.aping, 1), "/")
        self.asgi("ASGI gatekeep RateLimitMiddleware", limited, "/")
        self.asgi(
            "ASGI slowapi SlowAPIASGIMiddleware", slowapi_app(SlowAPIASGIMiddleware, self.url), "/"
        )
        built, closers = make_apps(self.url)
        self.closers += closers
        cookies: dict[str, bytes] = {}
        for lib in ("gatekeep", "starsessions"):
            app = built[lib]
            cookies[lib] = asgi_cookie(self.loop.run_until_complete(call(app, "/seed", None))[1])
            self.seeds[f"ASGI {lib} session"] = lambda app=app: self.loop.run_until_complete(
                call(app, "/seed", None)
            )
        for path, what in SESSION_REQUESTS.items():
            self.asgi(f"ASGI bare app, {path}", built["bare"], path)
            base = apps.AsyncFloor(built["bare"], self.aping, apps.FLOOR_PINGS[path])
            self.asgi(floor("ASGI", path), base, path)
            for lib in ("gatekeep", "starsessions"):
                self.asgi(f"ASGI {lib} session, {what}", built[lib], path, cookies[lib])

    def bare_and_floor(self, door: str, bare: WSGIApp) -> None:
        """A WSGI door's bare app on ``/``, and it with one raw round trip."""
        self.wsgi(f"{door} bare app, /", bare, "/")
        self.wsgi(floor(door, "/"), apps.SyncFloor(bare, self.sping, 1), "/")

    def sessions(self, door: str, bare: WSGIApp, sessions: WSGIApp) -> None:
        """A WSGI door's session requests: the bare app, its floor, gatekeep's session."""
        cookie = set_cookie(wsgi_call(sessions, "/seed")[1])
        self.seeds[f"{door} gatekeep session"] = lambda: wsgi_call(sessions, "/seed")
        for path, what in SESSION_REQUESTS.items():
            self.wsgi(f"{door} bare app, {path}", bare, path)
            base = apps.SyncFloor(bare, self.sping, apps.FLOOR_PINGS[path])
            self.wsgi(floor(door, path), base, path)
            self.wsgi(f"{door} gatekeep session, {what}", sessions, path, cookie)

    def _flask(self) -> None:
        from gatekeep.flask import RateLimiter
        from gatekeep.flask_sessions import GatekeepSessionInterface
        from gatekeep.sessions import SessionStore
        from gatekeep.wsgi import RateLimitMiddleware

        bare = apps.flask_app()
        backend = RedisBackend(self.url)
        self.bare_and_floor("Flask", bare)
        wrapped = RateLimitMiddleware(apps.flask_app(), default=RATE, backend=backend, prefix="w")
        self.wsgi("WSGI gatekeep.wsgi RateLimitMiddleware (Flask)", wrapped, "/")
        extension = apps.flask_app()
        RateLimiter(extension, default=RATE, backend=backend, prefix="f")
        self.wsgi("Flask gatekeep.flask RateLimiter", extension, "/")
        sessions = apps.flask_app(sessions=True)
        store = SessionStore(RedisBackend(self.url), prefix="bf")
        GatekeepSessionInterface(store, https_only=False).init_app(sessions)
        self.sessions("Flask", bare, sessions)

    def _django(self) -> None:
        apps.django_configure(self.url)
        bare = apps.django_handler()
        limited = apps.django_handler("gatekeep.django.middleware.RateLimitMiddleware")
        sessions = apps.django_handler("django.contrib.sessions.middleware.SessionMiddleware")
        self.bare_and_floor("Django", bare)
        self.wsgi("Django gatekeep RateLimitMiddleware", limited, "/")
        self.sessions("Django", bare, sessions)

    def close(self) -> None:
        for close in self.closers:
            self.loop.run_until_complete(close())
        self.loop.run_until_complete(self.aping.aclose())
        self.sping.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds of few calls: a smoke run")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--n", type=int, default=1000, help="decisions per case and round")
    ap.add_argument("--requests", type=int, default=400, help="requests per case and round")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.n, args.requests = 3, 100, 50
    load = os.getloadavg()[0]
    with ServerProcess.start(find_server("redis")) as server:
        probe = redis.Redis(port=server.port)
        redis_version = probe.info("server")["redis_version"]
        loop = asyncio.new_event_loop()
        limiters, states = limiter_ops(server.url, server.port)
        requests = Requests(server.url, server.port, loop)
        lrange, script = inner_commands_counted_twice(probe)
        cases = {name: (op, args.n) for name, op in limiters.items()}
        cases.update((name, (op, args.requests)) for name, op in requests.ops.items())
        samples, mixes = run_rounds(probe, cases, args.rounds)  # every case in every round
        sizes = {
            name: "{1} B in {0} key(s)".format(*bytes_of_new_keys(probe, make))
            for name, make in states.items()
        }
        for name, make in requests.seeds.items():
            count, size = bytes_of_new_keys(probe, make)
            for op in requests.ops:
                if op.startswith(name):
                    sizes[op] = f"{size} B in {count} key(s)"
        requests.close()
        loop.close()
        probe.close()
    server_table, client_table = target_tables(samples)
    command = "python benchmarks/bench_lean.py " + " ".join(argv or sys.argv[1:])
    print(f"# Lean on Redis ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC)\n")
    print(
        f"`{command.strip()}`: {args.rounds} interleaved rounds, {args.n} decisions / "
        f"{args.requests} requests per case and round, medians (a ratio: the median of "
        f"the rounds' ratios). gatekeep "
        f"{gatekeep.__version__}, redis-server {redis_version} (throwaway, loopback), "
        f"redis-py {version('redis')}, limits {version('limits')}, slowapi "
        f"{version('slowapi')}, starsessions {version('starsessions')}, Starlette "
        f"{version('starlette')}, Flask {version('flask')}, Django {version('django')}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{load:.2f} before / {os.getloadavg()[0]:.2f} after.\n"
    )
    print("## Targets\n")
    print(server_table + "\n")
    print(client_table + "\n")
    print("## Per decision\n")
    print(
        cost_table(
            list(limiters),
            samples,
            mixes,
            sizes,
            f"bytes per key ({MEMORY_HITS} hits at {MEMORY_RATE})",
        )
        + "\n"
    )
    print("## Per request (in-process calls)\n")
    print(cost_table(list(requests.ops), samples, mixes, sizes, "bytes per session") + "\n")
    print(
        "Server µs: INFO commandstats after CONFIG RESETSTAT. Redis 7 counts a command a\n"
        "script runs both on its own line and inside the script's line, so 'all lines'\n"
        "counts it twice; 'server µs' counts it once (each line weighted by the share of\n"
        "its calls clients sent, from MONITOR). Round trips: the server's socket reads\n"
        "(INFO stats total_reads_processed; a pipeline is one); commands: MONITOR; both in\n"
        "a pass of their own.\n\n"
        "Check of that accounting, same server: a script running an LRANGE of 20,000 items:\n"
        f"cmdstat_lrange {lrange:.0f} µs per call, cmdstat_evalsha {script:.0f} µs per call\n"
        "(the script's line includes its LRANGE, which also has its own line)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

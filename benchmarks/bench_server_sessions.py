"""Redis server time per session request, beside `limits` fixed window, in one run.

Cases, each run sequentially against one throwaway redis-server, with CONFIG
RESETSTAT before and INFO commandstats after (rounds interleaved, medians):

  gk read          a read-only request through gatekeep's ASGI SessionMiddleware (the
                   session is read before the app, without moving its idle deadline)
  gk read (touch)  a read-only request that loads with the touch (the WSGI and Flask
                   middleware, ``lazy=True``, ``store.load``): SessionStore.load
  gk write         a read + write request through the ASGI middleware (load, then a save
                   of the one key the app changed)
  starsessions     any request through starsessions' middleware (GET + SET)
  limits fixed     `limits` FixedWindowRateLimiter.hit on its Redis storage (one EVALSHA)
  return 1         EVALSHA of `return 1`: the fixed part of any script call

Server µs per operation is reported two ways:

  sum      usec summed over every cmdstat_ line (the issue's measure). The usec of an
           EVALSHA already includes the commands its script runs, and those commands
           also have their own lines: this counts them twice.
  scripts  usec of what the clients sent (EVALSHA, EVAL, their _RO forms, and for
           starsessions GET and SET; gatekeep's peek, TIME and HGETALL sent as plain
           commands, at their per-call usec, once per request of the cases in PLAIN):
           each command counted once.

With ``--breakdown``, each gatekeep case's commands: calls and usec per request.
With ``--cpu``, also the server process's CPU time per operation (INFO cpu, user +
system): what commandstats leaves out too (reading, parsing and answering each
command; event loop work), which plain commands pay once each.

    python benchmarks/bench_server_sessions.py [--rounds 7] [--n 2000] [--breakdown] [--cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Callable
from typing import Any

import bench_sessions
import redis
import redis.asyncio
from bench_sessions import set_cookie
from limits import parse
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starsessions import SessionAutoloadMiddleware
from starsessions import SessionMiddleware as StarSessionMiddleware
from starsessions.stores.redis import RedisStore

from gatekeep import RedisBackend
from gatekeep.sessions import SessionStore
from gatekeep.sessions.asgi import SessionMiddleware
from gatekeep.testing import ServerProcess, find_server

SECRET = "benchmark-secret-key-0123456789abcdef"
#: Commands a client sends (never run inside a script in these cases).
SENT = ("evalsha", "evalsha_ro", "eval", "eval_ro", "get", "set")
#: Plain commands a case's client sends per operation (the peek: TIME and HGETALL,
#: pipelined); scripts run the same commands, so their lines mix both: these are
#: counted at the line's usec per call, this many per operation.
PLAIN = {"gk read": ("time", "hgetall"), "gk write": ("time", "hgetall")}
#: The probe's own commands.
PROBE = ("info", "config|resetstat")


async def read(request: Request) -> JSONResponse:
    s = request.scope["session"]
    return JSONResponse({"user": s.get("user"), "n": s.get("n")})


async def write(request: Request) -> JSONResponse:
    s = request.scope["session"]
    s["n"] = s.get("n", 0) + 1
    return JSONResponse({"user": s.get("user"), "n": s["n"]})


async def seed(request: Request) -> JSONResponse:
    request.scope["session"].update({"user": "alice", "n": 0, "cart": ["apple", "pear", "plum"]})
    return JSONResponse({})


ROUTES = [Route("/read", read), Route("/write", write), Route("/seed", seed)]


async def call(app: Any, path: str, cookie: bytes | None) -> list[tuple[bytes, bytes]]:
    status, headers = await bench_sessions.call(app, path, cookie)
    assert status == 200, status
    return headers


class Cases:
    """Every case as an async callable doing one operation, set up on one server."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.backend = RedisBackend(url)
        self.store = SessionStore(self.backend, prefix="bench")
        gk = Starlette(routes=ROUTES)
        gk.add_middleware(SessionMiddleware, secret_key=SECRET, store=self.store, https_only=False)
        self.gk = gk
        self.aredis = redis.asyncio.Redis.from_url(url)
        star = Starlette(routes=ROUTES)
        star.add_middleware(SessionAutoloadMiddleware)
        star.add_middleware(
            StarSessionMiddleware,
            store=RedisStore(connection=self.aredis),
            lifetime=14 * 24 * 3600,
            cookie_https_only=False,
        )
        self.star = star
        self.limits_storage = RedisStorage(url)
        self.limiter = FixedWindowRateLimiter(self.limits_storage)
        self.rate = parse("1000000000/hour")
        self.sync = redis.Redis.from_url(url)
        self.return_1 = self.sync.script_load("return 1")
        self.gk_cookie = b""
        self.star_cookie = b""
        self.sid = ""

    async def setup(self) -> dict[str, Callable[[], Any]]:
        self.gk_cookie = set_cookie(await call(self.gk, "/seed", None))
        self.star_cookie = set_cookie(await call(self.star, "/seed", None))
        self.sid = self.gk_cookie.split(b"=", 1)[1].split(b".")[0].decode()
        assert await self.store.aload(self.sid) is not None
        gk, star, store = self.gk, self.star, self.store
        gk_cookie, star_cookie, sid = self.gk_cookie, self.star_cookie, self.sid
        limiter, rate, sync, return_1 = self.limiter, self.rate, self.sync, self.return_1

        async def limits_hit() -> None:
            limiter.hit(rate, "bench")

        async def evalsha_1() -> None:
            sync.evalsha(return_1, 0)

        return {
            "gk read": lambda: call(gk, "/read", gk_cookie),
            "gk read (touch)": lambda: store.aload(sid),
            "gk write": lambda: call(gk, "/write", gk_cookie),
            "starsessions": lambda: call(star, "/read", star_cookie),
            "limits fixed": limits_hit,
            "return 1": evalsha_1,
        }

    async def close(self) -> None:
        await self.store.aclose()
        await self.backend.aclose()
        await self.aredis.aclose()
        self.sync.close()


def usec(stats: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """cmdstat name -> (calls, usec), without the probe's own commands."""
    out = {}
    for name, v in stats.items():
        cmd = name.removeprefix("cmdstat_")
        if cmd not in PROBE:
            out[cmd] = (v["calls"], v["usec"])
    return out


def cpu_us(probe: redis.Redis) -> float:
    info = probe.info("cpu")
    return (float(info["used_cpu_user"]) + float(info["used_cpu_sys"])) * 1e6


#: Server CPU µs per operation of the last measure() (see --cpu).
CPU: dict[str, list[float]] = {}


async def measure(
    probe: redis.Redis, fn: Callable[[], Any], n: int, plain: tuple[str, ...] = (), name: str = ""
) -> tuple[float, float, dict[str, tuple[int, int]]]:
    probe.config_resetstat()
    cpu0 = cpu_us(probe)
    for _ in range(n):
        await fn()
    CPU.setdefault(name, []).append((cpu_us(probe) - cpu0) / n)
    stats = usec(probe.info("commandstats"))
    total = sum(u for _c, u in stats.values())
    sent = sum(u for cmd, (_c, u) in stats.items() if cmd in SENT)
    for cmd in plain:
        calls, used = stats.get(cmd, (0, 0))
        if calls < n:
            raise RuntimeError(f"{cmd}: {calls} calls for {n} operations: not sent plain")
        sent += used / calls * n
    return total / n, sent / n, stats


async def run(args: argparse.Namespace, url: str, probe: redis.Redis) -> None:
    cases = Cases(url)
    fns = await cases.setup()
    for fn in fns.values():  # warm-up: connections, script caches
        for _ in range(50):
            await fn()
    sums: dict[str, list[float]] = {name: [] for name in fns}
    sent: dict[str, list[float]] = {name: [] for name in fns}
    last: dict[str, dict[str, tuple[int, int]]] = {}
    for _round in range(args.rounds):
        for name, fn in fns.items():
            total, own, stats = await measure(probe, fn, args.n, PLAIN.get(name, ()), name)
            sums[name].append(total)
            sent[name].append(own)
            last[name] = stats
    await cases.close()
    med = {name: statistics.median(v) for name, v in sums.items()}
    med_sent = {name: statistics.median(v) for name, v in sent.items()}
    base, base_sent = med["limits fixed"], med_sent["limits fixed"]
    print(f"{args.rounds} rounds x {args.n} operations per case, medians\n")
    print(
        "| per operation | server µs (sum) | x limits fixed | server µs (scripts) | x limits fixed |"
    )
    print("|---|---:|---:|---:|---:|")
    for name in fns:
        print(
            f"| {name} | {med[name]:.1f} | {med[name] / base:.2f} | "
            f"{med_sent[name]:.1f} | {med_sent[name] / base_sent:.2f} |"
        )
    if args.cpu:
        cpu = {name: statistics.median(CPU[name]) for name in fns}
        print("\n| per operation | server CPU µs (INFO cpu) | x limits fixed |\n|---|---:|---:|")
        for name in fns:
            print(f"| {name} | {cpu[name]:.1f} | {cpu[name] / cpu['limits fixed']:.2f} |")
    if args.breakdown:
        print("\nLast round, per operation: command calls / usec")
        for name, stats in last.items():
            parts = ", ".join(
                f"{cmd} {c / args.n:.2f}/{u / args.n:.2f}"
                for cmd, (c, u) in sorted(stats.items(), key=lambda kv: -kv[1][1])
            )
            print(f"  {name}: {parts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--breakdown", action="store_true", help="commands per case")
    parser.add_argument("--cpu", action="store_true", help="server CPU time per case")
    args = parser.parse_args()
    with ServerProcess.start(find_server("redis")) as server:
        probe = redis.Redis(port=server.port)
        print(f"redis-server {probe.info('server')['redis_version']}")
        asyncio.run(run(args, server.url, probe))
        probe.close()


if __name__ == "__main__":
    main()

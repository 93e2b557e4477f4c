"""Client CPU per rate-limited request against the physical floor (issue 12).

The floor is what any Redis-backed limiter must spend: the bare app, called in-process,
plus one raw ``PING`` round trip on a plain socket to the same Redis (no client
library). CPU is ``time.process_time`` per request, so the wait for Redis is not
counted. Variants, in interleaved rounds (medians):

  asgi-floor / asgi-gk      a Starlette app (one route) / the same behind
                            gatekeep.asgi.RateLimitMiddleware (a Redis URL, headers on);
                            the floor's PING on an ``asyncio.open_connection`` socket
  wsgi-floor / wsgi-gk      a plain WSGI app / behind gatekeep.wsgi.RateLimitMiddleware;
                            the floor's PING on a blocking socket
  django-floor / django-gk  Django's WSGIHandler, one view / with gatekeep's Django
                            middleware (the same policy); a blocking-socket PING
  ping-async / ahit         the raw asyncio PING alone / ``AsyncLimiter.hit`` (RedisBackend)
  ping-sync / hit           the raw blocking PING alone / ``Limiter.hit`` (RedisBackend)

and, to tell where the rest goes (not floors):

  eval-async / eval-sync    the EVALSHA ``hit`` sends, written raw on the floor's socket
                            and its reply read raw: what the script's own server time
                            costs the client (it sleeps longer, and wakes) over a PING
  asgi-gk-redis             asgi-gk with a RedisBackend (no FailoverBackend around it)

Every gatekeep variant limits with "1000000/second" (never denies). One throwaway
redis-server on a free port (gatekeep.testing.ServerProcess), stopped at the end.

    python benchmarks/bench_client_cpu.py [--rounds 9] [--n 2000] [--only asgi,hit]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import _common
from _inprocess import asgi_receive, asgi_scope, wsgi_environ
from bench_middleware import CLIENT

RATE = "1000000/second"
GROUPS = ("asgi", "wsgi", "django", "hit")


# -- the variants: each an async or sync callable that serves one request ------------


class AsyncRaw(_common.AsyncPing):
    """One raw command (``payload``, one RESP array reply of ``lines`` lines)."""

    def __init__(self, port: int, payload: bytes, lines: int) -> None:
        super().__init__(port)
        self.payload, self.lines = payload, lines

    async def __call__(self) -> None:
        if self.writer is None:
            await self.open()
        assert self.reader is not None
        self.writer.write(self.payload)
        data = await self.reader.read(4096)
        while data.count(b"\r\n") < self.lines:
            data += await self.reader.read(4096)
        if not data.startswith(b"*"):
            raise RuntimeError(data)


class SyncRaw(_common.SyncPing):
    def __init__(self, port: int, payload: bytes, lines: int) -> None:
        super().__init__(port)
        self.payload, self.lines = payload, lines

    def __call__(self) -> None:
        self.sock.sendall(self.payload)
        data = self.sock.recv(4096)
        while data.count(b"\r\n") < self.lines:
            data += self.sock.recv(4096)
        if not data.startswith(b"*"):
            raise RuntimeError(data)


def asgi_caller(app: Any, ping: _common.AsyncPing | None) -> Callable[[], Any]:
    sent: list[Any] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def one() -> None:
        sent.clear()
        await app(asgi_scope(client=CLIENT), asgi_receive, send)
        if ping is not None:
            await ping()
        if sent[0]["status"] != 200:
            raise RuntimeError(sent[0])

    one.sent = sent  # type: ignore[attr-defined]
    return one


def wsgi_caller(app: Any, ping: _common.SyncPing | None) -> Callable[[], Any]:
    got: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        got[:] = [status, headers]

    def one() -> None:
        body = app(wsgi_environ(), start_response)
        b"".join(body)
        close = getattr(body, "close", None)
        if close is not None:
            close()
        if ping is not None:
            ping()
        if not got[0].startswith("200"):
            raise RuntimeError(got)

    one.got = got  # type: ignore[attr-defined]
    return one


def plain_wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def django_handlers(url: str) -> tuple[Any, Any]:
    """Django's WSGIHandler without and with gatekeep's middleware (``_lean_apps``'
    settings and views: ``/`` answers "ok" as text/plain)."""
    from _lean_apps import django_configure, django_handler

    django_configure(url, home_type="text/plain")
    return django_handler(), django_handler("gatekeep.django.middleware.RateLimitMiddleware")


# -- measuring ---------------------------------------------------------------------


def cpu_sync(fn: Callable[[], Any], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n


async def cpu_async(fn: Callable[[], Any], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        await fn()
    return (time.process_time() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--only", default=",".join(GROUPS), help="groups: " + ",".join(GROUPS))
    args = ap.parse_args()
    groups = [g for g in args.only.split(",") if g]

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    import gatekeep
    from gatekeep import AsyncLimiter, Limiter, RedisBackend
    from gatekeep.asgi import RateLimitMiddleware as AsgiLimit
    from gatekeep.backends._wire import pack
    from gatekeep.testing import ServerProcess, find_server
    from gatekeep.wsgi import RateLimitMiddleware as WsgiLimit

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    server = ServerProcess.start(find_server("redis"))
    loop = asyncio.new_event_loop()
    closers: list[Callable[[], Any]] = []
    try:
        aping, sping = _common.AsyncPing(server.port), _common.SyncPing(server.port)
        loop.run_until_complete(aping.open())
        sync_fns: dict[str, Callable[[], Any]] = {}
        async_fns: dict[str, Callable[[], Any]] = {}
        if "asgi" in groups:
            bare = Starlette(routes=[Route("/", home)])
            gk_app = AsgiLimit(
                Starlette(routes=[Route("/", home)]), default=RATE, backend=server.url
            )
            async_fns["asgi-floor"] = asgi_caller(bare, aping)
            async_fns["asgi-gk"] = gk = asgi_caller(gk_app, None)
            closers.append(lambda: loop.run_until_complete(gk_app.policy.backend.aclose()))
            direct = RedisBackend(server.url)
            gk_direct = AsgiLimit(
                Starlette(routes=[Route("/", home)]), default=RATE, backend=direct
            )
            async_fns["asgi-gk-redis"] = asgi_caller(gk_direct, None)
            closers.append(lambda: loop.run_until_complete(direct.aclose()))
            loop.run_until_complete(gk())
            print("asgi-gk headers:", gk.sent[0]["headers"], file=sys.stderr)  # type: ignore[attr-defined]
        if "wsgi" in groups:
            wsgi_gk = WsgiLimit(plain_wsgi_app, default=RATE, backend=server.url)
            sync_fns["wsgi-floor"] = wsgi_caller(plain_wsgi_app, sping)
            sync_fns["wsgi-gk"] = w = wsgi_caller(wsgi_gk, None)
            closers.append(wsgi_gk.policy.backend.close)
            w()
            print("wsgi-gk headers:", w.got[1], file=sys.stderr)  # type: ignore[attr-defined]
        if "django" in groups:
            dj_bare, dj_gk = django_handlers(server.url)
            sync_fns["django-floor"] = wsgi_caller(dj_bare, sping)
            sync_fns["django-gk"] = d = wsgi_caller(dj_gk, None)
            d()
            print("django-gk headers:", d.got[1], file=sys.stderr)  # type: ignore[attr-defined]
        if "hit" in groups:
            backend = RedisBackend(server.url)
            closers.append(backend.close)
            closers.append(lambda: loop.run_until_complete(backend.aclose()))
            limiter, alimiter = Limiter(RATE, backend=backend), AsyncLimiter(RATE, backend=backend)
            sync_fns["ping-sync"] = sping
            sync_fns["hit"] = lambda: limiter.hit("user:1")
            async_fns["ping-async"] = aping
            async_fns["ahit"] = lambda: alimiter.hit("user:1")
            limiter.hit("user:1")  # the script is loaded
            plan = limiter.plan(None)
            script = plan.algorithm.script
            keys = limiter.keys("user:1", plan)
            command = pack(("EVALSHA", script.sha, len(keys), *keys, "", "hit", 1, *plan.flat))
            lines = 1 + 4 * len(plan.rates)
            eval_async = AsyncRaw(server.port, command, lines)
            loop.run_until_complete(eval_async.open())
            async_fns["eval-async"] = eval_async
            sync_fns["eval-sync"] = SyncRaw(server.port, command, lines)
        for fn in sync_fns.values():  # warm-up: scripts, connections, caches
            cpu_sync(fn, 300)
        for fn in async_fns.values():
            loop.run_until_complete(cpu_async(fn, 300))
        times: dict[str, list[float]] = {k: [] for k in [*async_fns, *sync_fns]}
        for _ in range(args.rounds):
            for name, fn in async_fns.items():
                times[name].append(loop.run_until_complete(cpu_async(fn, args.n)))
            for name, fn in sync_fns.items():
                times[name].append(cpu_sync(fn, args.n))
    finally:
        for close in closers:
            close()
        loop.close()
        server.stop()

    med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    spread = {k: (min(v) * 1e6, max(v) * 1e6) for k, v in times.items()}
    print(
        f"gatekeep {gatekeep.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}; {args.rounds} interleaved rounds of {args.n}; "
        "process_time per request, medians (min-max)\n"
    )
    print("| variant | CPU µs / request | x floor |")
    print("|---|---:|---:|")
    floors = {
        "asgi-gk": "asgi-floor",
        "asgi-gk-redis": "asgi-floor",
        "wsgi-gk": "wsgi-floor",
        "django-gk": "django-floor",
        "hit": "ping-sync",
        "ahit": "ping-async",
    }
    for name in times:
        lo, hi = spread[name]
        ratio = f"{med[name] / med[floors[name]]:.2f}" if name in floors else ""
        print(f"| {name} | {med[name]:.1f} ({lo:.1f}-{hi:.1f}) | {ratio} |")


if __name__ == "__main__":
    main()

"""ASGI rate-limit middleware, in-process (no network between client and app).

Variants, each a Starlette app with one route, called directly with ASGI messages:
  bare          the app alone
  gk-memory     gatekeep RateLimitMiddleware, in-process memory backend
  gk-redis      gatekeep RateLimitMiddleware, Redis backend
  slowapi-asgi  slowapi SlowAPIASGIMiddleware, same Redis, headers on
  slowapi-base  slowapi SlowAPIMiddleware (BaseHTTPMiddleware), same Redis, headers on

Every variant limits with "1000000/second" (never denies) and sends its rate-limit
headers. One throwaway redis-server (gatekeep.testing.ServerProcess); rounds are
interleaved and medians reported, with Redis commands per request from
MONITOR in a pass of its own (gatekeep sends one EVALSHA and nothing else, no
pipeline, so commands = round trips for it).

    python benchmarks/bench_middleware.py [--rounds 7] [--n 2000] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import redis
from _common import SCRIPTS, command_mix
from _inprocess import asgi_receive, asgi_scope
from slowapi import Limiter as SlowLimiter
from slowapi.middleware import SlowAPIASGIMiddleware, SlowAPIMiddleware
from slowapi.util import get_remote_address
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import gatekeep
from gatekeep import MemoryBackend, RedisBackend
from gatekeep.ratelimit.asgi import RateLimitMiddleware
from gatekeep.testing import ServerProcess, find_server

RATE = "1000000/second"


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def routes() -> list[Route]:
    return [Route("/", home)]


def slowapi_app(middleware: type, url: str) -> Starlette:
    app = Starlette(routes=routes(), middleware=[Middleware(middleware)])
    app.state.limiter = SlowLimiter(
        key_func=get_remote_address, default_limits=[RATE], storage_uri=url, headers_enabled=True
    )
    return app


#: The client of every request (a documentation address).
CLIENT = ("203.0.113.9", 5000)


def scope() -> dict[str, Any]:
    """The scope of every request here (``/``, from :data:`CLIENT`)."""
    return asgi_scope(client=CLIENT)


async def run(app: Any, n: int) -> tuple[float, list[tuple[bytes, bytes]]]:
    """Seconds per request over n requests; the headers of the last response."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    start = time.perf_counter()
    for _ in range(n):
        sent.clear()
        await app(asgi_scope(client=CLIENT), asgi_receive, send)
    elapsed = (time.perf_counter() - start) / n
    start_msg = next(m for m in sent if m["type"] == "http.response.start")
    assert start_msg["status"] == 200, start_msg
    return elapsed, list(start_msg["headers"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument(
        "--write",
        action="store_true",
        help="also write the report to benchmarks/last-middleware.md (to paste into RESULTS.md)",
    )
    args = ap.parse_args()

    server = ServerProcess.start(find_server("redis"))
    loop = asyncio.new_event_loop()
    stats_client = redis.Redis.from_url(server.url)
    try:
        gk_redis_backend = RedisBackend(server.url)
        apps: dict[str, Any] = {
            "bare": Starlette(routes=routes()),
            "gk-memory": Starlette(
                routes=routes(),
                middleware=[Middleware(RateLimitMiddleware, default=RATE, backend=MemoryBackend())],
            ),
            "gk-redis": Starlette(
                routes=routes(),
                middleware=[
                    Middleware(
                        RateLimitMiddleware, default=RATE, backend=gk_redis_backend, prefix="bench"
                    )
                ],
            ),
            "slowapi-asgi": slowapi_app(SlowAPIASGIMiddleware, server.url),
            "slowapi-base": slowapi_app(SlowAPIMiddleware, server.url),
        }
        times: dict[str, list[float]] = {k: [] for k in apps}
        headers: dict[str, list[tuple[bytes, bytes]]] = {}
        for app in apps.values():  # warm-up: script loads, connections, caches
            loop.run_until_complete(run(app, 200))
        # Round trips from MONITOR, in a pass of its own: counting on the client (wrapping
        # redis-py's send_packed_command) would put gatekeep's asyncio calls on redis-py's
        # public path instead of its lean one, i.e. change what is timed.
        mixes = {
            name: command_mix(
                stats_client, lambda n, app=app: loop.run_until_complete(run(app, n)), 50
            )
            for name, app in apps.items()
        }
        per_request = {name: mix.round_trips for name, mix in mixes.items()}
        scripts = {name: sum(mix.sent.get(c, 0.0) for c in SCRIPTS) for name, mix in mixes.items()}
        for _ in range(args.rounds):
            for name, app in apps.items():
                t, hdrs = loop.run_until_complete(run(app, args.n))
                times[name].append(t)
                headers[name] = hdrs
        loop.run_until_complete(gk_redis_backend.aclose())
    finally:
        stats_client.close()
        loop.close()
        server.stop()

    med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    lines = [
        f"# Middleware benchmark ({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `python benchmarks/bench_middleware.py --rounds {args.rounds} --n {args.n}`",
        "",
        f"gatekeep {gatekeep.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}, redis-server from {find_server('redis')}; in-process ASGI "
        f"calls, {args.rounds} interleaved rounds of {args.n} requests, medians.",
        "",
        "| variant | µs / request | x bare | Redis round trips / request | scripts / request |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in apps:
        rt = f"{per_request[name]:.2f}"
        lines.append(
            f"| {name} | {med[name]:.1f} | {med[name] / med['bare']:.2f} | {rt} "
            f"| {scripts[name]:.2f} |"
        )
    ratio_mem = med["gk-memory"] / med["bare"]
    ratio_redis = med["gk-redis"] / med["slowapi-asgi"]
    lines += [
        "",
        f"- gatekeep on memory / bare app: **{ratio_mem:.2f}x** (target <= 2x)",
        f"- gatekeep on Redis / SlowAPIASGIMiddleware: **{ratio_redis:.2f}x** (target <= 0.5x)",
        f"- gatekeep on Redis / SlowAPIMiddleware: {med['gk-redis'] / med['slowapi-base']:.2f}x",
        f"- gatekeep Redis round trips per request: {per_request['gk-redis']:.2f} "
        f"(commands clients sent, from MONITOR; nothing here pipelines), "
        f"scripts per request {scripts['gk-redis']:.2f} (EVALSHA + EVAL)",
        "",
        "Headers of the last response:",
        "",
    ]
    for name in ("gk-redis", "slowapi-asgi"):
        shown = [
            f"{k.decode()}: {v.decode()}"
            for k, v in headers[name]
            if b"ratelimit" in k.lower() or k.lower() == b"retry-after"
        ]
        lines.append(f"- {name}: `" + "`, `".join(shown) + "`")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        Path(__file__).with_name("last-middleware.md").write_text(text)
    if per_request["gk-redis"] != 1.0:
        print("gatekeep did not make exactly one Redis round trip per request", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Client CPU per session request against the physical floor (issue 12).

The floor of a server-side session request is the app alone plus the round trips
the session needs: one for a read-only request (the load), two for a read + write
request (load, save). Here that is the bare app called in-process plus that many
raw ``PING`` round trips on a socket of our own (no client library) to the same
Redis. Each request's CPU is ``time.process_time`` around it: the wait for Redis
is not counted, Redis's own work neither (it is another process).

Front doors, each beside its own floor:

  asgi    Starlette + gatekeep.sessions.asgi.SessionMiddleware; floor: the bare
          Starlette app + PINGs on an ``asyncio.open_connection`` socket
  wsgi    a plain WSGI app + gatekeep.sessions.wsgi.SessionMiddleware; floor: the
          plain app + PINGs on a blocking socket
  flask   Flask + gatekeep.flask_sessions.GatekeepSessionInterface; floor: the bare
          Flask app (no session interface of its own) + PINGs on a blocking socket
  django  Django's SessionMiddleware + SESSION_ENGINE="gatekeep.django.sessions";
          floor: the Django handler without middleware + PINGs on a blocking socket

Routes: ``/read`` reads two keys of the session, ``/write`` reads them and
increments a counter; every request carries the cookie of one existing session
(a user, a counter, a small cart). The floor's routes do the same on a plain dict.
One throwaway redis-server on a free port; floor and gatekeep batches interleave
round by round; the figure is the median over all requests of a variant.

    python benchmarks/bench_session_cpu.py [--rounds 20] [--n 200] [--doors asgi,wsgi]
    python benchmarks/bench_session_cpu.py --profile asgi/write   # cProfile, top 30
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import platform
import pstats
import statistics
import time
from importlib.metadata import version
from typing import Any

import redis
from _common import AsyncPing
from _inprocess import set_cookie
from _session_apps import (
    SyncPing,
    asgi_apps,
    asgi_call,
    django_apps,
    flask_apps,
    wsgi_apps,
    wsgi_call,
)

from gatekeep.sessions import SessionStore
from gatekeep.testing import ServerProcess, find_server

PATHS = ("/read", "/write")
DOORS = ("asgi", "wsgi", "flask", "django")
#: Redis commands clients send (INFO commandstats), to count round trips.
CLIENT_SENT = ("evalsha", "evalsha_ro", "eval", "eval_ro", "ping")
SCRIPTS = CLIENT_SENT[:4]


def commands(probe: redis.Redis) -> int:
    """The scripts and PINGs clients sent, and the session peek's round trips: its TIME
    goes plain (with HGETALL); every session script reads TIME once itself, so the TIME
    calls beyond the scripts' are the peeks'."""
    stats = probe.info("commandstats")
    calls = {c: stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in (*CLIENT_SENT, "time")}
    scripts = sum(calls[c] for c in SCRIPTS)
    return scripts + calls["ping"] + max(0, calls["time"] - scripts)


class Door:
    """One front door: its floor for each path and its gatekeep app, how to call them,
    the cookie (bytes for ASGI, str for WSGI)."""

    def __init__(
        self, name: str, floors: dict[str, Any], gk: Any, store: SessionStore, sync: bool
    ) -> None:
        self.name, self.floors, self.gk, self.store, self.sync = name, floors, gk, store, sync
        self.cookie: Any = None


async def call(door: Door, app: Any, path: str, cookie: Any) -> tuple[int, list[Any], float]:
    if door.sync:
        return wsgi_call(app, path, cookie)
    return await asgi_call(app, path, cookie)


async def prepare(door: Door, probe: redis.Redis) -> dict[str, float]:
    """Seed the session, check both variants answer, count round trips per request."""
    status, headers, _ = await call(door, door.gk, "/seed", None)
    assert status == 200, (door.name, status)
    door.cookie = set_cookie(headers)
    trips: dict[str, float] = {}
    for path in PATHS:
        for variant, app, cookie in (
            ("floor", door.floors[path], None),
            ("gatekeep", door.gk, door.cookie),
        ):
            for _ in range(3):
                status, _h, _ = await call(door, app, path, cookie)
                assert status == 200, (door.name, variant, path, status)
            before = commands(probe)
            for _ in range(50):
                await call(door, app, path, cookie)
            trips[f"{variant} {path}"] = (commands(probe) - before) / 50
    return trips


async def measure(
    doors: list[Door], rounds: int, n: int
) -> dict[tuple[str, str, str], list[float]]:
    samples: dict[tuple[str, str, str], list[float]] = {}
    for _round in range(rounds):
        for door in doors:
            for path in PATHS:
                for variant, app, cookie in (
                    ("floor", door.floors[path], None),
                    ("gatekeep", door.gk, door.cookie),
                ):
                    out = samples.setdefault((door.name, path, variant), [])
                    for _ in range(n):
                        out.append((await call(door, app, path, cookie))[2])
    return samples


async def build(names: list[str], url: str, port: int) -> tuple[list[Door], list[Any]]:
    doors, closers = [], []
    apinger = AsyncPing(port)
    await apinger.open()
    closers.append(apinger.aclose)
    spinger = SyncPing(port)
    closers.append(spinger.close)
    for name in names:
        if name == "asgi":
            floors, gk, store = asgi_apps(url, apinger)
            doors.append(Door(name, floors, gk, store, sync=False))
            closers.append(store.aclose)
        else:
            make = {"wsgi": wsgi_apps, "flask": flask_apps, "django": django_apps}[name]
            floors, gk, store = make(url, spinger)
            doors.append(Door(name, floors, gk, store, sync=True))
    return doors, closers


async def close_all(closers: list[Any]) -> None:
    for close in closers:
        result = close()
        if asyncio.iscoroutine(result):
            await result


async def run(args: argparse.Namespace, server: ServerProcess) -> str:
    probe = redis.Redis(port=server.port)
    doors, closers = await build(args.doors, server.url, server.port)
    trips = {door.name: await prepare(door, probe) for door in doors}
    samples = await measure(doors, args.rounds, args.n)
    await close_all(closers)
    server_version = probe.info("server")["redis_version"]
    probe.close()
    lines = [
        "| front door | request | floor CPU µs | gatekeep CPU µs | ratio | round trips floor / gatekeep |",
        "|---|---|---:|---:|---:|---|",
    ]
    for door in doors:
        for path in PATHS:
            f = statistics.median(samples[(door.name, path, "floor")]) * 1e6
            g = statistics.median(samples[(door.name, path, "gatekeep")]) * 1e6
            kind = "read-only" if path == "/read" else "read + write"
            t = trips[door.name]
            lines.append(
                f"| {door.name} | {kind} | {f:.1f} | {g:.1f} | **{g / f:.2f}x** | "
                f"{t[f'floor {path}']:g} / {t[f'gatekeep {path}']:g} |"
            )
    env = (
        f"Python {platform.python_version()}, redis-server {server_version}, redis-py "
        f"{version('redis')}, hiredis {_version('hiredis')}, itsdangerous "
        f"{version('itsdangerous')}, Starlette {_version('starlette')}, Flask "
        f"{_version('flask')}, Django {_version('django')}; {args.rounds} rounds x "
        f"{args.n} requests per variant, medians of per-request time.process_time; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    return "\n".join([*lines, "", env])


def _version(dist: str) -> str:
    try:
        return version(dist)
    except Exception:
        return "-"


async def profile(args: argparse.Namespace, server: ServerProcess) -> str:
    door_name, path = args.profile.split("/", 1)
    probe = redis.Redis(port=server.port)
    doors, closers = await build([door_name], server.url, server.port)
    door = doors[0]
    await prepare(door, probe)
    variant = door.floors["/" + path] if args.floor else door.gk
    cookie = None if args.floor else door.cookie
    for _ in range(200):
        await call(door, variant, "/" + path, cookie)
    prof = cProfile.Profile(time.process_time)  # CPU, not the wait for Redis
    prof.enable()
    for _ in range(args.n * 10):
        await call(door, variant, "/" + path, cookie)
    prof.disable()
    await close_all(closers)
    probe.close()
    if args.dump:
        prof.dump_stats(args.dump)
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).strip_dirs()
    stats.sort_stats(args.sort).print_stats(args.top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--n", type=int, default=200, help="requests per variant per round")
    parser.add_argument("--doors", default=",".join(DOORS), help="asgi,wsgi,flask,django")
    parser.add_argument("--profile", help="DOOR/read or DOOR/write: cProfile instead")
    parser.add_argument("--floor", action="store_true", help="profile the floor variant")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--dump", help="also write the cProfile stats to this file")
    args = parser.parse_args()
    args.doors = [d for d in args.doors.split(",") if d]
    unknown = set(args.doors) - set(DOORS)
    if unknown:
        parser.error(f"unknown front door(s): {', '.join(sorted(unknown))}")
    with ServerProcess.start(find_server("redis")) as server:
        if args.profile:
            print(asyncio.run(profile(args, server)))
        else:
            print(asyncio.run(run(args, server)))


if __name__ == "__main__":
    main()

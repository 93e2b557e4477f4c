"""The apps ``bench_session_cpu.py`` measures: each session front door beside its floors
(the bare app + raw ``PING`` round trips on a socket of our own, one for ``/read``, two
for ``/write``), and how to call them in-process. Not a benchmark itself; see
``bench_session_cpu.py``.

The apps are ``bench_sessions``' (ASGI) and ``_lean_apps``' (Flask, Django, the floors);
the plain WSGI app is here. A floor's routes find a plain dict holding the seeded
session where gatekeep's find the session.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from _common import AsyncPing, SyncPing
from _inprocess import WSGIApp, asgi_call_cpu, wsgi_call_cpu
from _lean_apps import (
    FLOOR_PINGS,
    AsyncFloor,
    SyncFloor,
    django_configure,
    django_handler,
    flask_app,
)
from bench_sessions import ROUTES, SECRET, SEED, gatekeep_app

from gatekeep import RedisBackend
from gatekeep.sessions import SessionStore

#: What every request carries beyond ``host`` and the cookie.
ASGI_HEADERS = ((b"user-agent", b"bench/1"), (b"accept", b"*/*"))
WSGI_HEADERS = {"HTTP_USER_AGENT": "bench/1", "HTTP_ACCEPT": "*/*"}
REMOTE_ADDR = "127.0.0.1"

#: A front door: its floor for each path, the app behind gatekeep, gatekeep's store.
Door = tuple[dict[str, Any], Any, SessionStore]


def floor_session() -> dict[str, Any]:
    """A copy of the seeded session (the floor's writes change the copy only)."""
    copy: dict[str, Any] = json.loads(json.dumps(SEED))
    return copy


async def asgi_call(app: Any, path: str, cookie: bytes | None) -> tuple[int, list[Any], float]:
    """One request; its status, response headers and the app's process CPU seconds."""
    return await asgi_call_cpu(app, path, cookie, ASGI_HEADERS)


def wsgi_call(app: WSGIApp, path: str, cookie: str | None) -> tuple[int, list[Any], float]:
    """One request; its status, response headers and the app's process CPU seconds."""
    return wsgi_call_cpu(app, path, cookie, WSGI_HEADERS, REMOTE_ADDR)


def sync_floors(app: WSGIApp, ping: SyncPing) -> dict[str, Any]:
    return {path: SyncFloor(app, ping, pings) for path, pings in FLOOR_PINGS.items()}


def asgi_apps(url: str, ping: AsyncPing) -> Door:
    from starlette.applications import Starlette

    bare, data = Starlette(routes=ROUTES), floor_session()
    floors = {p: AsyncFloor(bare, ping, n, session=data) for p, n in FLOOR_PINGS.items()}
    store = SessionStore(RedisBackend(url), prefix="bench-asgi")
    return floors, gatekeep_app(store), store


def plain_wsgi_app(get_session: Callable[[dict[str, Any]], Any]) -> WSGIApp:
    """The routes on a session found by ``get_session(environ)``, as JSON."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        s = get_session(environ)
        path = environ["PATH_INFO"]
        if path == "/seed":
            s.update(floor_session())
            out: dict[str, Any] = {}
        else:
            if path == "/write":
                s["n"] = s.get("n", 0) + 1
            out = {"user": s.get("user"), "n": s.get("n")}
        body = json.dumps(out).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def wsgi_apps(url: str, ping: SyncPing) -> Door:
    from gatekeep.sessions.wsgi import SessionMiddleware

    data = floor_session()
    floors = sync_floors(plain_wsgi_app(lambda environ: data), ping)
    store = SessionStore(RedisBackend(url), prefix="bench-wsgi")
    gk = SessionMiddleware(
        plain_wsgi_app(lambda environ: environ["gatekeep.session"]),
        secret_key=SECRET,
        store=store,
        https_only=False,
    )
    return floors, gk, store


def flask_apps(url: str, ping: SyncPing) -> Door:
    from gatekeep.flask_sessions import GatekeepSessionInterface

    floors = sync_floors(flask_app(floor=floor_session()).wsgi_app, ping)
    gk = flask_app(sessions=True)
    store = SessionStore(RedisBackend(url), prefix="bench-flask")
    GatekeepSessionInterface(store, https_only=False).init_app(gk)
    return floors, gk.wsgi_app, store


def django_apps(url: str, ping: SyncPing) -> Door:
    django_configure(url, floor=floor_session())
    from gatekeep.django.sessions import get_store

    floors = sync_floors(django_handler(), ping)
    gk = django_handler("django.contrib.sessions.middleware.SessionMiddleware")
    return floors, gk, get_store()

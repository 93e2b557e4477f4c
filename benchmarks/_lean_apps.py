"""The apps ``bench_lean.py`` calls in-process: each front door with gatekeep, with its
peer, bare, and as the floor (the bare app plus raw ``PING`` round trips, no client
library). The ASGI apps are ``bench_middleware``'s and ``bench_sessions``'; the WSGI
(Flask) and Django ones are here.

Routes everywhere: ``/`` (rate limits), ``/read`` (reads two session keys), ``/write``
(reads them and increments a counter), ``/seed`` (creates the session the others use:
a user, a counter, a three-item cart).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

import flask
from _common import AsyncPing, SyncPing
from _inprocess import WSGIApp
from _inprocess import set_cookie as set_cookie  # re-exported: bench_lean's names
from _inprocess import wsgi_call as wsgi_call
from _inprocess import wsgi_environ as environ  # noqa: F401
from bench_sessions import SECRET, SEED

#: Round trips a floor makes per session request: a read-only one loads, a read + write
#: one loads and saves.
FLOOR_PINGS = {"/read": 1, "/write": 2}

# -- ASGI -------------------------------------------------------------------------------


class AsyncFloor:
    """The app plus one raw round trip before it and, with ``pings=2``, one more when
    the response starts (where a session save would be). With ``session``, the app
    finds that dict in ``scope["session"]`` (where session middleware puts its session)."""

    def __init__(
        self, app: Any, ping: AsyncPing, pings: int, session: dict[str, Any] | None = None
    ) -> None:
        self.app, self.ping, self.pings, self.session = app, ping, pings, session

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.ping()
        if self.session is not None:
            scope["session"] = self.session
        if self.pings < 2:
            await self.app(scope, receive, send)
            return

        async def send_after_ping(message: Any) -> None:
            if message["type"] == "http.response.start":
                await self.ping()
            await send(message)

        await self.app(scope, receive, send_after_ping)


# -- WSGI -------------------------------------------------------------------------------


class SyncFloor:
    """The WSGI app plus ``pings`` raw round trips (one before it, one after)."""

    def __init__(self, app: WSGIApp, ping: SyncPing, pings: int) -> None:
        self.app, self.ping, self.pings = app, ping, pings

    def __call__(self, env: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        self.ping()
        body = self.app(env, start_response)
        if self.pings > 1:
            self.ping()
        return body


def flask_app(sessions: bool = False, floor: dict[str, Any] | None = None) -> flask.Flask:
    """With ``sessions``, the routes use Flask's session; without, ``floor`` (a new empty
    dict each request where there is none)."""
    app = flask.Flask("bench")
    app.config["SECRET_KEY"] = SECRET

    def session() -> Any:
        return flask.session if sessions else ({} if floor is None else floor)

    @app.get("/")
    def home() -> str:
        return "ok"

    @app.get("/read")
    def read() -> Any:
        s = session()
        return {"user": s.get("user"), "n": s.get("n")}

    @app.get("/write")
    def write() -> Any:
        s = session()
        s["n"] = s.get("n", 0) + 1
        return {"user": s.get("user"), "n": s["n"]}

    @app.get("/seed")
    def seed() -> Any:
        session().update(SEED)
        return {}

    return app


# -- Django -----------------------------------------------------------------------------


def django_configure(
    url: str, floor: dict[str, Any] | None = None, home_type: str | None = None
) -> None:
    """Settings for every Django handler of this process (once: Django's settings are
    process-wide); each handler picks its middleware with :func:`django_handler`. A
    request without session middleware uses ``floor`` (a new empty dict where there is
    none); ``/`` answers "ok" as ``home_type`` (None: Django's default, text/html)."""
    import django
    from django.conf import settings
    from django.http import HttpResponse, JsonResponse
    from django.urls import path

    def session(request: Any) -> Any:
        return getattr(request, "session", {} if floor is None else floor)

    def home(request: Any) -> Any:
        return HttpResponse("ok", content_type=home_type)

    def read(request: Any) -> Any:
        s = session(request)
        return JsonResponse({"user": s.get("user"), "n": s.get("n")})

    def write(request: Any) -> Any:
        s = session(request)
        s["n"] = s.get("n", 0) + 1
        return JsonResponse({"user": s.get("user"), "n": s["n"]})

    def seed(request: Any) -> Any:
        session(request).update(SEED)
        return JsonResponse({})

    urls = types.ModuleType("bench_lean_urls")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path("", home),
        path("read", read),
        path("write", write),
        path("seed", seed),
    ]
    sys.modules[urls.__name__] = urls
    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=urls.__name__,
        INSTALLED_APPS=["gatekeep.django"],
        DATABASES={},
        MIDDLEWARE=[],
        USE_TZ=True,
        SESSION_ENGINE="gatekeep.django.sessions",
        GATEKEEP={
            "sessions": {"url": url, "prefix": "bench-dj"},
            "ratelimit": {"default": "1000000/second", "backend": url, "prefix": "bench-dj"},
        },
    )
    django.setup()


def django_handler(*middleware: str) -> WSGIApp:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    with override_settings(MIDDLEWARE=list(middleware)):
        return WSGIHandler()  # loads its middleware now

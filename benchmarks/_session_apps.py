"""The apps ``bench_session_cpu.py`` measures: each session front door beside its floor
(the bare app + raw ``PING`` round trips on a socket of our own), and how to call them
in-process. Not a benchmark itself; see ``bench_session_cpu.py``."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from gatekeep import RedisBackend
from gatekeep.sessions import SessionStore

SECRET = "benchmark-secret-key-0123456789abcdef"
SEED = {"user": "alice", "n": 0, "cart": ["apple", "pear", "plum"]}
PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"


def floor_session() -> dict[str, Any]:
    return json.loads(json.dumps(SEED))


# -- raw round trips -------------------------------------------------------------------


class AsyncPing:
    """``PING`` round trips on an ``asyncio.open_connection`` socket."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def ping(self) -> None:
        assert self.reader is not None and self.writer is not None
        self.writer.write(PING)
        if await self.reader.readexactly(len(PONG)) != PONG:
            raise RuntimeError("not PONG")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


class SyncPing:
    """``PING`` round trips on a blocking socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def ping(self) -> None:
        self.sock.sendall(PING)
        got = b""
        while len(got) < len(PONG):
            chunk = self.sock.recv(len(PONG) - len(got))
            if not chunk:
                raise RuntimeError("connection closed")
            got += chunk
        if got != PONG:
            raise RuntimeError("not PONG")

    def close(self) -> None:
        self.sock.close()


# -- ASGI --------------------------------------------------------------------------------


class AsgiFloor:
    """The bare app plus one PING before it and, on /write, one when the response
    starts; the routes find a plain dict in ``scope["session"]``."""

    def __init__(self, app: Any, pinger: AsyncPing) -> None:
        self.app, self.pinger = app, pinger
        self.data = floor_session()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.pinger.ping()  # "load"
        scope["session"] = self.data
        if scope["path"] != "/write":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                await self.pinger.ping()  # "save"
            await send(message)

        await self.app(scope, receive, send_wrapper)


def asgi_apps(url: str, pinger: AsyncPing) -> tuple[Any, Any, SessionStore]:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from gatekeep.sessions.asgi import SessionMiddleware

    async def read(request: Request) -> JSONResponse:
        s = request.session
        return JSONResponse({"user": s.get("user"), "n": s.get("n")})

    async def write(request: Request) -> JSONResponse:
        s = request.session
        s["n"] = s.get("n", 0) + 1
        return JSONResponse({"user": s.get("user"), "n": s["n"]})

    async def seed(request: Request) -> JSONResponse:
        request.session.update(floor_session())
        return JSONResponse({})

    routes = [Route("/read", read), Route("/write", write), Route("/seed", seed)]
    floor = Starlette(routes=routes)
    floor.add_middleware(AsgiFloor, pinger=pinger)
    gk = Starlette(routes=routes)
    store = SessionStore(RedisBackend(url), prefix="bench-asgi")
    gk.add_middleware(SessionMiddleware, secret_key=SECRET, store=store, https_only=False)
    return floor, gk, store


def asgi_scope(path: str, cookie: bytes | None) -> dict[str, Any]:
    headers = [(b"host", b"bench"), (b"user-agent", b"bench/1"), (b"accept", b"*/*")]
    if cookie:
        headers.append((b"cookie", cookie))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("bench", 80),
    }


async def asgi_call(app: Any, path: str, cookie: bytes | None) -> tuple[int, list[Any], float]:
    """One request; its status, response headers and process CPU seconds."""
    start: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)

    scope = asgi_scope(path, cookie)
    t0 = time.process_time()
    await app(scope, receive, send)
    cpu = time.process_time() - t0
    return start["status"], list(start.get("headers", [])), cpu


def set_cookie_pair(headers: Iterable[tuple[Any, Any]]) -> bytes:
    for k, v in headers:
        k = k if isinstance(k, bytes) else k.encode("latin-1")
        v = v if isinstance(v, bytes) else v.encode("latin-1")
        if k.lower() == b"set-cookie":
            return v.split(b";", 1)[0]
    raise RuntimeError("no Set-Cookie")


# -- WSGI, Flask, Django -------------------------------------------------------------------


class SyncFloor:
    """A WSGI app plus one PING before it and, on /write, one at ``start_response``."""

    def __init__(self, app: Any, pinger: SyncPing) -> None:
        self.app, self.pinger = app, pinger

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.pinger.ping()  # "load"
        if environ["PATH_INFO"] != "/write":
            return self.app(environ, start_response)

        def wrapped(status: str, headers: Any, exc_info: Any = None) -> Any:
            self.pinger.ping()  # "save"
            return start_response(status, headers, exc_info)

        return self.app(environ, wrapped)


def plain_wsgi_app(get_session: Callable[[dict[str, Any]], Any]) -> Any:
    """Two routes on a session found by ``get_session(environ)``, as JSON."""

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


def wsgi_apps(url: str, pinger: SyncPing) -> tuple[Any, Any, SessionStore]:
    from gatekeep.sessions.wsgi import SessionMiddleware

    data = floor_session()
    floor = SyncFloor(plain_wsgi_app(lambda environ: data), pinger)
    store = SessionStore(RedisBackend(url), prefix="bench-wsgi")
    gk = SessionMiddleware(
        plain_wsgi_app(lambda environ: environ["gatekeep.session"]),
        secret_key=SECRET,
        store=store,
        https_only=False,
    )
    return floor, gk, store


def flask_apps(url: str, pinger: SyncPing) -> tuple[Any, Any, SessionStore]:
    from flask import Flask, jsonify, session

    from gatekeep.flask_sessions import GatekeepSessionInterface

    def make(get: Callable[[], Any]) -> Flask:
        app = Flask(f"bench_{id(get)}")

        @app.get("/read")
        def read() -> Any:
            s = get()
            return jsonify(user=s.get("user"), n=s.get("n"))

        @app.get("/write")
        def write() -> Any:
            s = get()
            s["n"] = s.get("n", 0) + 1
            return jsonify(user=s.get("user"), n=s["n"])

        @app.get("/seed")
        def seed() -> Any:
            get().update(floor_session())
            return jsonify()

        return app

    data = floor_session()
    bare = make(lambda: data)
    floor = SyncFloor(bare.wsgi_app, pinger)
    gk = make(lambda: session)
    gk.secret_key = SECRET
    store = SessionStore(RedisBackend(url), prefix="bench-flask")
    GatekeepSessionInterface(store, https_only=False).init_app(gk)
    return floor, gk.wsgi_app, store


#: Django's URLconf (this module is ROOT_URLCONF).
urlpatterns: list[Any] = []
_DJANGO_FLOOR_DATA = floor_session()


def django_apps(url: str, pinger: SyncPing) -> tuple[Any, Any, SessionStore]:
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.http import HttpRequest, JsonResponse
    from django.urls import path

    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=sys.modules[__name__],
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        USE_TZ=True,
        SESSION_ENGINE="gatekeep.django.sessions",
        GATEKEEP={"sessions": {"url": url, "prefix": "bench-django"}},
        LOGGING_CONFIG=None,
    )
    django.setup()

    def get(request: HttpRequest) -> Any:
        return getattr(request, "session", _DJANGO_FLOOR_DATA)

    def read(request: HttpRequest) -> JsonResponse:
        s = get(request)
        return JsonResponse({"user": s.get("user"), "n": s.get("n")})

    def write(request: HttpRequest) -> JsonResponse:
        s = get(request)
        s["n"] = s.get("n", 0) + 1
        return JsonResponse({"user": s.get("user"), "n": s["n"]})

    def seed(request: HttpRequest) -> JsonResponse:
        s = get(request)
        for k, v in floor_session().items():
            s[k] = v
        return JsonResponse({})

    urlpatterns[:] = [path("read", read), path("write", write), path("seed", seed)]
    floor = SyncFloor(WSGIHandler(), pinger)
    settings.MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
    gk = WSGIHandler()
    from gatekeep.django.sessions import get_store

    return floor, gk, get_store()


def wsgi_environ(path: str, cookie: bytes | None) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "bench",
        "HTTP_USER_AGENT": "bench/1",
        "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie:
        environ["HTTP_COOKIE"] = cookie.decode("latin-1")
    return environ


def wsgi_call(app: Any, path: str, cookie: bytes | None) -> tuple[int, list[Any], float]:
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
        got["status"], got["headers"] = status, headers
        return lambda data: None

    environ = wsgi_environ(path, cookie)
    t0 = time.process_time()
    result = app(environ, start_response)
    try:
        b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    cpu = time.process_time() - t0
    return int(got["status"].split()[0]), list(got["headers"]), cpu


# -- the run -------------------------------------------------------------------------------

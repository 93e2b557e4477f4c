"""Calling an ASGI or a WSGI app in-process, as the benchmarks do: one request's scope or
environ, the app called with it, what it answered. No network between client and app.
Every scope and environ is a new dict (apps and middleware write into them).

Each ``*_call`` has a ``*_call_cpu`` twin that also returns the process CPU seconds
(``time.process_time``) of the app call alone: the scope or environ is built before the
clock starts, the status and headers read after it stops. A clock read costs ~1.5 µs
on a small VM, so the untimed calls read none.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, AnyStr

#: The ASGI client of a request unless told otherwise.
LOOPBACK = ("127.0.0.1", 40000)
#: The REMOTE_ADDR of a WSGI request unless told otherwise (a documentation address).
REMOTE_ADDR = "203.0.113.9"

# -- ASGI ---------------------------------------------------------------------------------


#: What every scope holds; :func:`asgi_scope` copies it and sets the rest (cheaper than
#: building the dict: scopes are built inside timed loops).
_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": None,
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "root_path": "",
    "headers": None,
    "client": LOOPBACK,
    "server": ("bench", 80),
}


def asgi_scope(
    path: str = "/",
    cookie: bytes | None = None,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    client: tuple[str, int] = LOOPBACK,
) -> dict[str, Any]:
    """An HTTP GET scope: a ``host`` header, then ``headers``, then the cookie if any."""
    sent = [(b"host", b"bench")]
    if headers:
        sent += headers
    if cookie:
        sent.append((b"cookie", cookie))
    scope = _SCOPE.copy()
    scope["asgi"], scope["headers"], scope["client"] = {"version": "3.0"}, sent, client
    scope["path"], scope["raw_path"] = path, path.encode()
    return scope


async def asgi_receive() -> dict[str, Any]:
    """An ASGI ``receive``: an empty request body."""
    return {"type": "http.request", "body": b"", "more_body": False}


async def asgi_call(
    app: Any,
    path: str = "/",
    cookie: bytes | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> tuple[int, list[Any]]:
    """One request (:func:`asgi_scope`); its status and headers."""
    start: dict[str, Any] = {}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)

    await app(asgi_scope(path, cookie, headers=headers), asgi_receive, send)
    return start["status"], list(start.get("headers", []))


async def asgi_call_cpu(
    app: Any,
    path: str = "/",
    cookie: bytes | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> tuple[int, list[Any], float]:
    """:func:`asgi_call`, and the CPU seconds of the app call alone."""
    start: dict[str, Any] = {}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)

    scope = asgi_scope(path, cookie, headers=headers)
    t0 = time.process_time()
    await app(scope, asgi_receive, send)
    cpu = time.process_time() - t0
    return start["status"], list(start.get("headers", [])), cpu


# -- WSGI ---------------------------------------------------------------------------------

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


#: What every environ holds; :func:`wsgi_environ` copies it (a copy is cheaper than
#: building the dict: the environ is built inside timed loops).
_ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/",
    "QUERY_STRING": "",
    "SERVER_NAME": "bench",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": REMOTE_ADDR,
    "HTTP_HOST": "bench",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.input": None,
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def wsgi_environ(
    path: str = "/",
    cookie: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    remote_addr: str = REMOTE_ADDR,
) -> dict[str, Any]:
    """A GET environ: ``HTTP_HOST``, then ``headers`` (``HTTP_*`` keys), then the cookie."""
    env = _ENVIRON.copy()
    env["PATH_INFO"], env["REMOTE_ADDR"], env["wsgi.input"] = path, remote_addr, io.BytesIO(b"")
    if headers:
        env.update(headers)
    if cookie:
        env["HTTP_COOKIE"] = cookie
    return env


def _write(data: bytes) -> None:
    """The ``write`` callable ``start_response`` returns (nothing here writes)."""


class WsgiResponse:
    """A ``start_response`` (:meth:`start_response`) that keeps the status and headers."""

    __slots__ = ("headers", "status")

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[Any] = []

    def start_response(
        self, status: str, headers: list[Any], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        self.status, self.headers = status, headers
        return _write

    @property
    def code(self) -> int:
        return int(self.status.split()[0])


def drain(body: Iterable[bytes]) -> None:
    """Read a WSGI response body to its end and close it (as a server must)."""
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def wsgi_call(
    app: WSGIApp,
    path: str = "/",
    cookie: str | None = None,
    headers: Mapping[str, str] | None = None,
    remote_addr: str = REMOTE_ADDR,
) -> tuple[str, list[Any]]:
    """One request (:func:`wsgi_environ`); its status line and headers, the body read
    and closed."""
    response = WsgiResponse()
    request = wsgi_environ(path, cookie, headers=headers, remote_addr=remote_addr)
    drain(app(request, response.start_response))
    return response.status, response.headers


def wsgi_call_cpu(
    app: WSGIApp,
    path: str = "/",
    cookie: str | None = None,
    headers: Mapping[str, str] | None = None,
    remote_addr: str = REMOTE_ADDR,
) -> tuple[int, list[Any], float]:
    """:func:`wsgi_call` with the status code, and the CPU seconds of the app call and
    its body's reading alone."""
    response = WsgiResponse()
    request = wsgi_environ(path, cookie, headers=headers, remote_addr=remote_addr)
    t0 = time.process_time()
    drain(app(request, response.start_response))
    cpu = time.process_time() - t0
    return response.code, response.headers, cpu


# -- both ---------------------------------------------------------------------------------


def set_cookie(headers: Iterable[tuple[AnyStr, AnyStr]]) -> AnyStr:
    """The ``name=value`` of the first ``Set-Cookie`` among response headers (ASGI's
    bytes or WSGI's str pairs, returned as given)."""
    for name, value in headers:
        if name.lower() in (b"set-cookie", "set-cookie"):
            return value.split(b";" if isinstance(value, bytes) else ";", 1)[0]
    raise RuntimeError("no Set-Cookie")

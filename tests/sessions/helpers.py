"""Raw ASGI / WSGI calls for the session tests: no network, no test client."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    set_cookies: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def cookie(self, name: str = "session") -> str | None:
        """The value a Set-Cookie gave ``name`` ('' when deleted), or None if not set."""
        for c in self.set_cookies:
            k, _, rest = c.partition("=")
            if k == name:
                return rest.split(";", 1)[0]
        return None


def scope(path: str = "/", cookies: list[bytes] | bytes | str | None = None) -> dict[str, Any]:
    headers = [(b"host", b"testserver")]
    if isinstance(cookies, str):
        cookies = cookies.encode("latin-1")
    if isinstance(cookies, bytes):
        cookies = [cookies]
    for c in cookies or []:
        headers.append((b"cookie", c))
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
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }


async def asgi_call(app: Any, path: str = "/", cookies: Any = None) -> Response:
    """One raw ASGI request: no network, no test client."""
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope(path, cookies), receive, send)
    start = messages[0]
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return Response(
        start["status"], headers, body, [v for k, v in headers if k.lower() == "set-cookie"]
    )


def wsgi_call(app: Any, path: str = "/", cookie: str | None = None) -> Response:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "t",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        got["status"], got["headers"] = status, headers
        return lambda data: None

    body = b"".join(app(environ, start_response))
    headers = got["headers"]
    return Response(
        int(got["status"].split()[0]),
        headers,
        body,
        [v for k, v in headers if k.lower() == "set-cookie"],
    )

"""Behind a unix socket (nginx -> uvicorn --uds): a real uvicorn, a real socket."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gatekeep.ratelimit import ASGIRequest, TrustedProxies, client_ip
from gatekeep.ratelimit.asgi import RateLimitMiddleware
from gatekeep.ratelimit.ip import UNIX_PEER


async def whoami(request: Request) -> JSONResponse:
    scope = request.scope
    return JSONResponse(
        {
            "client": scope.get("client"),
            "server": scope.get("server"),
            "key": client_ip(trusted=["unix"])(ASGIRequest(scope)),
        }
    )


@contextmanager
def _serve(app: Any, uds: str) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, uds=uds, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start on the unix socket")
        time.sleep(0.02)
    try:
        yield uds
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def socket_dir() -> Iterator[str]:
    # AF_UNIX paths are short (108 bytes): not under pytest's long tmp_path
    with tempfile.TemporaryDirectory(prefix="gk-") as d:
        yield d


def _app(trusted: list[str]) -> Any:
    inner = Starlette(routes=[Route("/", whoami)])
    return RateLimitMiddleware(inner, default="2/minute", key=client_ip(trusted=trusted))


@pytest.mark.parametrize("trusted", [["unix"], []], ids=["unix-trusted", "untrusted"])
def test_uvicorn_uds_peer(socket_dir: str, trusted: list[str]) -> None:
    uds = os.path.join(socket_dir, "app.sock")
    with (
        _serve(_app(trusted), uds) as path,
        httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://app") as c,
    ):

        def get(client_addr: str) -> httpx.Response:
            return c.get("/", headers={"x-forwarded-for": f"198.51.100.1, {client_addr}"})

        first = get("203.0.113.1")
        info = first.json()
        # what uvicorn gives for a unix-socket peer: no client, server = [path, None]
        assert info["client"] is None and info["server"] == [path, None]
        assert info["key"] == "ip:203.0.113.1"  # the app's own key function agrees
        statuses = [
            first.status_code,
            get("203.0.113.1").status_code,
            get("203.0.113.1").status_code,
            get("203.0.113.2").status_code,
        ]
        if trusted:  # each client behind the proxy has its own budget
            assert statuses == [200, 200, 429, 200]
        else:  # every client is the socket: one budget for all
            assert statuses == [200, 200, 429, 429]


def test_unix_peer_without_header_or_with_junk_is_the_socket() -> None:
    proxies = TrustedProxies(["unix", "10.0.0.0/8"])
    assert proxies.client(UNIX_PEER, []) == "unix"
    assert proxies.client(UNIX_PEER, ["garbage"]) == "unix"
    # trusted hops are walked over, from the right, as for an address peer
    assert proxies.client(UNIX_PEER, ["1.1.1.1, 203.0.113.9, 10.0.0.7"]) == "203.0.113.9"
    # not trusted: the header is ignored
    assert TrustedProxies(["10.0.0.0/8"]).client(UNIX_PEER, ["203.0.113.9"]) == "unix"
    assert "unix" in repr(proxies)


def test_only_a_unix_server_makes_a_unix_peer() -> None:
    def peer(scope: dict[str, Any]) -> str | None:
        return ASGIRequest({"type": "http", **scope}).peer

    assert peer({"client": None, "server": ["/run/app.sock", None]}) == UNIX_PEER
    assert peer({"client": None, "server": ["127.0.0.1", 8000]}) is None
    assert peer({}) is None
    assert peer({"client": ["203.0.113.5", 4000], "server": ["/s", None]}) == "203.0.113.5"

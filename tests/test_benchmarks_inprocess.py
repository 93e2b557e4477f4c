"""The benchmarks' in-process request plumbing (``benchmarks/_inprocess.py``): every
request gets its own scope / environ (they are copied from a template), carrying what
the benchmark asked for."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

# loaded from its file: benchmarks/ is not a package, and stays off sys.path
_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "_inprocess.py"
_SPEC = importlib.util.spec_from_file_location("gatekeep_bench_inprocess", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
inprocess = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = inprocess
_SPEC.loader.exec_module(inprocess)


def test_each_scope_is_its_own_and_carries_headers_then_cookie():
    extra = ((b"user-agent", b"bench/1"),)
    first = inprocess.asgi_scope("/read", b"s=1", headers=extra, client=("203.0.113.9", 5000))
    second = inprocess.asgi_scope()
    assert first["headers"] == [
        (b"host", b"bench"),
        (b"user-agent", b"bench/1"),
        (b"cookie", b"s=1"),
    ]
    assert (first["path"], first["raw_path"], first["client"]) == (
        "/read",
        b"/read",
        ("203.0.113.9", 5000),
    )
    assert (second["path"], second["headers"], second["client"]) == (
        "/",
        [(b"host", b"bench")],
        inprocess.LOOPBACK,
    )
    first["asgi"]["spec_version"] = "2.3"  # an app writing into its scope
    first["state"] = {}
    assert "spec_version" not in second["asgi"] and "state" not in inprocess.asgi_scope()
    assert first["headers"] is not second["headers"]


def test_each_environ_is_its_own_with_a_fresh_body():
    first = inprocess.wsgi_environ(
        "/write", "s=1", headers={"HTTP_ACCEPT": "*/*"}, remote_addr="127.0.0.1"
    )
    second = inprocess.wsgi_environ()
    assert (first["PATH_INFO"], first["HTTP_COOKIE"], first["HTTP_ACCEPT"]) == (
        "/write",
        "s=1",
        "*/*",
    )
    assert (first["REMOTE_ADDR"], second["REMOTE_ADDR"]) == ("127.0.0.1", inprocess.REMOTE_ADDR)
    assert "HTTP_COOKIE" not in second and "HTTP_ACCEPT" not in second
    assert second["PATH_INFO"] == "/"
    first["wsgi.input"].read()
    assert first["wsgi.input"] is not second["wsgi.input"]


def test_calls_return_status_headers_and_the_cookie():
    closed: list[bool] = []

    class Body(list):  # type: ignore[type-arg]
        def close(self) -> None:
            closed.append(True)

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("201 Created", [("Set-Cookie", f"s={environ['PATH_INFO']}; Path=/")])
        return Body([b"ok"])

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "http.request"
        cookie = dict(scope["headers"]).get(b"cookie", b"-")
        await send({"type": "http.response.start", "status": 202, "headers": [(b"x", cookie)]})
        await send({"type": "http.response.body", "body": b""})

    status, headers = inprocess.wsgi_call(wsgi_app, "/a")
    assert (status, inprocess.set_cookie(headers), closed) == ("201 Created", "s=/a", [True])
    code, _, cpu = inprocess.wsgi_call_cpu(wsgi_app, "/b")
    assert code == 201 and cpu >= 0
    assert asyncio.run(inprocess.asgi_call(asgi_app, "/", b"k=v")) == (202, [(b"x", b"k=v")])
    code, headers, cpu = asyncio.run(inprocess.asgi_call_cpu(asgi_app))
    assert (code, headers) == (202, [(b"x", b"-")]) and cpu >= 0
    assert inprocess.set_cookie([(b"set-cookie", b"id=7; HttpOnly")]) == b"id=7"
    with pytest.raises(RuntimeError):
        inprocess.set_cookie([("Content-Type", "text/plain")])

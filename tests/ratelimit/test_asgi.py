"""The ASGI middleware, driven in-process with httpx, over every backend."""

from __future__ import annotations

import json
import warnings
from typing import Any

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from gatekeep import MemoryBackend, RedisBackend
from gatekeep.ratelimit import Denial, RateLimitPolicy, Rule, client_ip, header, user
from gatekeep.ratelimit.asgi import RateLimitMiddleware

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx in its test client
    from starlette.testclient import TestClient


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def ws_echo(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("hi")
    await ws.close()


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/", hello),
            Route("/x", hello),
            Route("/y", hello),
            Route("/login", hello, methods=["POST"]),
            Route("/health", hello),
            WebSocketRoute("/ws", ws_echo),
        ]
    )


def client(app: Any, peer: str = "203.0.113.5") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_default_limit_headers_and_429(abackend: Any, prefix: str) -> None:
    app = RateLimitMiddleware(
        starlette_app(), default="3/minute", backend=abackend, prefix=prefix, legacy_headers=True
    )
    async with client(app) as c:
        statuses = []
        for _ in range(4):
            r = await c.get("/")
            statuses.append(r.status_code)
        assert statuses == [200, 200, 200, 429]
        assert r.headers["ratelimit-policy"] == '"default";q=3;w=60'
        assert r.headers["ratelimit"].startswith('"default";r=0;t=')
        assert 1 <= int(r.headers["retry-after"]) <= 20
        assert r.headers["x-ratelimit-limit"] == "3"
        assert r.headers["x-ratelimit-remaining"] == "0"
        assert r.json()["error"] == "rate_limited"
        assert r.json()["retry_after"] == int(r.headers["retry-after"])
        # another client has its own budget
        async with client(app, peer="203.0.113.6") as other:
            r = await other.get("/")
            assert r.status_code == 200
            assert r.headers["ratelimit"].startswith('"default";r=2;')


async def test_rules_together_all_or_nothing(abackend: Any, prefix: str) -> None:
    rules = [Rule("2/minute", "/x", name="x"), Rule("5/minute", "/**", name="global")]
    app = RateLimitMiddleware(starlette_app(), rules=rules, backend=abackend, prefix=prefix)
    async with client(app) as c:
        assert [(await c.get("/x")).status_code for _ in range(3)] == [200, 200, 429]
        r = await c.get("/y")
        # the denied /x spent nothing from "global": 5 - 2 - 1 = 2 remain
        assert r.status_code == 200
        assert r.headers["ratelimit-policy"] == '"global";q=5;w=60'
        assert r.headers["ratelimit"].startswith('"global";r=2;')
        r = await c.get("/x")
        assert r.headers["ratelimit-policy"] == '"x";q=2;w=60, "global";q=5;w=60'
        assert r.status_code == 429


async def test_group_shares_a_counter_and_exemptions(abackend: Any, prefix: str) -> None:
    rules = [Rule("2/minute", ["/x", "/y"], name="xy")]
    app = RateLimitMiddleware(
        starlette_app(),
        rules=rules,
        default="100/minute",
        exempt=["/health"],
        backend=abackend,
        prefix=prefix,
    )
    async with client(app) as c:
        assert (await c.get("/x")).status_code == 200
        assert (await c.get("/y")).status_code == 200
        assert (await c.get("/x")).status_code == 429
        assert (await c.get("/")).status_code == 200  # the default still has room
        for _ in range(3):
            r = await c.get("/health")
            assert r.status_code == 200 and "ratelimit" not in r.headers


async def test_one_round_trip_for_rules_with_different_keys(server: Any, prefix: str) -> None:
    backend = RedisBackend(server.url)
    rules = [
        Rule("10/minute", "/x", name="per-ip"),
        Rule("10/minute; 50/hour", "/x", name="per-key", key=header("x-api-key")),
        Rule("100/minute", "/**", name="global"),
    ]
    app = RateLimitMiddleware(starlette_app(), rules=rules, backend=backend, prefix=prefix)
    stats = redis.Redis.from_url(server.url)
    try:
        async with client(app) as c:
            await c.get("/x", headers={"x-api-key": "k"})  # loads the script
            before = stats.info("commandstats")
            for _ in range(5):
                r = await c.get("/x", headers={"x-api-key": "k"})
                assert r.status_code == 200
            after = stats.info("commandstats")
    finally:
        stats.close()
        await backend.aclose()
    calls = {k: after[k]["calls"] - before.get(k, {"calls": 0})["calls"] for k in after}
    assert calls.get("cmdstat_evalsha") == 5
    assert calls.get("cmdstat_eval", 0) == 0
    assert r.headers["ratelimit"].count(";r=") == 4  # four limits, one script call each


async def test_key_none_skips_rule_and_user_key(prefix: str) -> None:
    async def set_user(scope: Any, receive: Any, send: Any) -> None:
        class U:
            is_authenticated = True
            identity = "alice"

        if scope["type"] == "http" and scope["path"] == "/x":
            scope["user"] = U()
        await mw(scope, receive, send)

    mw = RateLimitMiddleware(starlette_app(), rules=[Rule("1/minute", "/**", key=user())])
    async with client(set_user) as c:
        assert [(await c.get("/x")).status_code for _ in range(2)] == [200, 429]
        # anonymous: the per-user rule does not apply, and there is no default
        assert [(await c.get("/y")).status_code for _ in range(3)] == [200, 200, 200]


async def test_async_key_function() -> None:
    async def tenant(request: Any) -> str | None:
        return request.header("x-tenant")

    app = RateLimitMiddleware(starlette_app(), default="1/minute", key=tenant)
    async with client(app) as c:
        assert (await c.get("/", headers={"x-tenant": "a"})).status_code == 200
        assert (await c.get("/", headers={"x-tenant": "a"})).status_code == 429
        assert (await c.get("/", headers={"x-tenant": "b"})).status_code == 200


async def test_shadow_mode_counts_and_never_blocks() -> None:
    app = RateLimitMiddleware(starlette_app(), default="2/minute", shadow=True)
    async with client(app) as c:
        statuses = [(await c.get("/")).status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert app.policy.stats.allowed == 2 and app.policy.stats.shadow_denied == 3


async def test_custom_deny_as_denial_and_as_response() -> None:
    def as_denial(request: Any, decision: Any) -> Denial:
        return Denial(429, (("Content-Type", "text/plain"), ("Retry-After", "99")), b"slow down")

    app = RateLimitMiddleware(starlette_app(), default="1/minute", deny=as_denial)
    async with client(app) as c:
        await c.get("/")
        r = await c.get("/")
    assert (r.status_code, r.text, r.headers["retry-after"]) == (429, "slow down", "99")
    assert "ratelimit" in r.headers

    def as_response(request: Any, decision: Any) -> Response:
        return JSONResponse({"wait": decision.retry_after_seconds}, status_code=429)

    app = RateLimitMiddleware(starlette_app(), default="1/minute", deny=as_response)
    async with client(app) as c:
        await c.get("/")
        r = await c.get("/")
    assert r.status_code == 429 and r.json()["wait"] == int(r.headers["retry-after"])


@pytest.mark.parametrize(("on_error", "status"), [("allow", 200), ("deny", 503)])
async def test_backend_errors_never_500(on_error: str, status: int) -> None:
    dead = RedisBackend("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    app = RateLimitMiddleware(starlette_app(), default="1/minute", backend=dead, on_error=on_error)
    try:
        async with client(app) as c:
            for _ in range(2):
                r = await c.get("/")
                assert r.status_code == status
    finally:
        await dead.aclose()
    assert app.policy.stats.errors == 2
    if status == 503:
        assert r.headers["retry-after"] == "1"


async def test_failing_key_function_is_an_error_not_a_500() -> None:
    def broken(request: Any) -> str:
        raise RuntimeError("bug in user code")

    app = RateLimitMiddleware(starlette_app(), default="1/minute", key=broken)
    async with client(app) as c:
        assert (await c.get("/")).status_code == 200


async def test_lifespan_and_other_scopes_pass_through() -> None:
    seen = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    app = RateLimitMiddleware(inner, default="1/second")
    await app({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await app({"type": "something-else"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "something-else"]


def test_websocket_limited_at_connect() -> None:
    app = RateLimitMiddleware(starlette_app(), default="1/minute")
    # Not `with TestClient(app)`: no lifespan is needed, and a Starlette before 0.46
    # leaves the lifespan's memory streams open (anyio 4.4+ warns when they are collected).
    tc = TestClient(app)
    with tc.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "hi"
    from starlette.testclient import WebSocketDenialResponse

    # Starlette's test client supports the websocket.http.response extension
    with pytest.raises(WebSocketDenialResponse) as info, tc.websocket_connect("/ws"):
        pass
    assert info.value.status_code == 429
    assert info.value.headers["retry-after"]


async def test_websocket_close_without_response_extension() -> None:
    app = RateLimitMiddleware(starlette_app(), default="1/minute")
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "headers": [],
        "client": ("1.2.3.4", 1),
        "extensions": {},
    }
    await app(scope, receive, send)  # allowed: the app accepts
    assert sent[0]["type"] == "websocket.accept"
    sent.clear()
    await app(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "rate limited"}]


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="Malformed rate"):
        RateLimitMiddleware(starlette_app(), default="ten per fortnight")
    with pytest.raises(TypeError, match="either policy"):
        RateLimitMiddleware(starlette_app(), policy=RateLimitPolicy(), default="1/second")
    with pytest.raises(TypeError, match="ASGI application"):
        RateLimitMiddleware(None, default="1/second")  # type: ignore[arg-type]


_hdr = st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    xff=_hdr,
    fwd=_hdr,
    key=_hdr,
    peer=st.one_of(st.none(), st.text(max_size=40)),
    path=st.text(max_size=30),
)
async def test_malformed_headers_never_500(
    xff: bytes, fwd: bytes, key: bytes, peer: str | None, path: str
) -> None:
    policy = RateLimitPolicy(
        [Rule("100/minute", "/**", name="api", key=header("x-api-key"))],
        key=client_ip(trusted=["0.0.0.0/0", "::/0"]),
        default="1/hour",
        backend=MemoryBackend(),
    )
    app = RateLimitMiddleware(starlette_app(), policy=policy)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/" + path,
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "headers": [(b"x-forwarded-for", xff), (b"forwarded", fwd), (b"x-api-key", key)],
        "client": None if peer is None else (peer, 1),
        "server": ("t", 80),
        "http_version": "1.1",
    }
    await app(scope, receive, send)
    assert sent[0]["status"] in (200, 404)
    assert policy.stats.errors == 0
    for name, value in sent[0]["headers"]:
        if name == b"ratelimit":
            assert value.startswith(b'"api";r=')


def test_denial_body_is_json() -> None:
    from gatekeep.ratelimit.headers import default_denial

    d = default_denial(429, 7)
    assert json.loads(d.body) == {
        "error": "rate_limited",
        "detail": "Too Many Requests",
        "retry_after": 7,
    }


async def test_custom_json_denial():
    from gatekeep.ratelimit import denial_json

    def deny(request, decision):
        return denial_json(
            403, {"why": "slow down", "remaining": decision.remaining}, [("X-Reason", "quota")]
        )

    app = RateLimitMiddleware(starlette_app(), default="1/minute", deny=deny)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        assert (await client.get("/")).status_code == 200
        r = await client.get("/")
    assert r.status_code == 403 and r.json() == {"why": "slow down", "remaining": 0}
    assert r.headers["x-reason"] == "quota" and int(r.headers["retry-after"]) >= 1

"""``gatekeep inspect`` reads every kind of key gatekeep writes, read-only: a Limiter's,
the middleware's (with its ``:<rule>`` segment), FastAPI routes', sessions' and
their users' indexes."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
import redis
from fastapi import Depends, FastAPI

from gatekeep import RedisBackend
from gatekeep.cli import main
from gatekeep.cli.inspect_cmd import parse_key
from gatekeep.fastapi import RateLimit
from gatekeep.ratelimit import RateLimitPolicy, Rule
from gatekeep.ratelimit.asgi import RateLimitMiddleware
from gatekeep.sessions import SessionStore

pytestmark = pytest.mark.redis


def inspect(*argv: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    rc = main(["inspect", *argv, "--json"], out=out)
    return rc, json.loads(out.getvalue())


def _keys(client: redis.Redis, prefix: str) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(match=f"gk:{prefix}:*"))


def _read_only(client: redis.Redis, key: str, url: str) -> dict[str, Any]:
    before = client.dump(key)
    rc, info = inspect(key, "--url", url)
    assert rc == 0, info
    assert client.dump(key) == before
    return info


def test_parse_key_reads_the_rule_segment() -> None:
    lk = parse_key("gk:app:{ip:1.2.3.4}:GET /a:b/{id}:tb:3/60000000")
    assert lk is not None
    assert (lk.app, lk.name, lk.rule, str(lk.rate)) == (
        "app",
        "ip:1.2.3.4",
        "GET /a:b/{id}",
        "3/1m",
    )
    # a name that ends like a rate is still read up to the last algorithm and rate
    lk = parse_key("gk:{k}:x:tb:5/1000000:gcra:2/1000000b4")
    assert lk is not None and lk.rule == "x:tb:5/1000000" and lk.algorithm.name == "gcra"
    plain = parse_key("gk:{k}:tb:10/1000000")  # a Limiter's key has no rule
    assert plain is not None and plain.rule is None


async def test_inspect_middleware_rule_and_default_keys(server: Any, prefix: str) -> None:
    backend = RedisBackend(server.url)
    app = FastAPI()

    @app.post("/login")
    async def login() -> str:
        return "in"

    @app.get("/items/{item_id}", dependencies=[Depends(RateLimit("3/minute"))])
    async def item(item_id: int) -> int:
        return item_id

    wrapped = RateLimitMiddleware(
        app,
        backend=backend,
        prefix=prefix,
        default="100/minute",
        rules=[Rule("5/minute", "POST /login", name="login")],
    )
    transport = httpx.ASGITransport(app=wrapped, client=("203.0.113.7", 1))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for _ in range(2):
                await c.post("/login")
            await c.get("/items/1")
            await c.get("/other")
    finally:
        await backend.aclose()
        backend.close()
    client = redis.Redis.from_url(server.url)
    keys = _keys(client, prefix)
    assert len(keys) == 3, keys
    seen = {}
    for key in keys:
        lim = _read_only(client, key, server.url)["limiter"]
        assert lim is not None and lim["key"] == "ip:203.0.113.7", key
        seen[lim["rule"]] = (lim["rate"], lim["remaining"])
    assert seen == {
        "login": ("5/1m", 3),
        "default": ("100/1m", 99),
        "GET /items/{item_id}": ("3/1m", 2),
    }
    client.close()


async def test_inspect_fastapi_route_key_without_middleware(server: Any, prefix: str) -> None:
    backend = RedisBackend(server.url)
    app = FastAPI()
    long_path = "/" + "segment/" * 10 + "{item_id}"

    @app.get(
        long_path,
        dependencies=[
            Depends(RateLimit("4/minute", policy=RateLimitPolicy(backend=backend, prefix=prefix)))
        ],
    )
    async def item(item_id: int) -> int:
        return item_id

    transport = httpx.ASGITransport(app=app, client=("203.0.113.8", 1))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get(long_path.replace("{item_id}", "1"))).status_code == 200
    finally:
        await backend.aclose()
        backend.close()
    client = redis.Redis.from_url(server.url)
    [key] = _keys(client, prefix)
    lim = _read_only(client, key, server.url)["limiter"]
    # a long route's counter: a readable start and a digest
    assert lim["rule"].startswith("GET /segment/") and "#" in lim["rule"]
    assert (lim["rate"], lim["remaining"], lim["next_request"]) == ("4/1m", 3, "allowed")
    client.close()


def test_inspect_session_and_user_index_keys(server: Any, prefix: str) -> None:
    backend = RedisBackend(server.url)
    store = SessionStore(
        backend, prefix=prefix, idle_timeout=600, absolute_timeout=3600, metrics=None
    )
    session = store.create({"n": 1}, user_id="alice")
    store.create({"n": 2}, user_id="alice")
    client = redis.Redis.from_url(server.url)
    info = _read_only(client, store.key(session.id), server.url)
    assert info["session"]["state"] == "live"
    info = _read_only(client, store.user_key("alice"), server.url)
    assert info["session_index"] == {"user": "alice", "sessions": 2}
    # and in a listing
    out = io.StringIO()
    assert main(["inspect", "--pattern", f"gk:{prefix}:u:*", "--url", server.url], out=out) == 0
    assert "session index, 2 session(s)" in out.getvalue()
    backend.close()
    client.close()

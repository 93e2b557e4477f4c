"""``Rule(..., block=...)``: a penalty block per rule, over every backend; the headers and
``Retry-After`` say when it ends; rules without a block are left alone."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gatekeep import Block
from gatekeep.ratelimit import Rule, header
from gatekeep.ratelimit.asgi import RateLimitMiddleware


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.5", 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def app_with(rules: list[Rule], backend: Any, prefix: str) -> RateLimitMiddleware:
    routes = [Route("/login", hello, methods=["POST"]), Route("/x", hello)]
    return RateLimitMiddleware(
        Starlette(routes=routes), rules=rules, backend=backend, prefix=prefix
    )


async def test_a_rule_blocks_after_a_denial(abackend: Any, prefix: str) -> None:
    rules = [
        Rule("2/minute", "POST /login", name="login", block=[600, 3600]),
        Rule("100/minute", "/**", name="global"),
    ]
    app = app_with(rules, abackend, prefix)
    async with client(app) as c:
        assert [(await c.post("/login")).status_code for _ in range(3)] == [200, 200, 429]
        r = await c.post("/login")  # blocked: the block's end, not the limit's refill
        assert r.status_code == 429
        assert 599 <= int(r.headers["retry-after"]) <= 600
        assert r.json()["retry_after"] == int(r.headers["retry-after"])
        assert r.headers["ratelimit"].startswith('"login";r=0;t=6')
        assert (await c.get("/x")).status_code == 200  # the global rule has no block


async def test_each_rule_has_its_own_block_key(abackend: Any, prefix: str) -> None:
    rules = [
        Rule("1/minute", "/x", name="per-key", key=header("x-api-key"), block=Block(120)),
        Rule("5/minute", "/x", name="per-ip"),
    ]
    app = app_with(rules, abackend, prefix)
    async with client(app) as c:
        assert (await c.get("/x", headers={"x-api-key": "a"})).status_code == 200
        r = await c.get("/x", headers={"x-api-key": "a"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) == 120
        assert (await c.get("/x", headers={"x-api-key": "b"})).status_code == 200
        r = await c.get("/x", headers={"x-api-key": "a"})
        assert r.status_code == 429 and 119 <= int(r.headers["retry-after"]) <= 120
        # the denials spent nothing from per-ip: 5 - 2 allowed = 3 left
        r = await c.get("/x", headers={"x-api-key": "c"})
        assert r.status_code == 200 and '"per-ip";r=2;' in r.headers["ratelimit"]


def test_a_bad_block_is_a_start_up_error() -> None:
    with pytest.raises(ValueError, match=r"rule 'login'.*366 days"):
        Rule("1/second", "/login", name="login", block=-1)


def test_every_front_door_takes_block() -> None:
    """Flask / Django view decorators (views.limit), FastAPI's RateLimit and limit(),
    and Django's settings dicts build their rules with it."""
    from gatekeep.django.conf import _rule
    from gatekeep.fastapi import RateLimit
    from gatekeep.ratelimit.views import limit, view_rules

    @limit("1/minute", block=[30, 300])
    def view() -> None: ...

    assert view_rules(view)[0].block == Block([30, 300])
    dependency = RateLimit("1/minute", block=30)
    assert dependency.rule.block == dependency.route_rule("GET /x").block == Block(30)
    assert _rule({"limits": "1/minute", "path": "/login", "block": 60}).block == Block(60)


def test_the_middleware_s_denial_cache_can_be_turned_off(server: Any) -> None:
    from gatekeep import RedisBackend
    from gatekeep.ratelimit import RateLimitPolicy

    backend = RedisBackend(server.url)
    assert RateLimitPolicy(backend=backend).limiter.denials is not None
    assert RateLimitPolicy(backend=backend, denial_cache=False).limiter.denials is None
    backend.close()


async def test_a_blocked_client_costs_redis_nothing_more(server: Any, prefix: str) -> None:
    """Behind the middleware too: once Redis has blocked the key, its requests are
    answered in process (INFO commandstats: no EVALSHA), with the same headers."""
    import redis

    from gatekeep import RedisBackend

    backend = RedisBackend(server.url)
    app = app_with([Rule("1/minute", "/x", name="x", block=300)], backend, prefix)
    stats = redis.Redis.from_url(server.url)
    try:
        async with client(app) as c:
            assert (await c.get("/x")).status_code == 200
            assert (await c.get("/x")).status_code == 429  # the breach
            before = stats.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
            for _ in range(50):
                r = await c.get("/x")
                assert r.status_code == 429 and 299 <= int(r.headers["retry-after"]) <= 300
            after = stats.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    finally:
        stats.close()
        await backend.aclose()
    assert after == before

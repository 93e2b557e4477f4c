"""The middleware records decisions per rule, shadow denials and backend errors."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gatekeep import RedisBackend
from gatekeep.metrics import Metrics
from gatekeep.ratelimit import Rule
from gatekeep.ratelimit.asgi import RateLimitMiddleware


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def client_for(**options: object) -> httpx.AsyncClient:
    app = RateLimitMiddleware(Starlette(routes=[Route("/{p:path}", hello)]), **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_decisions_per_rule_and_shadow():
    metrics = Metrics(latency_sample=1)
    rules = [Rule("2/minute", "/login", name="login"), Rule("100/minute", "/**", name="all")]
    async with client_for(rules=rules, metrics=metrics, shadow=True) as client:
        codes = [(await client.get("/login")).status_code for _ in range(3)]
        await client.get("/other")
    assert codes == [200, 200, 200]  # shadow mode never blocks
    decisions = metrics.stats()["decisions"]
    assert decisions["login"]["allowed"] == 2
    assert decisions["login"]["shadow_denied"] == 1 and decisions["login"]["denied"] == 0
    # "all" allowed the third /login itself: it is counted for the rule that denied
    assert decisions["all"]["allowed"] == 3 and decisions["all"]["shadow_denied"] == 0
    assert metrics.stats()["latency"]["memory"]["count"] == 4


async def test_backend_errors_are_counted(server_factory):
    server = server_factory("redis")
    metrics = Metrics()
    backend = RedisBackend(server.url)
    async with client_for(default="5/minute", metrics=metrics, backend=backend) as client:
        assert (await client.get("/")).status_code == 200
        server.stop()
        assert (await client.get("/")).status_code == 200  # fails open
    errors = metrics.stats()["backend_errors"]
    assert sum(errors.values()) == 1 and next(iter(errors)).startswith("redis:")
    assert metrics.stats()["decisions"]["default"]["allowed"] == 1
    await backend.aclose()

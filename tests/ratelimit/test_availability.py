"""A Redis outage through the middleware: a URL gets a circuit breaker; fail-closed is a 503."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gatekeep import RedisBackend
from gatekeep.backends.failover import FailoverBackend
from gatekeep.metrics import Metrics
from gatekeep.ratelimit import RateLimitPolicy
from gatekeep.ratelimit.asgi import RateLimitMiddleware


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def client_for(policy: RateLimitPolicy) -> httpx.AsyncClient:
    app = RateLimitMiddleware(Starlette(routes=[Route("/", hello)]), policy=policy)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_url_gets_a_breaker_and_decides_locally_while_redis_is_down(server_factory):
    server = server_factory("redis")
    metrics = Metrics()
    policy = RateLimitPolicy(default="3/minute", backend=server.url, metrics=metrics)
    assert isinstance(policy.backend, FailoverBackend)
    async with client_for(policy) as client:
        assert (await client.get("/")).status_code == 200
        server.stop()
        codes = [(await client.get("/")).status_code for _ in range(4)]
    # Redis is gone: the in-process twin enforces the limit (3 per instance)
    assert codes == [200, 200, 200, 429]
    watched = metrics.stats()["watched"]["redis"]
    assert watched["state"] == "open" and watched["fallback_calls"] >= 4
    await policy.backend.aclose()


async def test_fail_closed_is_a_503_not_a_500(server_factory):
    server = server_factory("redis")
    backend = FailoverBackend(RedisBackend(server.url), policy="closed", metrics=None)
    policy = RateLimitPolicy(default="3/minute", backend=backend, on_error="allow", metrics=None)
    async with client_for(policy) as client:
        assert (await client.get("/")).status_code == 200
        server.stop()
        response = await client.get("/")
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"] == "unavailable"
    await backend.aclose()

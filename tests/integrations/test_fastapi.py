"""FastAPI and Starlette: the dependency and the route decorator, with httpx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gatekeep.fastapi import RateLimit, limit
from gatekeep.ratelimit import RateLimitPolicy, header
from gatekeep.ratelimit.asgi import RateLimitMiddleware


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.1", 1)),
                             base_url="http://t")


async def test_dependency_and_decorator(abackend: Any, prefix: str) -> None:
    policy = RateLimitPolicy(backend=abackend, prefix=prefix)
    app = FastAPI()

    @app.post("/login", dependencies=[Depends(RateLimit("2/minute", policy=policy))])
    async def login() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items/{item_id}")
    @limit("3/minute", policy=policy)
    def item(item_id: int, q: str = "") -> dict[str, Any]:  # a sync endpoint
        return {"id": item_id, "q": q}

    search_limit = RateLimit("5/minute", policy=policy)

    @app.get("/search")
    @limit("1/minute", policy=policy, name="search")
    async def search(request: Request, decision: Any = Depends(search_limit)  # noqa: B008
                     ) -> dict[str, int]:
        return {"remaining": decision.remaining}

    async with client(app) as c:
        assert [(await c.post("/login")).status_code for _ in range(3)] == [200, 200, 429]
        r = await c.post("/login")
        assert r.json() == {"detail": "Too Many Requests"}
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["ratelimit-policy"] == '"POST /login";q=2;w=60'
        # one counter per route template, not per concrete path; params still parsed
        r = await c.get("/items/1?q=a")
        assert r.json() == {"id": 1, "q": "a"}
        assert r.headers["ratelimit"].startswith('"GET /items/{item_id}";r=2;')
        assert (await c.get("/items/2")).status_code == 200
        assert (await c.get("/items/3")).status_code == 200
        assert (await c.get("/items/4")).status_code == 429
        r = await c.get("/search")
        assert r.status_code == 200 and r.json() == {"remaining": 4}
        assert (await c.get("/search")).status_code == 429


async def test_starlette_endpoint_decorator_and_header_key() -> None:
    @limit("1/minute", key=header("x-api-key"), name="ep")
    async def endpoint(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", endpoint)])
    async with client(app) as c:
        r = await c.get("/", headers={"x-api-key": "a"})
        assert r.status_code == 200 and r.headers["ratelimit"].startswith('"ep";r=0;')
        assert (await c.get("/", headers={"x-api-key": "a"})).status_code == 429
        assert (await c.get("/", headers={"x-api-key": "b"})).status_code == 200
        # no API key: the limit does not apply
        assert (await c.get("/")).status_code == 200


async def test_dependency_with_middleware_and_errors() -> None:
    from gatekeep import RedisBackend

    dead = RedisBackend("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    app = FastAPI()

    home_limit = RateLimit("1/minute", backend=dead, on_error="deny")

    @app.get("/")
    async def home(_: Any = Depends(home_limit)) -> str:  # noqa: B008
        return "hi"

    wrapped = RateLimitMiddleware(app, default="100/minute")
    try:
        async with client(wrapped) as c:
            r = await c.get("/")
    finally:
        await dead.aclose()
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    # the middleware's headers are on the 503 too
    assert r.headers["ratelimit-policy"] == '"default";q=100;w=60'


def test_bad_configuration_raises_at_startup() -> None:
    with pytest.raises(ValueError, match="Malformed rate"):
        RateLimit("often")
    with pytest.raises(ValueError, match="burst"):
        limit("1/second burst 5", algorithm="sliding_window")

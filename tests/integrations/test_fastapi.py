"""FastAPI and Starlette: the dependency and the route decorator, with httpx."""

from __future__ import annotations

import inspect
import re
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from gatekeep.fastapi import RateLimit, limit
from gatekeep.ratelimit import RateLimitPolicy, Rule, header
from gatekeep.ratelimit.asgi import RateLimitMiddleware


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("198.51.100.1", 1)), base_url="http://t"
    )


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
    async def search(
        request: Request,
        decision: Any = Depends(search_limit),  # noqa: B008
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


async def test_a_failing_backend_answers_503_once_for_the_route_and_the_middleware() -> None:
    from gatekeep import RedisBackend

    dead = RedisBackend("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    app = FastAPI()
    ran = []

    @app.get("/")
    async def home(decision: Any = Depends(RateLimit("1/minute"))) -> str:  # noqa: B008
        ran.append(decision)
        return "hi"

    wrapped = RateLimitMiddleware(app, default="100/minute", backend=dead, on_error="deny")
    try:
        async with client(wrapped) as c:
            r = await c.get("/")
    finally:
        await dead.aclose()
    # the middleware checked the route's limit with its own backend: 503, app not run
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and ran == []


def _count(response: httpx.Response, name: str) -> int:
    return sum(1 for k, _ in response.headers.multi_items() if k.lower() == name)


@pytest.mark.parametrize("behind_middleware", [False, True])
async def test_routes_sharing_their_first_64_characters_have_their_own_counters(
    behind_middleware: bool,
) -> None:
    app = FastAPI()
    base = "/" + "very-long-segment/" * 5
    limit_each = RateLimit("3/minute")

    @app.get(base + "alpha", dependencies=[Depends(limit_each)])
    async def alpha() -> str:
        return "a"

    @app.get(base + "beta", dependencies=[Depends(limit_each)])
    async def beta() -> str:
        return "b"

    if behind_middleware:
        app.add_middleware(RateLimitMiddleware, default="100/minute")
    async with client(app) as c:
        assert [(await c.get(base + "alpha")).status_code for _ in range(4)] == [200] * 3 + [429]
        r = await c.get(base + "beta")
        assert r.status_code == 200
        [name] = re.findall(r'^"([^"]+)"', r.headers["ratelimit-policy"])
        assert len(name) <= 64 and "#" in name  # a readable start and a digest


async def test_route_limits_are_rules_of_the_middleware() -> None:
    """One check per request: the route's limit and the middleware's rules together,
    all-or-nothing, one set of headers (legacy ones too), default not spent."""
    app = FastAPI()

    @app.get("/limited", dependencies=[Depends(RateLimit("2/minute"))])
    async def limited() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/own", dependencies=[Depends(RateLimit("5/minute"))])
    async def own() -> JSONResponse:
        return JSONResponse({"own": True}, headers={"x-app": "1"})

    @app.get("/free")
    async def free() -> str:
        return "free"

    app.add_middleware(RateLimitMiddleware, default="5/minute", legacy_headers=True)
    async with client(app) as c:
        statuses = []
        for _ in range(3):
            r = await c.get("/limited")
            statuses.append(r.status_code)
            assert r.headers["ratelimit-policy"] == '"GET /limited";q=2;w=60'
            for name in (
                "ratelimit-policy",
                "ratelimit",
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ):
                assert _count(r, name) == 1, name
        assert statuses == [200, 200, 429]
        assert r.json() == {
            "error": "rate_limited",
            "detail": "Too Many Requests",
            "retry_after": int(r.headers["retry-after"]),
        }
        # the endpoint's own Response gets the headers, once
        r = await c.get("/own")
        assert r.json() == {"own": True} and r.headers["x-app"] == "1"
        assert r.headers["ratelimit"].startswith('"GET /own";r=4;')
        assert _count(r, "ratelimit") == 1 and _count(r, "x-ratelimit-remaining") == 1
        # default applies where no rule (route limit) does, and was not spent above
        r = await c.get("/free")
        assert r.headers["ratelimit"].startswith('"default";r=4;')


async def test_a_route_denial_spends_no_other_budget() -> None:
    app = FastAPI()

    @app.post("/login")
    @limit("2/minute")
    async def login() -> str:
        return "in"

    @app.get("/home")
    async def home() -> str:
        return "home"

    wrapped = RateLimitMiddleware(app, rules=[Rule("10/minute", "/**", name="app")])
    async with client(wrapped) as c:
        statuses = [(await c.post("/login")).status_code for _ in range(4)]
        assert statuses == [200, 200, 429, 429]
        r = await c.post("/login")
        assert r.headers["ratelimit-policy"] == '"app";q=10;w=60, "POST /login";q=2;w=60'
        # only the two allowed logins spent the app budget: 10 - 2 - this one
        assert (await c.get("/home")).headers["ratelimit"].startswith('"app";r=7;')


@pytest.mark.parametrize("behind_middleware", [False, True])
async def test_included_routers_keep_their_prefix_and_dependencies(behind_middleware: bool) -> None:
    policy = RateLimitPolicy()
    router = APIRouter(
        prefix="/r", dependencies=[Depends(RateLimit("7/minute", name="all", policy=policy))]
    )

    @router.get("/items/{i}", dependencies=[Depends(RateLimit("2/minute", policy=policy))])
    async def items(i: int) -> int:
        return i

    app = FastAPI()
    app.include_router(router, prefix="/v1")
    app.include_router(router, prefix="/v2")
    if behind_middleware:
        app.add_middleware(RateLimitMiddleware, policy=policy)
    async with client(app) as c:
        r = await c.get("/v1/r/items/1")
        # one check: the router's limit and the route's, the route named as included
        assert r.headers["ratelimit-policy"] == '"all";q=7;w=60, "GET /v1/r/items/{i}";q=2;w=60'
        assert policy.stats.allowed == 1
        assert (await c.get("/v1/r/items/2")).status_code == 200
        assert (await c.get("/v1/r/items/3")).status_code == 429
        # each inclusion its own route counter; the named one is shared
        r = await c.get("/v2/r/items/1")
        assert r.status_code == 200 and r.headers["ratelimit"].startswith('"all";r=4;')


async def test_the_dependency_returns_its_own_part_of_the_middlewares_decision() -> None:
    app = FastAPI()
    search_limit = RateLimit("5/minute; 100/hour")

    @app.get("/search")
    async def search(decision: Any = Depends(search_limit)) -> dict[str, Any]:  # noqa: B008
        return {"remaining": decision.remaining, "limits": len(decision.details)}

    wrapped = RateLimitMiddleware(app, rules=[Rule("3/minute", "/**", name="app")])
    async with client(wrapped) as c:
        # its own two limits (the tighter: 4 of 5), not the app rule's 2 of 3
        assert (await c.get("/search")).json() == {"remaining": 4, "limits": 2}
        assert (await c.get("/search")).json() == {"remaining": 3, "limits": 2}


async def test_alone_a_routes_limits_sharing_a_policy_are_one_check() -> None:
    policy = RateLimitPolicy()
    app = FastAPI()

    @app.get("/both", dependencies=[Depends(RateLimit("5/minute", policy=policy))])
    @limit("2/minute", policy=policy, name="tight")
    async def both() -> PlainTextResponse:
        return PlainTextResponse("own")

    async with client(app) as c:
        statuses = []
        for _ in range(3):
            r = await c.get("/both")
            statuses.append(r.status_code)
        assert statuses == [200, 200, 429]
        assert policy.stats.allowed == 2 and policy.stats.denied == 1  # one check a request
        # all-or-nothing: the denied request spent nothing from the route's other limit
        r = await c.get("/both")
        assert r.headers["ratelimit-policy"] == '"GET /both";q=5;w=60, "tight";q=2;w=60'
        assert r.headers["ratelimit"].startswith('"GET /both";r=3;')


async def test_limit_decorator_alone_puts_headers_on_the_endpoints_own_response() -> None:
    app = FastAPI()

    @app.get("/own")
    @limit("3/minute")
    async def own() -> PlainTextResponse:
        return PlainTextResponse("mine")

    async with client(app) as c:
        r = await c.get("/own")
        assert r.text == "mine" and r.headers["ratelimit"].startswith('"GET /own";r=2;')


async def test_starlette_limit_decorator_behind_the_middleware_is_checked_once() -> None:
    @limit("2/minute", name="ep")
    async def endpoint(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", endpoint), Mount("/sub", routes=[Route("/", endpoint)])])
    wrapped = RateLimitMiddleware(app, default="100/minute", legacy_headers=True)
    async with client(wrapped) as c:
        r = await c.get("/")
        assert r.headers["ratelimit"] == '"ep";r=1;t=30' and _count(r, "x-ratelimit-limit") == 1
        assert (await c.get("/sub/")).status_code == 200  # the same named counter
        assert (await c.get("/")).status_code == 429


async def test_a_route_limit_the_middleware_cannot_check_fails_at_startup() -> None:
    app = FastAPI()

    @app.get("/", dependencies=[Depends(RateLimit("1/second burst 5"))])
    async def home() -> str:
        return "hi"

    with pytest.raises(ValueError, match="burst"):  # when the middleware is built
        RateLimitMiddleware(app, algorithm="sliding_window")

    # a route added after the middleware was built: checked at start-up (lifespan)
    late = FastAPI()
    middleware = RateLimitMiddleware(late, algorithm="sliding_window")

    @late.get("/", dependencies=[Depends(RateLimit("1/second burst 5"))])
    async def late_home() -> str:
        return "hi"

    messages = iter([{"type": "lifespan.startup"}])

    async def receive() -> dict[str, str]:
        return next(messages)

    async def send(message: Any) -> None:  # pragma: no cover - never reached
        pass

    with pytest.raises(ValueError, match="burst"):
        await middleware({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)


@pytest.mark.redis
async def test_one_round_trip_per_request_with_route_limits(server_factory: Any) -> None:
    """Middleware rules, a dependency and a decorator: one script call per request."""
    import redis

    from gatekeep import RedisBackend

    server = server_factory("redis")
    admin = redis.Redis(port=server.port)
    backend = RedisBackend(server.url)
    app = FastAPI()

    @app.get("/items/{item_id}", dependencies=[Depends(RateLimit("50/minute"))])
    @limit("40/minute", name="items")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    wrapped = RateLimitMiddleware(
        app,
        backend=backend,
        default="100/minute",
        rules=[Rule("60/minute", "/items/**", name="catalogue")],
    )

    def scripts() -> int:
        stats = admin.info("commandstats")
        return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))

    try:
        async with client(wrapped) as c:
            await c.get("/items/0")  # loads the script
            before = scripts()
            for i in range(1, 6):
                r = await c.get(f"/items/{i}")
                assert r.status_code == 200
            assert scripts() - before == 5
            assert r.headers["ratelimit-policy"] == (
                '"catalogue";q=60;w=60, "GET /items/{item_id}";q=50;w=60, "items";q=40;w=60'
            )
            # r: each rule spent 6; t: seconds until each quota is whole again
            assert re.fullmatch(
                r'"catalogue";r=54;t=[1-6], "GET /items/\{item_id\}";r=44;t=[1-8], '
                r'"items";r=34;t=[1-9]',
                r.headers["ratelimit"],
            )
            # a 404 is one script call too
            before = scripts()
            assert (await c.get("/nothing")).status_code == 404
            assert scripts() - before == 1
    finally:
        await backend.aclose()
        backend.close()
        admin.close()


def test_bad_configuration_raises_at_startup() -> None:
    with pytest.raises(ValueError, match="Malformed rate"):
        RateLimit("often")
    with pytest.raises(ValueError, match="burst"):
        limit("1/second burst 5", algorithm="sliding_window")


def test_the_dependency_signature_needs_no_globals_to_resolve() -> None:
    # FastAPI 0.110 (the floor) resolves a dependency's string annotations against
    # ``call.__globals__`` only; a RateLimit instance has none, so a string annotation
    # would make ``request`` and ``response`` required query parameters (422).
    dependency = RateLimit("1/second")
    assert not hasattr(dependency, "__globals__")
    params = inspect.signature(dependency).parameters
    assert params["request"].annotation is Request
    assert params["response"].annotation is Response

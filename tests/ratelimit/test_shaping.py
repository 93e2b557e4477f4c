"""``Rule(delay=D)``: the excess smoothed instead of refused; ``Rule(settle=...)``: the
actual cost charged once the app has answered. ASGI and WSGI, every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from gatekeep import MemoryBackend, waiting
from gatekeep.metrics import Metrics
from gatekeep.ratelimit import RateLimitPolicy, Rule
from gatekeep.ratelimit.asgi import RateLimitMiddleware
from gatekeep.ratelimit.wsgi import RateLimitMiddleware as WSGIMiddleware

T0 = 1_790_000_000_000_000


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The middleware's delays, recorded instead of slept (the clock does not move)."""
    record: list[float] = []

    async def asleep(seconds: float) -> None:
        record.append(seconds)

    monkeypatch.setattr(waiting, "sleep", record.append)
    monkeypatch.setattr(waiting, "asleep", asleep)
    return record


async def tokens(request: Request) -> Response:
    used = request.query_params.get("used", "1")
    return PlainTextResponse("ok", headers={"x-tokens-used": used})


def app() -> Starlette:
    return Starlette(routes=[Route("/", tokens)])


def client(asgi: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=asgi, client=("203.0.113.5", 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


# -- delay -----------------------------------------------------------------------------


async def test_delay_smooths_d_requests_beyond_the_rate(slept: list[float]) -> None:
    metrics = Metrics()
    asgi = RateLimitMiddleware(
        app(),
        rules=[Rule("10/second", name="api", delay=3)],
        backend=MemoryBackend(clock=lambda: T0),
        metrics=metrics,
    )
    async with client(asgi) as c:
        answers = [await c.get("/") for _ in range(14)]
    assert [r.status_code for r in answers] == [200] * 13 + [429]
    assert slept == pytest.approx([0.1, 0.2, 0.3])  # each in its place, at the rate
    assert answers[0].headers["ratelimit-policy"] == '"api";q=10;w=1'  # as declared
    assert answers[9].headers["ratelimit"] == '"api";r=0;t=1'
    assert answers[12].headers["ratelimit"].startswith('"api";r=0;')
    assert answers[13].headers["retry-after"] == "1"  # 0.1 s: a place frees up
    counts = metrics.stats()["decisions"]["api"]
    assert (counts["allowed"], counts["denied"], counts["waits"]) == (13, 1, 3)


async def test_delay_under_concurrency_on_every_backend(abackend, prefix, slept) -> None:
    asgi = RateLimitMiddleware(
        app(), rules=[Rule("5/second", name="api", delay=3)], backend=abackend, prefix=prefix
    )
    async with client(asgi) as c:
        answers = await asyncio.gather(*(c.get("/") for _ in range(10)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * 8 + [429] * 2  # exactly: 5 + 3 delayed, the rest refused
    assert len(slept) == 3
    for got, place in zip(sorted(slept), (0.2, 0.4, 0.6), strict=True):
        assert place - 0.1 < got <= place  # the server's clock moves on a little


def test_delay_in_wsgi(slept: list[float]) -> None:
    wsgi = WSGIMiddleware(
        plain_wsgi,
        rules=[Rule("2/second", name="api", delay=1)],
        backend=MemoryBackend(clock=lambda: T0),
    )
    assert [call_wsgi(wsgi)[0] for _ in range(4)] == ["200 OK"] * 3 + ["429 Too Many Requests"]
    assert slept == [0.5]


def test_delay_needs_a_bucket_algorithm() -> None:
    with pytest.raises(ValueError, match="delay= smooths"):
        RateLimitPolicy([Rule("10/second", delay=2)], algorithm="fixed_window")
    with pytest.raises(ValueError, match="delay must be"):
        Rule("10/second", delay=-1)


def test_shadow_mode_never_delays(slept: list[float]) -> None:
    wsgi = WSGIMiddleware(
        plain_wsgi,
        rules=[Rule("1/second", name="api", delay=2)],
        backend=MemoryBackend(clock=lambda: T0),
        shadow=True,
    )
    assert [call_wsgi(wsgi)[0] for _ in range(5)] == ["200 OK"] * 5
    assert slept == []


# -- settle ----------------------------------------------------------------------------


async def test_settle_from_a_response_header(abackend, prefix) -> None:
    metrics = Metrics()
    asgi = RateLimitMiddleware(
        app(),
        rules=[Rule("100/minute", name="llm", settle="X-Tokens-Used")],
        backend=abackend,
        prefix=prefix,
        metrics=metrics,
    )
    async with client(asgi) as c:
        assert (await c.get("/?used=30")).status_code == 200  # 1 taken, then 29 more
        r = await c.get("/?used=0")  # admitted at 1, then refunded
        assert r.headers["ratelimit"].startswith('"llm";r=69;')
        r = await c.get("/?used=1")
        assert r.headers["ratelimit"].startswith('"llm";r=69;')
        r = await c.get("/?used=250")  # 180 beyond the budget: a debt
        assert r.headers["ratelimit"].startswith('"llm";r=68;')
        r = await c.get("/")
        assert r.status_code == 429
        # 182 tokens short of the 1 needed: 183 x 0.6 s
        assert int(r.headers["retry-after"]) == 110
    assert metrics.stats()["decisions"]["llm"]["settled"] == 4


async def test_settle_after_a_streamed_body_ends() -> None:
    events: list[str] = []

    async def stream(request: Request) -> Response:
        async def body() -> Any:
            for i in range(3):
                events.append(f"chunk {i}")
                yield b"x"

        return StreamingResponse(body(), headers={"x-tokens-used": "7"})

    def read(status: int, headers: Any) -> int | None:
        events.append(f"settle {status}")
        return int(dict(headers)["x-tokens-used"])

    asgi = RateLimitMiddleware(
        Starlette(routes=[Route("/", stream)]),
        rules=[Rule("10/minute", name="s", settle=read)],
        backend=MemoryBackend(clock=lambda: T0),
    )
    async with client(asgi) as c:
        assert (await c.get("/")).text == "xxx"
        assert events == ["chunk 0", "chunk 1", "chunk 2", "settle 200"]
        r = await c.get("/")
        assert r.headers["ratelimit"].startswith('"s";r=2;')  # 7 + 1


def test_settle_in_wsgi_when_the_server_closes_the_body(backend, prefix) -> None:
    wsgi = WSGIMiddleware(
        tokens_wsgi,
        rules=[Rule("10/minute", name="llm", settle="x-tokens-used")],
        backend=backend,
        prefix=prefix,
    )
    status, headers, body = call_wsgi(wsgi, "used=6", close=False)
    assert status == "200 OK" and dict(headers)["RateLimit"].startswith('"llm";r=9;')
    # not settled until the server closes the response
    assert dict(call_wsgi(wsgi, "used=1")[1])["RateLimit"].startswith('"llm";r=8;')
    body.close()  # type: ignore[attr-defined]
    assert dict(call_wsgi(wsgi, "used=1")[1])["RateLimit"].startswith('"llm";r=2;')


def test_a_bad_header_settles_nothing_and_rules_check_settle() -> None:
    wsgi = WSGIMiddleware(
        tokens_wsgi,
        rules=[Rule("10/minute", name="llm", settle="x-tokens-used")],
        backend=MemoryBackend(clock=lambda: T0),
    )
    call_wsgi(wsgi, "used=-5")
    call_wsgi(wsgi, "used=abc")
    assert dict(call_wsgi(wsgi, "used=1")[1])["RateLimit"].startswith('"llm";r=7;')
    with pytest.raises(TypeError, match="settle must be"):
        Rule("1/second", settle=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="settle must name"):
        Rule("1/second", settle="")


# -- WSGI helpers ------------------------------------------------------------------------


def plain_wsgi(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return iter([b"ok"])


def tokens_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    used = environ.get("QUERY_STRING", "").partition("used=")[2] or "1"
    start_response("200 OK", [("X-Tokens-Used", used)])
    return [b"ok"]


def call_wsgi(wsgi: Any, query: str = "", close: bool = True) -> tuple[str, list, Any]:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": query,
        "REMOTE_ADDR": "203.0.113.5",
        "wsgi.url_scheme": "http",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
    }
    got: list[Any] = []

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        got[:] = [status, headers]

    body = wsgi(environ, start_response)
    b"".join(body)
    if close and hasattr(body, "close"):
        body.close()
    return got[0], got[1], body

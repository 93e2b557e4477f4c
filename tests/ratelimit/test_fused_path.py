"""The middleware on the in-process backend decides one-limit requests through the fused
path (``MemoryBackend.fused_hit``), and answers exactly as through ``run()``."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gatekeep import MemoryBackend
from gatekeep.backends.base import Plan
from gatekeep.metrics import Metrics
from gatekeep.ratelimit import RateLimitPolicy, Rule
from gatekeep.ratelimit.asgi import RateLimitMiddleware
from gatekeep.ratelimit.wsgi import RateLimitMiddleware as WSGIRateLimitMiddleware

NOW_US = 1_790_000_000 * 1_000_000


class Reference(MemoryBackend):
    """No fused path: every decision goes through ``run()`` and the twins."""

    def fused_hit(self, plan: Plan, counters: object = None) -> None:
        return None


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def rules() -> list[Rule]:
    return [Rule("3/minute", "/login", name="login"), Rule("5/minute", "/**", name="all")]


def policy(backend: MemoryBackend, metrics: Metrics) -> RateLimitPolicy:
    return RateLimitPolicy(rules(), backend=backend, metrics=metrics)


PATHS = ["/a", "/login", "/a", "/b", "/login", "/a", "/a", "/login", "/a", "/login", "/b"]


def shown(response: httpx.Response) -> tuple[int, list[tuple[str, str]]]:
    keep = ("ratelimit", "ratelimit-policy", "retry-after")
    return response.status_code, [(k, v) for k, v in response.headers.items() if k in keep]


async def test_asgi_fused_and_reference_answer_alike() -> None:
    answers, stats = [], []
    for backend in (MemoryBackend(clock=lambda: NOW_US), Reference(clock=lambda: NOW_US)):
        metrics = Metrics()
        pol = policy(backend, metrics)
        app = RateLimitMiddleware(Starlette(routes=[Route("/{p:path}", hello)]), policy=pol)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            answers.append([shown(await client.get(p)) for p in PATHS])
        stats.append(metrics.stats()["decisions"])
        fast = [b.plan.fast is not None for b in pol._batches.values()]
        # "/a" has one rule (one limit): fused in-process; "/login" has two: run()
        assert sorted(fast) == ([False, True] if type(backend) is MemoryBackend else [False, False])
    assert answers[0] == answers[1]
    assert stats[0] == stats[1]
    assert [code for code, _ in answers[0]].count(429) > 0  # the limits were reached


def test_wsgi_fused_and_reference_answer_alike() -> None:
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    answers = []
    for backend in (MemoryBackend(clock=lambda: NOW_US), Reference(clock=lambda: NOW_US)):
        wsgi = WSGIRateLimitMiddleware(app, policy=policy(backend, Metrics()))
        with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://t") as c:
            answers.append([shown(c.get(p)) for p in PATHS])
    assert answers[0] == answers[1]
    assert [code for code, _ in answers[0]].count(429) > 0

"""RateLimit-Policy tells the real rate and the burst; the legacy trio tells one limit."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gatekeep import Limiter
from gatekeep.decision import Decision
from gatekeep.ratelimit import Rule
from gatekeep.ratelimit.asgi import RateLimitMiddleware
from gatekeep.ratelimit.headers import closest_to_denial, legacy_headers, policy_item, quota
from gatekeep.rates import Rate, parse_rate


def test_burst_is_told_beside_the_sustained_rate() -> None:
    assert policy_item("api", parse_rate("10/s burst 20")) == '"api";q=10;w=1;gk-burst=20'
    assert policy_item("login", parse_rate("5/minute")) == '"login";q=5;w=60'
    assert policy_item("x", parse_rate("3/1500ms")) == '"x";q=2;w=1'  # 2 per second exactly


@given(
    limit=st.integers(1, 10_000),
    period_us=st.integers(1_000, 400 * 86_400_000_000),
    burst=st.integers(0, 20_000),
)
def test_policy_never_advertises_more_than_the_rate(limit: int, period_us: int, burst: int) -> None:
    rate = Rate(limit, min(period_us, 366 * 86_400_000_000), burst)
    q, w = quota(rate)
    real = Fraction(rate.limit * 1_000_000, rate.period_us)
    assert q >= 1 and w >= 1 and w <= max(1, -(-rate.period_us // 1_000_000))
    if rate.period_us % 1_000_000 == 0:  # whole seconds: the rate as configured
        assert (q, w) == (rate.limit, rate.period_us // 1_000_000)
    elif Fraction(q, w) != real:  # else exact when it fits, never above the rate
        assert Fraction(q, w) < real


def _decision(*details: tuple[bool, int, int, float, float]) -> Decision:
    ds = tuple(Decision(a, lim, rem, reset, retry) for a, lim, rem, reset, retry in details)
    return Decision(
        all(d.allowed for d in ds),
        0,
        0,
        max(d.reset_after for d in ds),
        max(d.retry_after for d in ds),
        None,
        ds,
    )


def test_legacy_headers_describe_the_limit_closest_to_denial() -> None:
    # allowed: the fewest remaining, with its own reset (not the longest of all)
    d = _decision((True, 2, 1, 0.5, 0), (True, 100, 99, 36.0, 0))
    assert legacy_headers(d) == [
        ("X-RateLimit-Limit", "2"),
        ("X-RateLimit-Remaining", "1"),
        ("X-RateLimit-Reset", "1"),
    ]
    # denied: the denying limit, even if another has fewer left in absolute terms
    d = _decision((True, 100, 0, 60.0, 0), (False, 10, 0, 5.0, 2.0))
    assert closest_to_denial(d).limit == 10
    assert legacy_headers(d)[2] == ("X-RateLimit-Reset", "5")


async def test_middleware_headers_with_two_limits_and_a_burst() -> None:
    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = RateLimitMiddleware(
        Starlette(routes=[Route("/", ok)]),
        legacy_headers=True,
        rules=[Rule("2/second; 100/hour", "/**", name="a"), Rule("10/s burst 20", "/**", name="b")],
    )
    transport = httpx.ASGITransport(app=app, client=("198.51.100.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/")
    assert r.headers["ratelimit-policy"] == (
        '"a.1";q=2;w=1, "a.2";q=100;w=3600, "b";q=10;w=1;gk-burst=20'
    )
    assert r.headers["ratelimit"] == '"a.1";r=1;t=1, "a.2";r=99;t=36, "b";r=19;t=1'
    # the trio: all three from "a.1", the limit closest to denial
    assert (
        r.headers["x-ratelimit-limit"],
        r.headers["x-ratelimit-remaining"],
        r.headers["x-ratelimit-reset"],
    ) == ("2", "1", "1")


def test_limiter_decision_and_legacy_agree() -> None:
    limiter = Limiter("2/second; 100/hour")
    d = limiter.hit("k")
    limit, remaining, reset = (v for _, v in legacy_headers(d))
    tight = closest_to_denial(d)
    assert (limit, remaining) == (str(d.limit), str(d.remaining)) == ("2", "1")
    assert reset == "1" and tight.reset_after <= 1 < d.reset_after

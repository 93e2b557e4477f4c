"""Response headers and the denial body: pure functions, no framework.

``RateLimit-Policy`` and ``RateLimit`` follow draft-ietf-httpapi-ratelimit-headers-11:
both are Structured Field Lists (RFC 9651) of one item per policy, the item a
String naming the policy::

    RateLimit-Policy: "login";q=5;w=60, "api";q=10;w=1;gk-burst=20
    RateLimit: "login";r=4;t=60, "api";r=19;t=1

``q`` / ``w`` is the sustained rate (``q`` units per ``w`` seconds, exactly the
configured rate); a token bucket's or GCRA's capacity, when it differs, is told by
the vendor parameter ``gk-burst`` (a parameter a client does not know is ignored).
``r`` is what remains now (up to the burst) and ``t`` the effective window: the
seconds after which the quota is whole again. The legacy ``X-RateLimit-*`` trio,
if asked for, describes one limit, the one closest to denial.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ..decision import Decision
from ..rates import Rate

__all__ = [
    "Denial",
    "closest_to_denial",
    "default_denial",
    "denial_json",
    "lease_policy_item",
    "legacy_headers",
    "policy_item",
    "quota",
    "ratelimit_header",
    "seconds",
    "sf_string",
]


def sf_string(text: str) -> str:
    """A Structured Field String: printable ASCII, with ``"`` and ``\\`` escaped."""
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    if not out.isascii() or not out.isprintable():
        raise ValueError(f"{text!r} cannot be a structured field string (printable ASCII only)")
    return f'"{out}"'


def seconds(x: float) -> int:
    """Whole seconds, rounded up, never negative."""
    if math.isinf(x):
        return 2**31 - 1 if x > 0 else 0
    return max(0, math.ceil(x))


def quota(rate: Rate) -> tuple[int, int]:
    """``(q, w)``: whole units per whole seconds, ``q / w`` the sustained rate.

    Exact when it can be said in at most the period's whole seconds (``"3/1500ms"``
    is ``q=2, w=1``); otherwise rounded down, never advertising more than the rate.
    """
    if rate.period_us % 1_000_000 == 0:  # the rate as configured: "5/minute" is q=5, w=60
        return rate.limit, rate.period_us // 1_000_000
    exact = Fraction(rate.limit * 1_000_000, rate.period_us)
    window = max(1, math.ceil(rate.period_us / 1_000_000))
    if exact.denominator <= window:
        return exact.numerator, exact.denominator
    return max(1, math.floor(exact * window)), window


def policy_item(name: str, rate: Rate) -> str:
    """One item of ``RateLimit-Policy``: the sustained rate, and the burst if any."""
    q, w = quota(rate)
    item = f"{sf_string(name)};q={q};w={w}"
    return f"{item};gk-burst={rate.burst}" if rate.has_burst else item


def lease_policy_item(name: str, limit: int) -> str:
    """A concurrency limit in ``RateLimit-Policy``: ``limit`` requests in flight at once
    (the draft's quota unit ``concurrent-requests``; no window)."""
    return f'{sf_string(name)};q={limit};qu="concurrent-requests"'


def ratelimit_header(
    quoted: Sequence[str], decisions: Sequence[Decision], rates: int | None = None
) -> str:
    """The ``RateLimit`` field: one item per policy, in the order of ``RateLimit-Policy``.

    ``quoted``: the policy names, already as structured field strings. Items after the
    first ``rates`` (when given) are concurrency limits: what remains, and no window.
    """
    if rates is None:
        rates = len(quoted)
    return ", ".join(
        f"{n};r={d.remaining};t={seconds(d.reset_after)}" if i < rates else f"{n};r={d.remaining}"
        for i, (n, d) in enumerate(zip(quoted, decisions, strict=True))
    )


def closest_to_denial(decision: Decision) -> Decision:
    """Of several limits, the one closest to denial: a denying one (the longest
    wait), else the one with the fewest remaining (the longest reset on a tie)."""
    if not decision.details:
        return decision
    return min(
        decision.details, key=lambda d: (d.allowed, d.remaining, -d.retry_after, -d.reset_after)
    )


def legacy_headers(decision: Decision) -> list[tuple[str, str]]:
    """``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset``, all three of one limit."""
    d = closest_to_denial(decision)
    return [
        ("X-RateLimit-Limit", str(d.limit)),
        ("X-RateLimit-Remaining", str(d.remaining)),
        ("X-RateLimit-Reset", str(seconds(d.reset_after))),
    ]


@dataclass(frozen=True, slots=True)
class Denial:
    """A response without a framework: status, headers and body bytes.

    A custom ``deny`` callable returns one of these (or, behind ASGI and WSGI, a
    framework response object, which is an app of its own). The rate-limit
    headers and ``Retry-After`` are added unless it sets them itself.
    """

    status: int = 429
    headers: Sequence[tuple[str, str]] = field(default_factory=tuple)
    body: bytes = b""


_REASONS = {429: "Too Many Requests", 503: "Service Unavailable"}


def denial_json(status: int, payload: Any, headers: Sequence[tuple[str, str]] = ()) -> Denial:
    """A denial with a JSON body (for a custom ``deny``, and the default one)."""
    return Denial(
        status,
        (("Content-Type", "application/json"), *headers),
        json.dumps(payload, separators=(",", ":")).encode(),
    )


def default_denial(status: int, retry_after: int) -> Denial:
    """The JSON body of a denial: ``{"error": ..., "detail": ..., "retry_after": n}``."""
    return denial_json(
        status,
        {
            "error": "rate_limited" if status == 429 else "unavailable",
            "detail": _REASONS.get(status, "Denied"),
            "retry_after": retry_after,
        },
    )

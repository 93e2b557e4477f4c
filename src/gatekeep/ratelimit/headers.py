"""Response headers and the denial body: pure functions, no framework.

``RateLimit-Policy`` and ``RateLimit`` follow draft-ietf-httpapi-ratelimit-headers-10:
both are Structured Field Lists (RFC 9651) of one item per policy, the item a
String naming the policy::

    RateLimit-Policy: "login";q=5;w=60, "default";q=100;w=60
    RateLimit: "login";r=4;t=60, "default";r=99;t=1

``q`` is the quota, ``w`` the window in seconds, ``r`` what remains and ``t``
the seconds until the quota is whole again. The legacy ``X-RateLimit-*`` trio,
if asked for, describes the tightest limit only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..decision import Decision
from ..rates import Rate

__all__ = ["Denial", "default_denial", "denial_json", "legacy_headers", "policy_item",
           "ratelimit_header", "seconds", "sf_string"]


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


def policy_item(name: str, rate: Rate) -> str:
    """One item of ``RateLimit-Policy``: the quota ``q`` (the capacity) per ``w`` seconds."""
    quota = rate.burst if rate.has_burst else rate.limit
    window = max(1, math.ceil(rate.period_us / 1_000_000))
    return f"{sf_string(name)};q={quota};w={window}"


def ratelimit_header(quoted: Sequence[str], decisions: Sequence[Decision]) -> str:
    """The ``RateLimit`` field: one item per policy, in the order of ``RateLimit-Policy``.

    ``quoted``: the policy names, already as structured field strings.
    """
    return ", ".join(
        f"{n};r={d.remaining};t={seconds(d.reset_after)}"
        for n, d in zip(quoted, decisions, strict=True)
    )


def legacy_headers(decision: Decision) -> list[tuple[str, str]]:
    return [
        ("X-RateLimit-Limit", str(decision.limit)),
        ("X-RateLimit-Remaining", str(decision.remaining)),
        ("X-RateLimit-Reset", str(seconds(decision.reset_after))),
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


def denial_json(status: int, payload: Any, headers: Sequence[tuple[str, str]] = ()
                ) -> Denial:
    """A denial with a JSON body (for a custom ``deny``, and the default one)."""
    return Denial(status, (("Content-Type", "application/json"), *headers),
                  json.dumps(payload, separators=(",", ":")).encode())


def default_denial(status: int, retry_after: int) -> Denial:
    """The JSON body of a denial: ``{"error": ..., "detail": ..., "retry_after": n}``."""
    return denial_json(status, {
        "error": "rate_limited" if status == 429 else "unavailable",
        "detail": _REASONS.get(status, "Denied"),
        "retry_after": retry_after,
    })

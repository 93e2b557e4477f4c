"""The result of one rate-limit check."""

from __future__ import annotations

import math
from typing import NamedTuple

from .rates import Rate

__all__ = ["Decision"]


class Decision(NamedTuple):
    """What a limiter decided for one request (immutable; truthy when allowed).

    ``reset_after`` is the number of seconds until the limit is fully replenished;
    ``retry_after`` the number of seconds until this same request would be allowed
    (0 when it was allowed, ``math.inf`` when it never can be: a cost larger than
    the capacity). Neither is ever negative.

    With several limits, the decision is all-or-nothing: it is allowed only when
    every limit allows it. ``limit``, ``remaining`` and ``rate`` then describe the
    most restrictive limit (the one with the fewest remaining), ``retry_after``
    and ``reset_after`` the longest wait, and ``details`` holds one decision per
    limit in the order given.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float
    rate: Rate | None = None
    details: tuple[Decision, ...] = ()

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def denied(self) -> bool:
        return not self.allowed

    @property
    def retry_after_seconds(self) -> int:
        """``retry_after`` rounded up to whole seconds, as an HTTP ``Retry-After`` carries it.

        A request that can never pass gets the time until the limit is full again.
        """
        wait = self.reset_after if math.isinf(self.retry_after) else self.retry_after
        return math.ceil(wait)

    @staticmethod
    def from_reply(rates: tuple[Rate, ...], reply: list[int]) -> Decision:
        """Build a decision from a script reply (four integers per rate)."""
        if len(rates) == 1:  # inlined _one(): this runs on every request
            retry_us, remaining, rate = reply[3], reply[1], rates[0]
            return _new(
                Decision,
                (
                    reply[0] == 1,
                    rate.burst,
                    remaining if remaining > 0 else 0,
                    reply[2] / 1_000_000,
                    math.inf if retry_us < 0 else retry_us / 1_000_000,
                    rate,
                    (),
                ),
            )
        return Decision.combine(
            tuple(
                _one(rate, reply[i], reply[i + 1], reply[i + 2], reply[i + 3])
                for rate, i in zip(rates, range(0, 4 * len(rates), 4), strict=False)
            )
        )

    @staticmethod
    def combine(details: tuple[Decision, ...]) -> Decision:
        """The all-or-nothing decision of several limits' decisions (``details``)."""
        tightest = min(details, key=_tightness)
        return Decision(
            allowed=all(d.allowed for d in details),
            limit=tightest.limit,
            remaining=tightest.remaining,
            reset_after=max(d.reset_after for d in details),
            retry_after=max(d.retry_after for d in details),
            rate=tightest.rate,
            details=details,
        )


def _tightness(d: Decision) -> tuple[int, float]:
    return (d.remaining if d.allowed else -1, -d.retry_after)


def _one(rate: Rate, allowed: int, remaining: int, reset_us: int, retry_us: int) -> Decision:
    # tuple.__new__ skips the generated __new__ and its defaults: this runs per request
    return _new(
        Decision,
        (
            allowed == 1,
            rate.burst,
            remaining if remaining > 0 else 0,
            reset_us / 1_000_000,
            math.inf if retry_us < 0 else retry_us / 1_000_000,
            rate,
            (),
        ),
    )


_new = tuple.__new__

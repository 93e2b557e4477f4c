"""``acquire``: wait until a limit allows a cost, then take it.

Written once as a flow (see :mod:`gatekeep._steps`): the limiter's ``hit``, and
when it denies, one :class:`~gatekeep._steps.Wait` of exactly the ``retry_after``
the script returned (on the server's clock), then one more ``hit``. No polling:
another hit is made only after a wait the script asked for. Another process may
take the capacity during that wait (a race): the new denial's ``retry_after`` is
waited out in turn, as long as the timeout allows.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

from ._steps import LimitFlow, Wait
from .decision import Decision

if TYPE_CHECKING:
    from .limiter import BaseLimiter, Limits

__all__ = ["acquire_flow", "asleep", "sleep"]

#: How ``Limiter`` and ``AsyncLimiter`` make a :class:`Wait` (tests may replace them).
sleep = time.sleep
asleep = asyncio.sleep


def acquire_flow(
    limiter: BaseLimiter, key: str, limits: Limits | None, cost: int, timeout: float | None
) -> LimitFlow[Decision]:
    """The flow of ``limiter.acquire(key, limits, cost, timeout=timeout)``."""
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or math.isnan(timeout)
        or timeout < 0
    ):
        raise ValueError(f"timeout must be None or a number of seconds >= 0, got {timeout!r}")
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    counters = limiter.counters
    while True:
        decision = yield from limiter.hit_flow(key, limits, cost, None)
        wait = decision.retry_after
        # never (a cost above the capacity), or not within the timeout: decided at once
        if decision.allowed or math.isinf(wait) or wait > deadline - time.monotonic():
            return decision
        if counters is not None:  # a wait, not a denial
            counters.denied -= 1
            counters.waits += 1
        yield Wait(wait)

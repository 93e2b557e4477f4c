"""The demo's part on waiting and settling (issue 14): ``acquire`` sleeping exactly a
denial's ``retry_after``, and an LLM-style token budget reserved then settled."""

from __future__ import annotations

import time
from typing import TextIO

from ..backends.base import Backend
from ..limiter import Limiter
from ..metrics import Metrics
from ..rates import Rate

__all__ = ["patience"]

BUDGET = "1000/minute"


def patience(backend: Backend, rate: Rate, prefix: str, metrics: Metrics, out: TextIO) -> None:
    """Part 5: ``acquire`` on an exhausted key; a token budget reserved and settled."""
    print("\n5. Waiting (acquire) and reserving then settling (reserve / settle)", file=out)
    waiter = Limiter(rate, backend=backend, prefix=prefix, name="acquire", metrics=metrics)
    waiter.hit("wait", cost=rate.burst)  # exhausted
    denied = waiter.peek("wait")
    started = time.monotonic()
    decision = waiter.acquire("wait", timeout=5)
    print(
        f"  acquire on an empty {rate} bucket: the script said retry after "
        f"{denied.retry_after * 1000:.0f} ms; slept, then allowed={decision.allowed} after "
        f"{(time.monotonic() - started) * 1000:.0f} ms (one wait, no polling)",
        file=out,
    )
    never = waiter.acquire("wait", cost=rate.burst + 1)
    print(
        f"  acquire of {rate.burst + 1} (above the capacity): denied at once, "
        f"retry_after={never.retry_after}",
        file=out,
    )
    budget = Limiter(BUDGET, backend=backend, prefix=prefix, name="tokens", metrics=metrics)
    print(f"  a token budget of {BUDGET}:", file=out)
    for estimate, actual in ((300, 120), (300, 300), (400, 900)):
        r = budget.reserve("org", cost=estimate)
        held = r.decision.remaining
        r.settle(actual)
        left = budget.peek("org")
        what = (
            "refund"
            if actual < estimate
            else "charge, beyond the budget: a debt"
            if actual > estimate
            else "nothing sent"
        )
        print(
            f"    reserve {estimate} -> {held} left; settle({actual}): {what}"
            f" -> {left.remaining} left",
            file=out,
        )
    nxt = budget.hit("org", cost=1)
    print(
        f"    next request of 1: allowed={nxt.allowed}, retry after {nxt.retry_after:.1f} s "
        f"(the debt is waited out)",
        file=out,
    )

"""What decides while Redis is away (no I/O): the policies of ``FailoverBackend``.

``"local"``: the in-process twin, each of ``instances`` processes enforcing its share
of every limit (:func:`local_share`); ``"open"``: every request allowed
(:func:`allow_all`); ``"closed"``: a 503.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..algorithms import CHARGE, HIT
from ..rates import Rate
from .base import Plan

__all__ = ["POLICIES", "LocalShares", "Policy", "allow_all", "local_share"]

Policy = Literal["local", "open", "closed"]
POLICIES: tuple[str, ...] = ("local", "open", "closed")


def local_share(rate: Rate, instances: int) -> Rate:
    """The part of ``rate`` one of ``instances`` processes enforces on its own.

    Limit and burst are divided and rounded down (at least 1), so the shares
    never add up to more than the rate unless the limit is smaller than
    ``instances``: then each process still admits 1 per period.
    """
    if instances == 1:
        return rate
    burst = max(1, rate.burst // instances) if rate.has_burst else 0
    return Rate(max(1, rate.limit // instances), rate.period_us, burst)


class LocalShares:
    """``plan`` with every rate cut to one of ``instances`` processes' share, cached."""

    def __init__(self, instances: int) -> None:
        self.instances = instances
        self._shares: dict[Plan, Plan] = {}

    def of(self, plan: Plan) -> Plan:
        shared = self._shares.get(plan)
        if shared is None:
            rates = tuple(local_share(r, self.instances) for r in plan.rates)
            params = tuple(plan.algorithm.params(r) for r in rates)
            # Same keys (and algorithm), smaller numbers.
            shared = dataclasses.replace(
                plan,
                rates=rates,
                params=params,
                flat=tuple(x for p in params for x in p) + plan.blocks,
            )
            if len(self._shares) >= 1024:
                self._shares.clear()
            self._shares[plan] = shared
        return shared


def allow_all(plan: Plan, mode: str, cost: int) -> list[int]:
    """The reply of a call every rate allows (the ``"open"`` policy)."""
    reply: list[int] = []
    for rate in plan.rates:
        capacity = rate.burst
        remaining = max(0, capacity - cost) if mode in (HIT, CHARGE) else capacity
        reply += (1, remaining, 0, 0)
    return reply

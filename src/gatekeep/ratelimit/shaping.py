"""What a rule does around its decision, with no I/O: a delay before the app
(``Rule(delay=D)``) and a settlement after it (``Rule(settle=...)``).

**Delay** (nginx ``limit_req burst=... delay=...``). The rule's counter is kept with
``D`` more of burst than its limits say, so up to D requests beyond them are
admitted, each taking its place in advance, atomically, in the same script call
as every other limit. A request admitted into those D places waits until the rate
reaches it: ``reset_after - burst x interval`` (how far the counter runs beyond the
declared burst), so the app sees the excess smoothed at the rate, with no queue
and no second call. The ``RateLimit`` header reports the declared limits
(``remaining`` 0 while requests are delayed); a 429 comes only beyond the D places,
and its ``Retry-After`` says when a request would be admitted again (possibly
delayed). Bucket algorithms only (token bucket, GCRA): a window has no rate to
smooth at.

**Settle**. A request is admitted at cost 1; once the app has answered, a rule with
``settle`` reads the actual cost (a response header, or a function of status and
headers) and makes one script call on that rule's keys: a charge of ``actual - 1``
(even beyond the limit: a debt the next requests wait out) or a refund of 1
(``actual == 0``), as :meth:`gatekeep.Reservation.settle` does. The front doors
(ASGI, WSGI) make that call after the response body has been sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from ..algorithms import CHARGE, REFUND
from ..backends.base import Plan
from ..decision import Decision
from ..metrics import RuleCounters
from ..rates import Rate
from .rules import Rule, SettleFunc

__all__ = ["Pending", "Settler", "Smoothing", "header_reader", "settle_calls", "smooth"]


class Smoothing(NamedTuple):
    """A rule with ``delay``: where its rates sit in the batch, and as declared."""

    span: slice
    extra: int
    rates: tuple[Rate, ...]
    counters: RuleCounters | None


class Settler(NamedTuple):
    """A rule with ``settle``: its part of the batch's plan, and how to read the cost."""

    span: slice
    plan: Plan
    read: SettleFunc
    counters: RuleCounters | None


class Pending(NamedTuple):
    """The settlements one admitted request owes, and its Redis keys."""

    settlers: tuple[Settler, ...]
    keys: list[str]


def header_reader(name: str) -> SettleFunc:
    """A :data:`SettleFunc` reading the cost from the response header ``name``: a
    whole number >= 0, else None (nothing settled)."""

    def read(status: int, headers: Sequence[tuple[str, str]]) -> int | None:
        for key, value in headers:
            if key == name:
                value = value.strip()
                return int(value) if value.isdigit() and value.isascii() else None
        return None

    return read


def shaping(
    rules: tuple[Rule, ...], plan: Plan, counters: Sequence[tuple[RuleCounters | None, slice]]
) -> tuple[tuple[Smoothing, ...], tuple[Settler, ...]]:
    """The smoothings and settlers of a batch of ``rules`` (``plan``: the merged plan)."""
    delays: list[Smoothing] = []
    settles: list[Settler] = []
    for rule, (count, span) in zip(rules, counters, strict=True):
        if rule.delay:
            delays.append(Smoothing(span, rule.delay, rule.rates, count))
        if rule.settle is not None:
            read = header_reader(rule.settle) if isinstance(rule.settle, str) else rule.settle
            part = dataclasses.replace(
                plan,
                rates=plan.rates[span],
                suffixes=plan.suffixes[span],
                params=plan.params[span],
                flat=tuple(x for p in plan.params[span] for x in p),
                key_cache={},
                fast=None,
            )
            settles.append(Settler(span, part, read, count))
    return tuple(delays), tuple(settles)


def smooth(
    delays: tuple[Smoothing, ...], decision: Decision, count: bool
) -> tuple[Decision, float]:
    """``decision`` as the declared limits see it, and how long to delay the request
    (seconds; 0 when it is denied). ``count``: count the wait in the rules' metrics."""
    details = list(decision.details or (decision,))
    delay_us = 0
    for s in delays:
        waited = False
        for i, rate in zip(range(s.span.start, s.span.stop), s.rates, strict=True):
            d = details[i]
            if d.allowed:
                beyond = round(d.reset_after * 1_000_000) - rate.burst * rate.interval_us
                if beyond > 0:
                    waited = True
                    delay_us = max(delay_us, beyond)
            details[i] = d._replace(
                limit=rate.burst, remaining=max(0, d.remaining - s.extra), rate=rate
            )
        if waited and count and decision.allowed and s.counters is not None:
            s.counters.waits += 1
    smoothed = Decision.combine(tuple(details)) if decision.details else details[0]
    return smoothed, delay_us / 1_000_000 if decision.allowed else 0.0


def settle_calls(
    pending: Pending, status: int, headers: Sequence[tuple[str, str]]
) -> Iterator[tuple[Plan, list[str], str, int]]:
    """The script calls that settle one answered request: ``(plan, keys, mode, cost)``."""
    for s in pending.settlers:
        actual = s.read(status, headers)
        if actual is None:
            continue
        if isinstance(actual, bool) or not isinstance(actual, int) or actual < 0:
            raise ValueError(f"a settle function returned {actual!r}; return an int >= 0 or None")
        if s.counters is not None:
            s.counters.settled += 1
        if actual != 1:  # the request was admitted at 1
            mode, cost = (CHARGE, actual - 1) if actual > 1 else (REFUND, 1)
            yield s.plan, pending.keys[s.span], mode, cost

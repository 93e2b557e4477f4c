"""Fixed window: the Python twin of ``lua/fixed_window.lua``.

At most ``limit`` per window of ``period``, windows aligned on multiples of the
period since the epoch. State: ``(window start µs, count)``.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from time import time_ns
from typing import Any

from ..decision import Decision
from ..metrics import NEAR_LIMIT_FACTOR
from ..rates import Rate
from ._driver import Check, Clock, Counters, FusedHit, Lock, Put, Store, ms

NAME = "fixed_window"
SHORT = "fw"
#: The script's two parameters per limit: (microseconds per token, burst), else
#: (limit, period in microseconds) and no burst.
BURST = False


def load(store: Store, key: str, now: int, period: int) -> tuple[int, int]:
    start = math.floor(now / period) * period
    v = store.get(key, now)
    if v is not None:
        s, count = v
        if s == start:
            return start, count
    return start, 0


def check(store: Store, key: str, now: int, cost: int, limit: int, period: int) -> Check:
    start, count = load(store, key, now, period)
    ends_in = start + period - now
    allowed = count + cost <= limit
    retry = 0
    if not allowed:
        retry = -1 if cost > limit else ends_in
    reset = ends_in if count > 0 else 0
    reset_hit = ends_in if count + cost > 0 else 0
    return Check(
        allowed,
        limit - count,
        reset,
        retry,
        limit - count - cost,
        reset_hit,
        reset_hit,
        (start, count + cost),
    )


def commit(store: Store, key: str, now: int, c: Check) -> None:
    store.set(key, c.state, now + ms(c.ttl_us) * 1000)


def refund(store: Store, key: str, now: int, cost: int, limit: int, period: int) -> tuple[int, int]:
    start, count = load(store, key, now, period)
    count = max(count - cost, 0)
    reset = 0
    if count == 0:
        store.delete(key)
    else:
        reset = start + period - now
        store.set(key, (start, count), now + ms(reset) * 1000)
    return limit - count, reset


# -- the in-process fast path -------------------------------------------------------------


def fused_hit(
    rate: Rate,
    limit: int,
    period: int,
    data: MutableMapping[str, Any],
    put: Put,
    lock: Lock,
    clock: Clock | None,
    counters: Counters | None = None,
) -> FusedHit:
    """``check`` + ``commit`` + the Decision for ``hit`` with one limit, in one function,
    on the in-process store: see ``token_bucket.fused_hit`` (tests/algorithms/test_fused.py)."""
    acquire, release = lock.acquire, lock.release
    floor, new, inf, shown = math.floor, tuple.__new__, math.inf, rate.burst
    near = -(-shown // NEAR_LIMIT_FACTOR)  # the same, in integers

    def hit(key: str, now: int | None, cost: int) -> Decision:
        acquire()  # not `with lock`: half the cost, on every decision
        try:
            if now is None:
                now = time_ns() // 1000 if clock is None else clock()
            start = floor(now / period) * period
            item = data.get(key)
            live = item is not None and item[1] > now
            count = 0
            if live:  # load()
                s, c = item[0]  # type: ignore[index]
                if s == start:
                    count = c
            ends_in = start + period - now
            if count + cost <= limit:  # commit()
                ttl = ends_in if count + cost > 0 else 0  # reset_hit
                expire_at = now + (-(-ttl // 1000) or 1) * 1000
                if item is not None:  # in place (an expired key too)
                    data[key] = ((start, count + cost), expire_at)
                    data.move_to_end(key)  # type: ignore[attr-defined]
                else:
                    put(key, (start, count + cost), expire_at, now)
                remaining = limit - count - cost
                if counters is not None:
                    counters.allowed += 1
                    if remaining < near:  # remaining * NEAR_LIMIT_FACTOR < limit
                        counters.near_limit += 1
                return new(
                    Decision,
                    (
                        True,
                        shown,
                        remaining,
                        (ends_in if count + cost > 0 else 0) / 1_000_000,
                        0.0,
                        rate,
                        (),
                    ),
                )
            if counters is not None:
                counters.denied += 1
        finally:
            release()
        return new(
            Decision,
            (
                False,
                shown,
                max(limit - count, 0),
                (ends_in if count > 0 else 0) / 1_000_000,
                inf if cost > limit else ends_in / 1_000_000,
                rate,
                (),
            ),
        )

    return hit

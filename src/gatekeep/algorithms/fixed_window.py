"""Fixed window: the Python twin of ``lua/fixed_window.lua``.

At most ``limit`` per window of ``period``, windows aligned on multiples of the
period since the epoch. State: ``(window start µs, count)``.
"""

from __future__ import annotations

import math

from ._driver import Check, Store, ms

NAME = "fixed_window"
SHORT = "fw"


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
    return (allowed, limit - count, reset, retry,
            limit - count - cost, reset_hit, (start, count + cost), ends_in)


def commit(store: Store, key: str, now: int, c: Check) -> None:
    store.set(key, c[6], now + ms(c[7]) * 1000)


def refund(store: Store, key: str, now: int, cost: int, limit: int, period: int
           ) -> tuple[int, int]:
    start, count = load(store, key, now, period)
    count = max(count - cost, 0)
    reset = 0
    if count == 0:
        store.delete(key)
    else:
        reset = start + period - now
        store.set(key, (start, count), now + ms(reset) * 1000)
    return limit - count, reset

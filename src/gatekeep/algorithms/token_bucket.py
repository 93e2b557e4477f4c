"""Token bucket (the default): the Python twin of ``lua/token_bucket.lua``.

Capacity = burst, continuous refill. The bucket's content is kept as
microseconds of refill (``level`` = tokens x interval), so refill is one
microsecond per microsecond and every number is an exact integer. ``ts`` is when
the level was last brought up to date. State: ``(level, ts)``.
"""

from __future__ import annotations

import math

from ._driver import Check, Store, ms

NAME = "token_bucket"
SHORT = "tb"


def load(store: Store, key: str, now: int, interval: int, burst: int) -> tuple[int, int]:
    capacity = burst * interval
    v = store.get(key, now)
    if v is None:
        return capacity, now
    level, ts = v
    level = min(capacity, level + max(0, now - ts))
    return level, max(ts, now)


def check(store: Store, key: str, now: int, cost: int, interval: int, burst: int) -> Check:
    capacity = burst * interval
    level, ts = load(store, key, now, interval, burst)
    need = cost * interval
    allowed = need <= level
    retry = 0
    if not allowed:
        retry = -1 if cost > burst else need - level
    left = level - need
    return (allowed, math.floor(level / interval), capacity - level, retry,
            math.floor(left / interval), capacity - left, (left, ts), capacity - left)


def commit(store: Store, key: str, now: int, c: Check) -> None:
    store.set(key, c[6], now + ms(c[7]) * 1000)


def refund(store: Store, key: str, now: int, cost: int, interval: int, burst: int
           ) -> tuple[int, int]:
    capacity = burst * interval
    level, ts = load(store, key, now, interval, burst)
    level = min(capacity, level + cost * interval)
    if level == capacity:
        store.delete(key)  # a full bucket is the same as no bucket
    else:
        store.set(key, (level, ts), now + ms(capacity - level) * 1000)
    return math.floor(level / interval), capacity - level

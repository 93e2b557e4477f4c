"""Token bucket (the default): the Python twin of ``lua/token_bucket.lua``.

Capacity = burst, continuous refill. The bucket's content is kept as
microseconds of refill (``level`` = tokens x interval), so refill is one
microsecond per microsecond and every number is an exact integer. ``ts`` is when
the level was last brought up to date. State: ``(level, ts)``.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from contextlib import AbstractContextManager
from time import time_ns
from typing import Any

from ..decision import Decision
from ..rates import Rate
from ._driver import Check, Clock, FusedHit, Put, Store, ms

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


# -- the in-process fast path -------------------------------------------------------------

def fused_hit(rate: Rate, interval: int, burst: int, data: MutableMapping[str, Any],
              put: Put, lock: AbstractContextManager[Any], clock: Clock | None) -> FusedHit:
    """``check`` + ``commit`` + the :class:`~gatekeep.decision.Decision`, for ``hit`` with
    one limit on the in-process store (``MemoryStore.data``), in one function.

    The same arithmetic as above, inlined: it is the default algorithm's hot path
    in every app without Redis, and a call costs more than the arithmetic here.
    tests/algorithms/test_fused.py proves it gives the decisions and the state of
    ``check``/``commit`` as :func:`~gatekeep.algorithms.run` drives them.
    """
    capacity = burst * interval
    floor, new, inf = math.floor, tuple.__new__, math.inf

    def hit(key: str, now: int | None, cost: int) -> Decision:
        with lock:
            if now is None:
                now = time_ns() // 1000 if clock is None else clock()
            item = data.get(key)
            live = item is not None and item[1] > now
            if live:  # load()
                level, ts = item[0]  # type: ignore[index]
                if ts < now:
                    level = min(capacity, level + now - ts)
                    ts = now
            else:
                level, ts = capacity, now
            need = cost * interval
            if need <= level:  # commit()
                left = level - need
                ttl = capacity - left
                if item is not None:  # in place (an expired key too)
                    data[key] = ((left, ts), now + (-(-ttl // 1000) or 1) * 1000)
                    data.move_to_end(key)  # type: ignore[attr-defined]
                else:
                    put(key, (left, ts), now + (-(-ttl // 1000) or 1) * 1000, now)
                return new(Decision, (True, burst, floor(left / interval), ttl / 1_000_000,
                                      0.0, rate, ()))
        return new(Decision, (False, burst, floor(level / interval),
                              (capacity - level) / 1_000_000,
                              inf if cost > burst else (need - level) / 1_000_000, rate, ()))

    return hit

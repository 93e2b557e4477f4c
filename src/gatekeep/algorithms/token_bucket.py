"""Token bucket (the default): the Python twin of ``lua/token_bucket.lua``.

Capacity = burst, continuous refill. The bucket's content is kept as
microseconds of refill (``level`` = tokens x interval), so refill is one
microsecond per microsecond and every number is an exact integer. ``ts`` is when
the level was last brought up to date. State: ``(level, ts)``.
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

NAME = "token_bucket"
SHORT = "tb"
#: The script's two parameters per limit: (microseconds per token, burst), else
#: (limit, period in microseconds) and no burst.
BURST = True


def load(store: Store, key: str, now: int, capacity: int) -> tuple[int, int]:
    v = store.get(key, now)
    if v is None:
        return capacity, now
    level, ts = v
    if ts < now:  # refill; a clock that stepped back refills nothing
        level = min(capacity, level + now - ts)
        ts = now
    return level, ts


def check(store: Store, key: str, now: int, cost: int, interval: int, burst: int) -> Check:
    capacity = burst * interval
    level, ts = load(store, key, now, capacity)
    need = cost * interval
    allowed = need <= level
    retry = 0
    if not allowed:
        retry = -1 if cost > burst else need - level
    left = level - need
    return Check(
        allowed,
        math.floor(level / interval),
        capacity - level,
        retry,
        math.floor(left / interval),
        capacity - left,
        capacity - left,
        (left, ts),
    )


def commit(store: Store, key: str, now: int, c: Check) -> None:
    store.set(key, c.state, now + ms(c.ttl_us) * 1000)


def refund(
    store: Store, key: str, now: int, cost: int, interval: int, burst: int
) -> tuple[int, int]:
    capacity = burst * interval
    level, ts = load(store, key, now, capacity)
    level = min(capacity, level + cost * interval)
    if level == capacity:
        store.delete(key)  # a full bucket is the same as no bucket
    else:
        store.set(key, (level, ts), now + ms(capacity - level) * 1000)
    return math.floor(level / interval), capacity - level


# -- the in-process fast path -------------------------------------------------------------


def fused_hit(
    rate: Rate,
    interval: int,
    burst: int,
    data: MutableMapping[str, Any],
    put: Put,
    lock: Lock,
    clock: Clock | None,
    counters: Counters | None = None,
) -> FusedHit:
    """``check`` + ``commit`` + the :class:`~gatekeep.decision.Decision`, for ``hit`` with
    one limit on the in-process store (``MemoryStore.data``), in one function.

    The same arithmetic as above, inlined: it is the default algorithm's hot path
    in every app without Redis, and a call costs more than the arithmetic here.
    tests/algorithms/test_fused.py proves it gives the decisions and the state of
    ``check``/``commit`` as :func:`~gatekeep.algorithms.run` drives them.
    """
    capacity = burst * interval
    acquire, release = lock.acquire, lock.release
    near = -(-burst // NEAR_LIMIT_FACTOR)  # the same, in integers
    floor, new, inf = math.floor, tuple.__new__, math.inf

    def hit(key: str, now: int | None, cost: int) -> Decision:
        acquire()  # not `with lock`: half the cost, on every decision
        try:
            if now is None:
                now = time_ns() // 1000 if clock is None else clock()
            item = data.get(key)
            live = item is not None and item[1] > now
            if live:  # load()
                level, ts = item[0]  # type: ignore[index]
                if ts < now:
                    level += now - ts
                    if level > capacity:
                        level = capacity
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
                remaining = floor(left / interval)
                if counters is not None:
                    counters.allowed += 1
                    if remaining < near:  # remaining * NEAR_LIMIT_FACTOR < limit
                        counters.near_limit += 1
                return new(Decision, (True, burst, remaining, ttl / 1_000_000, 0.0, rate, ()))
            if counters is not None:
                counters.denied += 1
        finally:
            release()
        return new(
            Decision,
            (
                False,
                burst,
                max(floor(level / interval), 0),  # 0 in debt (a settled reservation)
                (capacity - level) / 1_000_000,
                inf if cost > burst else (need - level) / 1_000_000,
                rate,
                (),
            ),
        )

    return hit

"""Sliding window counter: the Python twin of ``lua/sliding_window.lua``.

O(1) memory: the counts of the current and the previous fixed window; the
previous one is weighted by how much of it the sliding window still covers
(``estimate``). State: ``(window start µs, current count, previous count)``.

Error bound: the estimate assumes the previous window's requests were spread
evenly. It never exceeds the limit, but a true sliding window of one period can
hold up to 2 x limit when the previous window's requests all came at its very
end (the same worst case as a fixed window, and rare in real traffic).
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

NAME = "sliding_window"
SHORT = "sw"
#: The script's two parameters per limit: (microseconds per token, burst), else
#: (limit, period in microseconds) and no burst.
BURST = False


def load(store: Store, key: str, now: int, period: int) -> tuple[int, int, int]:
    start = math.floor(now / period) * period
    v = store.get(key, now)
    if v is not None:
        s, cur, prev = v
        if s == start:
            return start, cur, prev
        if s == start - period:
            return start, 0, cur
    return start, 0, 0


def wait(cost: int, limit: int, period: int, elapsed: int, cur: int, prev: int) -> int:
    """Microseconds until ``estimate + cost <= limit`` holds, counted from now."""
    if cur + cost <= limit:
        # within this window, as the previous window's weight decays
        return math.ceil(period - (limit - cur - cost) * period / prev - elapsed)
    # in the next window, where this window's count becomes the previous one
    return math.ceil(period - elapsed + period - (limit - cost) * period / cur)


def reset_in(now: int, start: int, period: int, cur: int, prev: int) -> int:
    if cur > 0:
        return start + 2 * period - now
    if prev > 0:
        return start + period - now
    return 0


def check(store: Store, key: str, now: int, cost: int, limit: int, period: int) -> Check:
    start, cur, prev = load(store, key, now, period)
    elapsed = now - start
    estimate = prev * (period - elapsed) / period + cur
    allowed = estimate + cost <= limit
    retry = 0
    if not allowed:
        retry = -1 if cost > limit else wait(cost, limit, period, elapsed, cur, prev)
    return Check(
        allowed,
        max(math.floor(limit - estimate), 0),
        reset_in(now, start, period, cur, prev),
        retry,
        max(math.floor(limit - estimate - cost), 0),
        reset_in(now, start, period, cur + cost, prev),
        reset_in(now, start, period, cur + cost, prev),
        (start, cur + cost, prev),
    )


def commit(store: Store, key: str, now: int, c: Check) -> None:
    store.set(key, c.state, now + ms(c.ttl_us) * 1000)


def refund(store: Store, key: str, now: int, cost: int, limit: int, period: int) -> tuple[int, int]:
    start, cur, prev = load(store, key, now, period)
    cur = max(cur - cost, 0)
    if cur == 0 and prev == 0:
        store.delete(key)
    else:
        store.set(key, (start, cur, prev), now + ms(reset_in(now, start, period, cur, prev)) * 1000)
    estimate = prev * (period - (now - start)) / period + cur
    return max(math.floor(limit - estimate), 0), reset_in(now, start, period, cur, prev)


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
    near = -(-shown // NEAR_LIMIT_FACTOR)  # remaining * NEAR_LIMIT_FACTOR < limit, in integers

    def hit(key: str, now: int | None, cost: int) -> Decision:
        acquire()  # not `with lock`: half the cost, on every decision
        try:
            if now is None:
                now = time_ns() // 1000 if clock is None else clock()
            start = floor(now / period) * period
            item = data.get(key)
            cur = prev = 0
            if item is not None and item[1] > now:  # load()
                s, c, p = item[0]
                if s == start:
                    cur, prev = c, p
                elif s == start - period:
                    prev = c
            elapsed = now - start
            estimate = prev * (period - elapsed) / period + cur
            if estimate + cost <= limit:  # commit()
                ttl = reset_in(now, start, period, cur + cost, prev)
                expire_at = now + (-(-ttl // 1000) or 1) * 1000
                if item is not None:  # in place (an expired key too)
                    data[key] = ((start, cur + cost, prev), expire_at)
                    data.move_to_end(key)  # type: ignore[attr-defined]
                else:
                    put(key, (start, cur + cost, prev), expire_at, now)
                remaining = max(floor(limit - estimate - cost), 0)
                if counters is not None:
                    counters.allowed += 1
                    if remaining < near:
                        counters.near_limit += 1
                return new(
                    Decision,
                    (
                        True,
                        shown,
                        remaining,
                        reset_in(now, start, period, cur + cost, prev) / 1_000_000,
                        0.0,
                        rate,
                        (),
                    ),
                )
            if counters is not None:
                counters.denied += 1
        finally:
            release()
        retry = inf if cost > limit else wait(cost, limit, period, elapsed, cur, prev) / 1_000_000
        return new(
            Decision,
            (
                False,
                shown,
                max(floor(limit - estimate), 0),
                reset_in(now, start, period, cur, prev) / 1_000_000,
                retry,
                rate,
                (),
            ),
        )

    return hit

"""Sliding log: the Python twin of ``lua/sliding_log.lua``.

Exact: one timestamp per admitted unit of cost, O(limit) memory. A request is
admitted when fewer than limit - cost + 1 entries lie within the last period.

The Lua list is newest first (LPUSH); this twin keeps a Python list oldest first
(append), so ``log[-1 - i]`` here is ``LINDEX key i`` there.
"""

from __future__ import annotations

from bisect import bisect_right

from ._driver import Check, Store, ms

NAME = "sliding_log"
SHORT = "sl"
#: The script's two parameters per limit: (microseconds per token, burst), else
#: (limit, period in microseconds) and no burst.
BURST = False


def load(store: Store, key: str, now: int, period: int) -> tuple[list[int], int, int | None]:
    """The log, how many entries are newer than now - period, and the newest one.

    (The Lua reads the oldest entry first: when it is live, every entry is; else it
    searches, as ``bisect_right`` does here. The count is the same.)"""
    log: list[int] = store.get(key, now) or []
    count = len(log) - bisect_right(log, now - period)
    head = log[-1] if count > 0 else None
    return log, count, head


def check(store: Store, key: str, now: int, cost: int, limit: int, period: int) -> Check:
    log, count, head = load(store, key, now, period)
    allowed = count + cost <= limit
    retry = 0
    if not allowed:
        if cost > limit:
            retry = -1
        else:
            # the entry whose expiry leaves room for this cost
            retry = log[-1 - (limit - cost)] + period - now
    reset = head + period - now if head is not None else 0
    # keep the log sorted even if the clock steps back
    ts = max(now, head if head is not None else now)
    reset_hit = ts + period - now if cost > 0 else reset
    return Check(
        allowed,
        limit - count,
        reset,
        retry,
        limit - count - cost,
        reset_hit,
        reset_hit,
        (ts, cost, count + cost, len(log)),
    )


def commit(store: Store, key: str, now: int, c: Check) -> None:
    # n: the log's length before; when every entry was live (n == count), the log
    # holds exactly ``keep`` entries after the push and the Lua skips its LTRIM
    ts, cost, keep, n = c.state
    if keep == 0:
        store.delete(key)
        return
    log: list[int] = store.get(key, now) or []
    log.extend([ts] * cost)
    if n + cost > keep:
        del log[:-keep]  # drop expired entries
    store.set(key, log, now + ms(c.ttl_us) * 1000)


def refund(store: Store, key: str, now: int, cost: int, limit: int, period: int) -> tuple[int, int]:
    log, count, _head = load(store, key, now, period)
    give = min(cost, count)
    if give == count:
        store.delete(key)
    elif give > 0:
        del log[-give:]
        del log[: -(count - give)]
    count = count - give
    reset = log[-1] + period - now if count > 0 else 0
    if give > 0 and count > 0:
        store.set(key, log, now + ms(reset) * 1000)
    return limit - count, reset

"""GCRA, the generic cell rate algorithm: the Python twin of ``lua/gcra.lua``.

One key: the theoretical arrival time (TAT) of the next request. ``backlog`` is
how far the TAT runs ahead of now; a request of cost c adds c x interval to it
and is allowed while the backlog stays within the tolerance burst x interval.
State: ``tat`` (integer microseconds).
"""

from __future__ import annotations

import math

from ._driver import Check, Store, ms

NAME = "gcra"
SHORT = "gcra"


def load(store: Store, key: str, now: int) -> int:
    tat: int | None = store.get(key, now)
    if tat is None:
        tat = now
    return max(tat - now, 0)


def check(store: Store, key: str, now: int, cost: int, interval: int, burst: int) -> Check:
    tolerance = burst * interval
    backlog = load(store, key, now)
    new_backlog = backlog + cost * interval
    allowed = new_backlog <= tolerance
    retry = 0
    if not allowed:
        retry = -1 if cost > burst else new_backlog - tolerance
    return (allowed, math.floor((tolerance - backlog) / interval), backlog, retry,
            math.floor((tolerance - new_backlog) / interval), new_backlog,
            now + new_backlog, new_backlog)


def commit(store: Store, key: str, now: int, c: Check) -> None:
    store.set(key, c[6], now + ms(c[7]) * 1000)


def refund(store: Store, key: str, now: int, cost: int, interval: int, burst: int
           ) -> tuple[int, int]:
    tolerance = burst * interval
    backlog = max(load(store, key, now) - cost * interval, 0)
    if backlog == 0:
        store.delete(key)
    else:
        store.set(key, now + backlog, now + ms(backlog) * 1000)
    return math.floor((tolerance - backlog) / interval), backlog

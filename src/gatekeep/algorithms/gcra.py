"""GCRA, the generic cell rate algorithm: the Python twin of ``lua/gcra.lua``.

One key: the theoretical arrival time (TAT) of the next request. ``backlog`` is
how far the TAT runs ahead of now; a request of cost c adds c x interval to it
and is allowed while the backlog stays within the tolerance burst x interval.
State: ``tat`` (integer microseconds).
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

NAME = "gcra"
SHORT = "gcra"
#: The script's two parameters per limit: (microseconds per token, burst), else
#: (limit, period in microseconds) and no burst.
BURST = True


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
    return Check(
        allowed,
        math.floor((tolerance - backlog) / interval),
        backlog,
        retry,
        math.floor((tolerance - new_backlog) / interval),
        new_backlog,
        new_backlog,
        now + new_backlog,
    )


def commit(store: Store, key: str, now: int, c: Check) -> None:
    store.set(key, c.state, now + ms(c.ttl_us) * 1000)


def refund(
    store: Store, key: str, now: int, cost: int, interval: int, burst: int
) -> tuple[int, int]:
    tolerance = burst * interval
    backlog = max(load(store, key, now) - cost * interval, 0)
    if backlog == 0:
        store.delete(key)
    else:
        store.set(key, now + backlog, now + ms(backlog) * 1000)
    return math.floor((tolerance - backlog) / interval), backlog


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
    """``check`` + ``commit`` + the Decision for ``hit`` with one limit, in one function,
    on the in-process store: see ``token_bucket.fused_hit`` (tests/algorithms/test_fused.py)."""
    tolerance = burst * interval
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
            backlog = item[0] - now if live else 0  # type: ignore[index]
            if backlog < 0:
                backlog = 0
            new_backlog = backlog + cost * interval
            if new_backlog <= tolerance:  # commit()
                expire_at = now + (-(-new_backlog // 1000) or 1) * 1000
                if item is not None:  # in place (an expired key too)
                    data[key] = (now + new_backlog, expire_at)
                    data.move_to_end(key)  # type: ignore[attr-defined]
                else:
                    put(key, now + new_backlog, expire_at, now)
                remaining = floor((tolerance - new_backlog) / interval)
                if counters is not None:
                    counters.allowed += 1
                    if remaining < near:  # remaining * NEAR_LIMIT_FACTOR < limit
                        counters.near_limit += 1
                return new(
                    Decision, (True, burst, remaining, new_backlog / 1_000_000, 0.0, rate, ())
                )
            if counters is not None:
                counters.denied += 1
        finally:
            release()
        return new(
            Decision,
            (
                False,
                burst,
                max(floor((tolerance - backlog) / interval), 0),
                backlog / 1_000_000,
                inf if cost > burst else (new_backlog - tolerance) / 1_000_000,
                rate,
                (),
            ),
        )

    return hit

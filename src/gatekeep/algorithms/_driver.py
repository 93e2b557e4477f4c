"""The Python twin of ``lua/_prelude.lua`` + ``lua/_driver.lua``.

Each algorithm module provides ``check``, ``commit`` and ``refund`` with the same
names, arguments and results as the functions of its Lua script; :func:`run`
calls them exactly as the Lua driver does and returns the same flat reply.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from ..decision import Decision
    from ..rates import Rate

__all__ = [
    "CHARGE",
    "HIT",
    "PEEK",
    "REFUND",
    "Check",
    "Clock",
    "Counters",
    "FusedHit",
    "Lock",
    "Put",
    "Store",
    "bucket_params",
    "ms",
    "run",
    "window_params",
]

HIT = "hit"
PEEK = "peek"
REFUND = "refund"
#: Consume even beyond the limit (a reservation settled above its estimate): the
#: state records the debt, which later calls wait out. Replies as an allowed hit.
CHARGE = "charge"


class Check(NamedTuple):
    """What ``check`` returns: the values the Lua ``check`` returns, in the same order
    (``lua/_prelude.lua``; the Lua returns them as values, not as a table, and its
    ``commit(key, ttl, state...)`` takes the last two fields as values too)."""

    #: The cost fits now.
    allowed: bool
    #: What remains, and microseconds until the limit is whole again, as things are.
    remaining: int
    reset_us: int
    #: Microseconds until this cost would fit (0 when allowed, -1: never).
    retry_us: int
    #: ``remaining`` and ``reset_us`` once the cost is committed.
    remaining_if_hit: int
    reset_if_hit_us: int
    #: The key's lifetime once committed (the time until that state stops mattering),
    #: and what ``commit`` writes.
    ttl_us: int
    state: Any


class Store(Protocol):
    """The few Redis commands the twins need (GET, SET PX, DEL); values are Python
    objects. Expiry is judged on the clock of the script being run (``now``)."""

    def get(self, key: str, now: int) -> Any: ...

    def set(self, key: str, value: Any, expire_at: int) -> None: ...

    def delete(self, key: str) -> None: ...


class Algorithm(Protocol):
    """What an algorithm module provides (see docs in ``algorithms/__init__.py``)."""

    NAME: str
    SHORT: str
    BURST: bool

    def check(self, store: Store, key: str, now: int, cost: int, a: int, b: int) -> Check: ...

    def commit(self, store: Store, key: str, now: int, c: Check) -> None: ...

    def refund(
        self, store: Store, key: str, now: int, cost: int, a: int, b: int
    ) -> tuple[int, int]: ...


#: The in-process fast path of one algorithm for ``hit`` with one limit: ``(key, now
#: or None, cost) -> Decision``, built by the algorithm's ``fused_hit`` for one
#: ``MemoryBackend`` (see ``token_bucket.fused_hit``).
FusedHit = Callable[[str, "int | None", int], "Decision"]
#: ``MemoryStore.set(key, value, expire_at, now)``: how a fused path adds a key.
Put = Callable[[str, Any, int, int], None]
#: A clock in microseconds since the epoch.
Clock = Callable[[], int]


class Counters(Protocol):
    """A rule's decision counters (``gatekeep.metrics.RuleCounters``), which a fused
    path counts itself, under its lock."""

    allowed: int
    denied: int
    near_limit: int


class Lock(Protocol):
    """``threading.Lock``, as the fused paths use it."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...

    def release(self) -> None: ...


def ms(us: float) -> int:
    """Round a TTL up to whole milliseconds, as PEXPIRE sees it; never 0."""
    return max(1, math.ceil(us / 1000))


def bucket_params(rate: Rate) -> tuple[int, int]:
    """The two parameters of a bucket algorithm: microseconds per token, capacity."""
    return (rate.interval_us, rate.burst)


def window_params(name: str, rate: Rate) -> tuple[int, int]:
    """The two parameters of a window algorithm: the limit and the period (µs)."""
    if rate.has_burst:
        raise ValueError(
            f"{name} admits 'limit' per window and has no burst; "
            f"drop 'burst' from {str(rate)!r} or use token_bucket or gcra"
        )
    return (rate.limit, rate.period_us)


def run(
    algo: Algorithm,
    store: Store,
    keys: list[str],
    now: int,
    mode: str,
    cost: int,
    params: Sequence[tuple[int, int]],
) -> list[int]:
    out: list[int] = []
    if mode == REFUND:
        for key, (a, b) in zip(keys, params, strict=False):
            remaining, reset = algo.refund(store, key, now, cost, a, b)
            out += (1, remaining, reset, 0)
        return out

    if len(keys) == 1:  # the common case, without the loops (same result)
        ((a, b),) = params
        c = algo.check(store, keys[0], now, cost, a, b)
        if mode == CHARGE or (mode == HIT and c.allowed):
            algo.commit(store, keys[0], now, c)
            return [1, c.remaining_if_hit, c.reset_if_hit_us, 0]
        return [1 if c.allowed else 0, c.remaining, c.reset_us, c.retry_us]

    checks = [
        algo.check(store, key, now, cost, a, b) for key, (a, b) in zip(keys, params, strict=False)
    ]
    consume = mode == CHARGE or (mode == HIT and all(c.allowed for c in checks))
    for key, c in zip(keys, checks, strict=False):
        if consume:
            algo.commit(store, key, now, c)
            out += (1, c.remaining_if_hit, c.reset_if_hit_us, 0)
        else:
            out += (1 if c.allowed else 0, c.remaining, c.reset_us, c.retry_us)
    return out

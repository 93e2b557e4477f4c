"""The in-process backend: the Python twins of the Lua scripts, under a lock."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from time import time_ns
from typing import Any, TypeVar

from ..algorithms import run
from ..algorithms._blocks import run_blocks
from ..algorithms._driver import Counters, FusedHit
from .base import Plan

__all__ = ["MemoryBackend", "MemoryStore"]

T = TypeVar("T")


class MemoryStore:
    """A bounded key/value store with per-key expiry and LRU eviction.

    It answers the twins' GET / SET PX / DEL as Redis would, on the clock of the
    script being run (the ``now`` it is given, in µs), so a frozen clock in
    tests freezes expiry too. Not locked: the backends hold a lock around every
    script run.

    Expired keys are dropped when read, and every 8th new key triggers a sweep of
    the least recently used ones (the likeliest to have expired), so a store
    that is only written to stays small as well. That sweep leaves the keys that
    expired less than ``GRACE`` ago: a key used again just after it expired (a
    bucket that has just refilled, hit again) is then updated in place by the
    fused fast paths instead of being dropped and added again. Expired is
    expired either way: no read sees them.
    """

    __slots__ = ("__weakref__", "_data", "_inserts", "_now", "evictions", "max_keys")

    #: How many of the least recently used keys one sweep checks for expiry.
    SWEEP = 32
    #: How long (µs) an expired key may stay until a sweep that a new key triggers.
    GRACE = 1_000_000

    def __init__(self, max_keys: int = 100_000) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be a positive int, got {max_keys!r}")
        self._data: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._inserts = 0
        self._now = 0  # the latest clock reading seen, for sweeps
        self.max_keys = max_keys
        #: Keys dropped to stay under ``max_keys`` (not counting expiry).
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def data(self) -> OrderedDict[str, tuple[Any, int]]:
        """The key space itself, ``key -> (value, expire_at µs)``, least recently used
        first, for the fused fast paths (``<algorithm>.fused_hit``): they read it and
        overwrite live keys in place, and add new keys through :meth:`set`."""
        return self._data

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, now: int) -> Any:
        """The value, or None when missing or expired; refreshes the key's LRU place."""
        self._now = now
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= now:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[0]

    def set(self, key: str, value: Any, expire_at: int, now: int | None = None) -> None:
        """Store ``value`` until ``expire_at`` (µs); the key becomes the most recently used.

        ``now``: the clock reading of the caller, for sweeps, when it did not ``get``
        the key first (the fused fast paths read ``data`` directly).
        """
        if now is not None:
            self._now = now
        data = self._data
        size = len(data)
        data[key] = (value, expire_at)
        if len(data) == size:
            data.move_to_end(key)
        else:  # a new key
            if size >= self.max_keys:
                data.popitem(last=False)
                self.evictions += 1
            self._inserts += 1
            if not self._inserts & 7:
                self.sweep(self._now - self.GRACE)

    def sweep(self, now: int, budget: int = SWEEP) -> int:
        """Drop up to ``budget`` expired keys from the least recently used end."""
        data = self._data
        pop = data.popitem
        dropped = 0
        while data and dropped < budget:
            key, item = pop(last=False)
            if item[1] > now:  # not expired: put it back where it was
                data[key] = item
                data.move_to_end(key, last=False)
                break
            dropped += 1
        return dropped

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def ttl_us(self, key: str, now: int) -> int | None:
        """Microseconds until ``key`` expires, or None when it does not exist."""
        item = self._data.get(key)
        if item is None or item[1] <= now:
            return None
        return item[1] - now

    def clear(self) -> None:
        self._data.clear()

    def watch_source(self) -> Callable[[], dict[str, Any]]:
        """A reader for :meth:`gatekeep.metrics.Metrics.watch` that does not keep
        the store alive."""
        ref = weakref.ref(self)

        def read() -> dict[str, Any]:
            store = ref()
            if store is None:
                return {"kind": "memory_store", "keys": 0, "evictions": 0}
            return {"kind": "memory_store", "keys": len(store), "evictions": store.evictions}

        return read


class MemoryBackend:
    """Limiter state in this process: thread-safe, asyncio-safe, bounded.

    >>> from gatekeep import Limiter, MemoryBackend
    >>> limiter = Limiter("10/second", backend=MemoryBackend(max_keys=50_000))

    Each decision runs the Python twin of the Lua script under one lock; nothing
    awaits or blocks while it is held, so the async methods simply call the sync
    ones. ``clock`` returns microseconds since the epoch.
    """

    def __init__(self, max_keys: int = 100_000, *, clock: Any = None) -> None:
        self.store = MemoryStore(max_keys)
        self._lock = threading.Lock()
        self._clock = clock

    def limit(
        self, plan: Plan, keys: list[str], now: int | None, mode: str, cost: int
    ) -> list[int]:
        with self._lock:
            if now is None:
                now = time_ns() // 1000 if self._clock is None else self._clock()
            if plan.blocks:
                return run_blocks(
                    plan.twin, self.store, keys, now, mode, cost, plan.params, plan.blocks
                )
            return run(plan.twin, self.store, keys, now, mode, cost, plan.params)

    def limit_many(
        self, plan: Plan, keys: Sequence[list[str]], now: int | None, mode: str, cost: int
    ) -> list[list[int]]:
        return [self.limit(plan, k, now, mode, cost) for k in keys]

    def run_twin(self, twin: Callable[[MemoryStore, int], T], now: int | None = None) -> T:
        """``twin(store, now)`` under this backend's lock, ``now`` (µs) from its clock when
        None: how the twins of scripts other than the limiters' run here (leases)."""
        with self._lock:
            if now is None:
                now = time_ns() // 1000 if self._clock is None else self._clock()
            return twin(self.store, now)

    def fused_hit(self, plan: Plan, counters: Counters | None = None) -> FusedHit | None:
        """``hit`` for ``plan`` in one function, ``(key, now, cost) -> Decision``, when its
        algorithm has a fused path (all but the sliding log) and it has one
        limit; else None (the limiter then calls :meth:`limit`). ``counters``: the
        limiter's metrics counters, which the fused function counts under its lock.

        Same decisions and state as :meth:`limit` (tests/algorithms/test_fused.py): a
        decision in-process is a few µs of Python, of which the calls between the
        limiter, this backend, the driver and the twin's functions were half.
        """
        make = getattr(plan.twin, "fused_hit", None)
        if make is None or len(plan.rates) != 1 or plan.blocks:
            return None
        ((a, b),) = plan.params
        fast: FusedHit = make(
            plan.rates[0], a, b, self.store.data, self.store.set, self._lock, self._clock, counters
        )
        return fast

    def delete(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self.store.delete(key)

    async def alimit(
        self, plan: Plan, keys: list[str], now: int | None, mode: str, cost: int
    ) -> list[int]:
        return self.limit(plan, keys, now, mode, cost)

    async def alimit_many(
        self, plan: Plan, keys: Sequence[list[str]], now: int | None, mode: str, cost: int
    ) -> list[list[int]]:
        return self.limit_many(plan, keys, now, mode, cost)

    async def adelete(self, keys: list[str]) -> None:
        self.delete(keys)

    def __repr__(self) -> str:
        return f"MemoryBackend(keys={len(self.store)}, max_keys={self.store.max_keys})"

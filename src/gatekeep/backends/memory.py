"""The in-process backend: the Python twins of the Lua scripts, under a lock."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..algorithms import run
from .base import Plan

__all__ = ["MemoryBackend", "MemoryStore"]


class MemoryStore:
    """A bounded key/value store with per-key expiry and LRU eviction.

    Not locked: :class:`MemoryBackend` holds its lock around every script run.
    Expiry is judged on the clock the scripts run on (the ``now`` they are given),
    so a frozen clock in tests freezes expiry too. Expired keys are dropped when
    read, and :meth:`sweep` (run after every decision) checks a few of the least
    recently used ones,
    so a store that is only written to stays small as well.
    """

    __slots__ = ("_data", "evictions", "max_keys")

    #: How many of the least recently used keys each write checks for expiry.
    SWEEP = 2

    def __init__(self, max_keys: int = 100_000) -> None:
        if not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be a positive int, got {max_keys!r}")
        self._data: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self.max_keys = max_keys
        #: Keys dropped to stay under ``max_keys`` (not counting expiry).
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, now: int) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= now:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[0]

    def set(self, key: str, value: Any, expire_at: int) -> None:
        data = self._data
        data[key] = (value, expire_at)
        data.move_to_end(key)
        if len(data) > self.max_keys:
            data.popitem(last=False)
            self.evictions += 1

    def sweep(self, now: int, budget: int = SWEEP) -> int:
        """Drop up to ``budget`` expired keys from the least recently used end."""
        data = self._data
        dropped = 0
        for _ in range(budget):
            if not data:
                break
            key, (_, expire_at) = next(iter(data.items()))
            if expire_at > now:
                break
            del data[key]
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


def _clock_us() -> int:
    return time.time_ns() // 1000


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
        self._clock = clock or _clock_us

    def limit(self, plan: Plan, keys: list[str], now: int | None, mode: str, cost: int
              ) -> list[int]:
        with self._lock:
            if now is None:
                now = self._clock()
            reply = run(plan.algorithm.algorithm, self.store, keys, now, mode, cost,
                        plan.params)  # type: ignore[arg-type]
            self.store.sweep(now)
            return reply

    def limit_many(self, plan: Plan, keys: Sequence[list[str]], now: int | None, mode: str,
                   cost: int) -> list[list[int]]:
        return [self.limit(plan, k, now, mode, cost) for k in keys]

    def delete(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self.store.delete(key)

    async def alimit(self, plan: Plan, keys: list[str], now: int | None, mode: str, cost: int
                     ) -> list[int]:
        return self.limit(plan, keys, now, mode, cost)

    async def alimit_many(self, plan: Plan, keys: Sequence[list[str]], now: int | None,
                          mode: str, cost: int) -> list[list[int]]:
        return self.limit_many(plan, keys, now, mode, cost)

    async def adelete(self, keys: list[str]) -> None:
        self.delete(keys)

    def __repr__(self) -> str:
        return f"MemoryBackend(keys={len(self.store)}, max_keys={self.store.max_keys})"

"""The key space of the in-process session store: values with expiry, bounded.

The session twins keep hashes (``dict``) and sorted sets (``dict`` of scores) in
it. Expiry is judged on the ``now`` each call is given, the clock the twins run
on, so a frozen clock in tests freezes expiry too. Not locked: the executor holds
its lock around every script run.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

__all__ = ["Keyspace"]


class Keyspace:
    """Keys with an absolute expiry (µs), least recently used first; at most ``max_keys``."""

    __slots__ = ("_data", "evictions", "max_keys")

    #: How many of the least recently used keys each :meth:`sweep` checks.
    SWEEP = 4

    def __init__(self, max_keys: int = 100_000) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be a positive int, got {max_keys!r}")
        self._data: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self.max_keys = max_keys
        #: Keys dropped to stay within ``max_keys`` (not counting expiry).
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

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

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def ttl_us(self, key: str, now: int) -> int | None:
        """Microseconds until ``key`` expires, or None when it does not exist."""
        item = self._data.get(key)
        if item is None or item[1] <= now:
            return None
        return item[1] - now

    def sweep(self, now: int, budget: int = SWEEP) -> int:
        """Drop up to ``budget`` expired keys from the least recently used end."""
        data = self._data
        dropped = 0
        for _ in range(budget):
            if not data:
                break
            key = next(iter(data))
            if data[key][1] > now:
                break
            del data[key]
            dropped += 1
        return dropped

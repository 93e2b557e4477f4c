"""One circuit breaker per shard: a failing shard sends only its own keys to the fallback.

On Redis Cluster each primary serves a share of the slots. With one breaker for the
whole cluster, one master going down moved every key to the in-process fallback, and a
probe that happened to land on a healthy shard closed the breaker again. Here each
shard has its own :class:`~gatekeep.breaker.CircuitBreaker`, made on first use with
the settings of the backend's ``default`` one; a key's shard is what the client's slot
map says (``RedisBackend.shard``: the primary's ``host:port``). A probe is a call for a
key of the failed shard, so it goes to that shard.

Standalone and Sentinel deployments have one shard: every key gets ``default``.
A cluster client that has no slot map yet (before its first call) also answers
``default``. After a failover the promoted replica is a new primary with a new, closed
breaker; the failed primary's breaker is no longer asked and is dropped when the map
holds more than ``limit`` shards.

>>> from gatekeep.breaker import CircuitBreaker
>>> shards = ShardBreakers(CircuitBreaker(name="redis"), lambda key, aio: key[:1])
>>> shards.for_key("a:1") is shards.for_key("a:2"), shards.for_key("b:1").name
(True, 'redis[b]')
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .breaker import CircuitBreaker, State

__all__ = ["Locate", "ShardBreakers"]

#: ``locate(key, aio)``: the shard ``key`` lives on (None: not known, or only one).
Locate = Callable[[str, bool], "str | None"]


class ShardBreakers:
    """The breakers of one deployment, one per shard; ``default`` where there is one shard."""

    def __init__(
        self, default: CircuitBreaker, locate: Locate | None = None, *, limit: int = 256
    ) -> None:
        self.default = default
        self._locate = locate
        self._limit = limit
        self._by_shard: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    @property
    def sharded(self) -> bool:
        """Whether keys may live on several shards (a cluster)."""
        return self._locate is not None

    def for_key(self, key: str, aio: bool = False) -> CircuitBreaker:
        """The breaker of the shard ``key`` lives on."""
        if self._locate is None:
            return self.default
        return self.get(self._locate(key, aio))

    def get(self, shard: str | None) -> CircuitBreaker:
        """The breaker of ``shard`` (made closed on first use); ``default`` for None."""
        if shard is None:
            return self.default
        breaker = self._by_shard.get(shard)
        if breaker is None:
            with self._lock:
                breaker = self._by_shard.get(shard)
                if breaker is None:
                    if len(self._by_shard) >= self._limit:
                        self._forget_closed()
                    breaker = self.default.sibling(f"{self.default.name}[{shard}]")
                    self._by_shard[shard] = breaker
        return breaker

    def _forget_closed(self) -> None:
        for shard, breaker in list(self._by_shard.items()):
            if breaker.state is State.CLOSED:
                del self._by_shard[shard]

    def items(self) -> list[tuple[str | None, CircuitBreaker]]:
        """``(shard, breaker)`` for every breaker made so far; ``(None, default)`` first."""
        return [(None, self.default), *sorted(self._by_shard.items())]

    def open_shards(self) -> list[str]:
        """The shards whose breaker is not closed (``"*"`` for ``default``)."""
        return [
            "*" if shard is None else shard
            for shard, breaker in self.items()
            if breaker.state is not State.CLOSED
        ]

    def reset(self) -> None:
        """Close every breaker now."""
        for _, breaker in self.items():
            breaker.reset()

    def __repr__(self) -> str:
        shards = len(self._by_shard)
        return f"ShardBreakers({self.default.name!r}, shards={shards}, open={self.open_shards()})"

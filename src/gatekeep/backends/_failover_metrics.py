"""What a :class:`~.failover.FailoverBackend` shows in :mod:`gatekeep.metrics`
snapshots: its breaker's state and counters, and on a cluster each shard's."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .failover import FailoverBackend

__all__ = ["breaker_reader"]


def breaker_reader(backend: FailoverBackend) -> Callable[[], dict[str, Any]]:
    """The reader of ``backend``'s breaker state for metrics snapshots (it does not
    keep ``backend`` alive: a collected one reads as a closed breaker)."""
    ref = weakref.ref(backend)

    def read() -> dict[str, Any]:
        backend = ref()
        if backend is None:
            return {"kind": "breaker", "state": "closed", "transitions": 0, "fallback_calls": 0}
        c = backend.breaker.counters
        out: dict[str, Any] = {
            "kind": "breaker",
            "state": str(backend.breaker.state),
            "transitions": c.opened + c.half_opened + c.closed,
            "fallback_calls": backend.fallback_calls,
            **c.as_dict(),
        }
        if backend.breakers.sharded:
            out["shards"] = {
                shard: {
                    "state": str(b.state),
                    "transitions": b.counters.opened + b.counters.half_opened + b.counters.closed,
                    "fallback_calls": backend.fallback_by_breaker.get(b.name, 0),
                }
                for shard, b in backend.breakers.items()
                if shard is not None
            }
        return out

    return read

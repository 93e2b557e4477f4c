"""The doctor's view of the circuit breakers: one real decision per shard.

A :class:`~gatekeep.backends.failover.FailoverBackend` keeps one breaker per shard
(:mod:`gatekeep.shards`): on Redis Cluster, per primary. The doctor makes one
decision on a key of each shard, through such a backend, and reports each shard's
breaker: closed (Redis answered, and how fast), or open (the error, and what it
means: that shard's keys are decided by the in-process fallback). Standalone and
Sentinel deployments have one shard.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ..backends.failover import FailoverBackend
from ..backends.redis import RedisBackend
from ..limiter import Limiter
from .checks import FAIL, OK, Check

__all__ = ["check_breakers", "shard_keys"]

#: How many candidate keys are tried to find one on each primary.
_TRIES = 20_000


def shard_keys(target: Any) -> list[tuple[str, str]]:
    """``(shard, key)``: a throwaway limiter key for each shard (primary) of ``target``."""
    stem = f"shard-{uuid.uuid4().hex[:8]}"
    if target.kind != "cluster":  # one shard: the server the other checks name
        return [(target.nodes()[0][0], stem)]
    client = target.client
    wanted = {node.name for node in client.get_primaries()}
    found: dict[str, str] = {}
    for i in range(_TRIES):
        key = f"{stem}-{i}"
        node = client.get_node_from_key(key)
        if node is not None and node.name in wanted and node.name not in found:
            found[node.name] = key
            if len(found) == len(wanted):
                break
    return sorted(found.items())


def check_breakers(target: Any, deadline: float = 1.0) -> list[Check]:
    """One decision per shard, each under its shard's breaker; one check per shard."""
    backend = FailoverBackend(
        RedisBackend(target.client), metrics=None, deadline=deadline, failures=1, name="doctor"
    )
    limiter = Limiter("1000/second", backend=backend, prefix="doctor")
    plan = limiter.plan(None)
    out = []
    for shard, key in shard_keys(target):
        before = backend.fallback_calls
        started = time.perf_counter()
        limiter.hit(key)
        took = time.perf_counter() - started
        breaker = backend.breaker_for(limiter.keys(key, plan))
        if backend.fallback_calls == before:
            out.append(
                Check(
                    "breaker",
                    OK,
                    f"closed: a decision on this shard answered by Redis in {took * 1000:.1f} ms",
                    breaker.state.value,
                    node=shard,
                )
            )
            limiter.reset(key)
        else:
            why = backend.last_error
            out.append(
                Check(
                    "breaker",
                    FAIL,
                    f"{breaker.state.value}: {type(why).__name__}: {why}; this shard's keys "
                    "are decided by the in-process fallback until it answers (the other "
                    "shards' keys stay on Redis)",
                    breaker.state.value,
                    node=shard,
                )
            )
    return out

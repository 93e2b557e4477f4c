"""One breaker per shard, with a primary whose shards fail on command.

The primary is a MemoryBackend that says it is a cluster and places each key on the
shard its first letter names; a shard that is ``down`` raises redis-py's timeout for
its keys only. tests/ha/test_cluster_faults.py does the same against a real cluster.
"""

from __future__ import annotations

import pytest
import redis

from gatekeep import AsyncLimiter, Limiter, MemoryBackend
from gatekeep.backends.failover import FailoverBackend
from gatekeep.breaker import CircuitBreaker, State
from gatekeep.exporters import samples
from gatekeep.metrics import Metrics
from gatekeep.shards import ShardBreakers


class ShardedPrimary(MemoryBackend):
    is_cluster = True

    def __init__(self) -> None:
        super().__init__()
        self.down: set[str] = set()
        self.calls: dict[str, int] = {}

    def shard(self, key: str, aio: bool = False) -> str:
        return key.split("{", 1)[1][0]  # the user's key, in the hash tag: its first letter

    def _check(self, keys) -> None:
        for shard in {self.shard(k) for k in keys}:
            self.calls[shard] = self.calls.get(shard, 0) + 1
            if shard in self.down:
                raise redis.TimeoutError(f"shard {shard} timed out")

    def limit(self, plan, keys, *a, **kw):
        self._check(keys)
        return super().limit(plan, keys, *a, **kw)

    def limit_many(self, plan, keys, *a, **kw):
        self._check([k for ks in keys for k in ks])
        return [MemoryBackend.limit(self, plan, k, *a, **kw) for k in keys]

    async def alimit(self, plan, keys, *a, **kw):
        return self.limit(plan, keys, *a, **kw)

    async def alimit_many(self, plan, keys, *a, **kw):
        return self.limit_many(plan, keys, *a, **kw)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(metrics=None):
    clock = Clock()
    primary = ShardedPrimary()
    breaker = CircuitBreaker(failures=3, recovery_time=0.5, deadline=10.0, clock=clock, name="gk")
    backend = FailoverBackend(primary, breaker=breaker, metrics=metrics, name="gk")
    return primary, backend, clock


def test_a_failing_shard_sends_only_its_keys_to_the_fallback():
    primary, backend, _clock = make()
    limiter = Limiter("100/minute", backend=backend, prefix="t")
    primary.down.add("b")
    for _ in range(5):
        limiter.hit("a1")
        limiter.hit("b1")
        limiter.hit("c1")
    assert backend.breakers.get("b").state is State.OPEN
    assert backend.breakers.get("a").state is State.CLOSED
    assert backend.breakers.get("c").state is State.CLOSED
    assert backend.breaker.state is State.CLOSED  # the default one: no shard failed as a whole
    # a and c answered by Redis every time; b once (it timed out and opened), then skipped
    assert primary.calls == {"a": 5, "b": 1, "c": 5}
    assert backend.fallback_calls == 5
    assert backend.fallback_by_breaker == {"gk[b]": 5}
    assert backend.breakers.open_shards() == ["b"]


def test_the_probe_goes_to_the_failed_shard_and_closes_only_its_breaker():
    primary, backend, clock = make()
    limiter = Limiter("100/minute", backend=backend, prefix="t")
    primary.down.add("b")
    limiter.hit("b1")
    assert backend.breakers.get("b").state is State.OPEN
    clock.now += 0.6  # past recovery_time: the next call for a key of b probes b
    limiter.hit("a1")  # a's call is no probe of b
    assert backend.breakers.get("b").state is State.OPEN
    limiter.hit("b2")  # the probe: b is still down
    assert primary.calls["b"] == 2 and backend.breakers.get("b").state is State.OPEN
    primary.down.clear()
    clock.now += 0.6
    limiter.hit("b3")
    assert backend.breakers.get("b").state is State.CLOSED and primary.calls["b"] == 3


def test_hit_many_over_shards_falls_back_only_for_the_failed_shard():
    primary, backend, _clock = make()
    limiter = Limiter("2/minute", backend=backend, prefix="t")
    primary.down.add("b")
    for _ in range(3):
        ds = limiter.hit_many(["a1", "b1", "c1"])
    # a and c on Redis, b in the fallback: all three counted, in order
    assert [d.allowed for d in ds] == [False, False, False]
    assert primary.calls["a"] == 3 and primary.calls["c"] == 3 and primary.calls["b"] == 1
    assert backend.fallback_by_breaker == {"gk[b]": 3}


async def test_async_calls_take_their_shards_breaker():
    primary, backend, _clock = make()
    limiter = AsyncLimiter("100/minute", backend=backend, prefix="t")
    primary.down.add("c")
    for _ in range(3):
        await limiter.hit("a1")
        await limiter.hit("c1")
    await limiter.hit_many(["a2", "c2"])
    assert backend.breakers.open_shards() == ["c"]
    assert primary.calls == {"a": 4, "c": 1}


def test_metrics_show_each_shards_breaker():
    metrics = Metrics()
    primary, backend, _clock = make(metrics)
    limiter = Limiter("100/minute", backend=backend, prefix="t")
    primary.down.add("b")
    limiter.hit("a1")
    limiter.hit("b1")
    limiter.hit("b1")
    watched = metrics.stats()["watched"]["gk"]
    assert watched["state"] == "closed"
    assert watched["shards"]["b"] == {"state": "open", "transitions": 1, "fallback_calls": 2}
    assert watched["shards"]["a"]["state"] == "closed"
    got = {
        (labels["shard"], labels["state"]): value
        for name, _, labels, value in samples(metrics.stats())
        if name == "gatekeep_shard_breaker_state"
    }
    assert got[("b", "open")] == 1.0 and got[("a", "closed")] == 1.0 and got[("b", "closed")] == 0.0


def test_one_shard_deployments_have_only_the_default_breaker():
    backend = FailoverBackend(MemoryBackend())
    assert not backend.breakers.sharded
    assert backend.breaker_for(["x"]) is backend.breaker


def test_shard_breakers_share_settings_and_stay_bounded():
    default = CircuitBreaker(failures=2, recovery_time=0.7, deadline=0.1, name="r")
    shards = ShardBreakers(default, lambda key, aio: key, limit=4)
    one = shards.for_key("n1")
    assert (one.failure_threshold, one.recovery_time, one.deadline, one.name) == (
        2,
        0.7,
        0.1,
        "r[n1]",
    )
    one.failure(one.allow() or 0, timeout=True)
    for i in range(2, 10):
        shards.for_key(f"n{i}")
    assert len(shards.items()) <= 6  # default + at most limit, the open one kept
    assert shards.get("n1") is one and one.state is State.OPEN
    shards.reset()
    assert one.state is State.CLOSED


@pytest.mark.parametrize("aio", [False, True])
def test_unknown_shard_uses_the_default(aio):
    default = CircuitBreaker(name="r")
    shards = ShardBreakers(default, lambda key, a: None)
    assert shards.for_key("k", aio) is default

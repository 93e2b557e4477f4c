"""Sessions under one breaker per shard, on a cluster whose shards fail on command.

The backend is a RedisBackend whose round trips run the scripts' Python twins on one
in-process key space, placed on shards "a", "b", "c" by hash slot as a 3-master
cluster would; a shard that is ``down`` times out for its keys (its replica still
answers read-only trips). tests/ha/test_cluster_sessions.py does it on a real cluster.
"""

from __future__ import annotations

import threading

import pytest
import redis
from redis.crc import key_slot

from gatekeep import RedisBackend
from gatekeep.backends.failover import FailoverBackend
from gatekeep.backends.memory import MemoryStore
from gatekeep.breaker import CircuitBreaker, State
from gatekeep.errors import SessionWriteFailed
from gatekeep.sessions import SessionStore, twin

T = 1_000_000.0


def shard_of(key: str) -> str:
    slot = key_slot(key.encode())
    return "a" if slot < 5461 else "b" if slot < 10923 else "c"


class ShardedTwins(RedisBackend):
    """A 'cluster' of three shards in this process (see the module doc)."""

    kind = "cluster"

    def __init__(self) -> None:
        super().__init__(object(), aclient=object(), replica=object(), areplica=object())
        self.store = MemoryStore(10_000)
        self.lock = threading.Lock()
        self.down: set[str] = set()
        self.replica_down: set[str] = set()
        self.trips: dict[tuple[str, bool], int] = {}

    @property
    def is_cluster(self) -> bool:
        return True

    def shard(self, key: str, aio: bool = False) -> str:
        return shard_of(key)

    def times_out_async(self, deadline: float) -> bool:
        return False

    def eval_batch(self, calls, *, read_only=False, wait=None):
        with self.lock:
            for shard in {shard_of(k) for _, keys, _ in calls for k in keys}:
                self.trips[shard, read_only] = self.trips.get((shard, read_only), 0) + 1
                if shard in (self.replica_down if read_only else self.down):
                    raise redis.TimeoutError(f"shard {shard} timed out")
            return [
                twin.SCRIPTS[script.name](
                    self.store, list(keys), int(args[0]), [str(a) for a in args[1:]]
                )
                for script, keys, args in calls
            ]

    async def aeval_batch(self, calls, *, read_only=False, wait=None):
        return self.eval_batch(calls, read_only=read_only, wait=wait)


def make():
    primary = ShardedTwins()
    breaker = CircuitBreaker(failures=3, recovery_time=30, deadline=10.0, name="gk")
    backend = FailoverBackend(primary, breaker=breaker, metrics=None, name="gk")
    store = SessionStore(backend, prefix="t", metrics=None)
    return primary, backend, store


def one_per_shard(store: SessionStore) -> dict[str, object]:
    by_shard: dict[str, object] = {}
    while len(by_shard) < 3:
        s = store.create({"n": 1}, now=T)
        by_shard.setdefault(shard_of(store.key(s.id)), s)
    return by_shard


def test_a_failing_shard_affects_only_its_own_sessions():
    primary, backend, store = make()
    sessions = one_per_shard(store)
    primary.trips.clear()
    primary.down.add("b")
    for i in range(5):
        for shard, s in sessions.items():
            loaded = store.load(s.id, now=T + 1 + i)
            assert loaded is not None and loaded["n"] == 1
            assert loaded.from_replica == (shard == "b")
            loaded["n"] = 1
            loaded["i"] = i
            if shard == "b":
                with pytest.raises(SessionWriteFailed) as info:
                    store.save(loaded, now=T + 1 + i)
                assert info.value.retry_after >= 1
            else:
                assert store.save(loaded, now=T + 1 + i)
    breakers = backend.breakers
    assert breakers.get("b").state is State.OPEN
    assert breakers.get("a").state is State.CLOSED and breakers.get("c").state is State.CLOSED
    assert backend.breaker.state is State.CLOSED
    assert breakers.open_shards() == ["b"]
    # b's primary was tried once (a timeout opens the breaker at once), then skipped
    assert primary.trips["b", False] == 1 and primary.trips["b", True] == 5
    assert primary.trips["a", False] == primary.trips["c", False] == 10
    c = store.executor.counters
    assert c["replica_reads"] == 5 and c["write_failures"] == 5 and c["primary_failures"] == 1


async def test_async_calls_take_their_shards_breaker():
    primary, backend, store = make()
    sessions = one_per_shard(store)
    primary.down.add("c")
    for i in range(4):
        for shard, s in sessions.items():
            loaded = await store.aload(s.id, now=T + 1 + i)
            assert loaded is not None and loaded.from_replica == (shard == "c")
            loaded["i"] = i
            if shard == "c":
                with pytest.raises(SessionWriteFailed):
                    await store.asave(loaded, now=T + 1 + i)
            else:
                assert await store.asave(loaded, now=T + 1 + i)
    assert backend.breakers.open_shards() == ["c"]


def test_a_breaker_given_to_the_store_is_one_per_shard_on_a_cluster():
    primary = ShardedTwins()
    breaker = CircuitBreaker(failures=1, recovery_time=30, deadline=10.0, name="s")
    store = SessionStore(primary, prefix="t", metrics=None, breaker=breaker)
    sessions = one_per_shard(store)
    primary.down.add("a")
    assert store.load(sessions["a"].id, now=T + 1).from_replica
    assert not store.load(sessions["b"].id, now=T + 1).from_replica
    assert store.executor.breakers.open_shards() == ["a"]
    assert breaker.state is State.CLOSED


def test_an_unreachable_shard_fails_its_loads_only():
    primary, _backend, store = make()
    sessions = one_per_shard(store)
    primary.down.add("a")
    primary.replica_down.add("a")
    with pytest.raises(redis.TimeoutError):  # the middleware's "unavailable" session
        store.load(sessions["a"].id, now=T + 1)
    assert store.load(sessions["b"].id, now=T + 1)["n"] == 1
    assert store.executor.counters["unreachable"] == 1


def test_replica_reads_per_shard_are_exported():
    from prometheus_client import CollectorRegistry, generate_latest

    from gatekeep.exporters import PrometheusCollector
    from gatekeep.metrics import Metrics

    metrics = Metrics()
    primary = ShardedTwins()
    breaker = CircuitBreaker(failures=3, recovery_time=30, deadline=10.0, name="gk")
    backend = FailoverBackend(primary, breaker=breaker, metrics=metrics, name="gk")
    store = SessionStore(backend, prefix="t", metrics=metrics)
    sessions = one_per_shard(store)
    primary.down.add("c")
    for _ in range(3):
        store.load(sessions["c"].id, now=T + 1)
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(metrics))
    text = generate_latest(registry).decode()
    assert (
        'gatekeep_session_replica_reads_total{shard="gk[c]",store="sessions:gk:t:"} 3.0' in text
    ), text
    assert 'gatekeep_session_replicas_skipped_total{reason="down",store="sessions:gk:t:"}' in text

"""Sessions while the primary is away: reads from a replica, writes reported, durable writes.

A primary and its replica (no Sentinel: the backend is given both clients), the
primary SIGKILLed or SIGSTOPped. The full Sentinel failover, through the ASGI
middleware, is in ``tests/ha/test_sessions_failover.py``.
"""

from __future__ import annotations

import logging
import signal
import statistics
import time

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from gatekeep import RedisBackend
from gatekeep.breaker import CircuitBreaker
from gatekeep.errors import SessionNotReplicated, SessionWriteFailed
from gatekeep.metrics import Metrics
from gatekeep.sessions import SessionStore

pytestmark = pytest.mark.redis

FAST = ("--repl-diskless-sync-delay", "0")
TIMEOUT = 0.25


def clients(port: int) -> tuple[redis.Redis, redis.asyncio.Redis]:
    opts = {"port": port, "socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}
    from redis.asyncio.retry import Retry as ARetry

    return (
        redis.Redis(retry=Retry(NoBackoff(), 0), **opts),
        redis.asyncio.Redis(retry=ARetry(NoBackoff(), 0), **opts),
    )


def wait_synced(primary: redis.Redis, replica: redis.Redis, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = replica.info("replication")
        if (
            info.get("master_link_status") == "up"
            and info.get("slave_repl_offset", -1)
            >= primary.info("replication")["master_repl_offset"]
        ):
            return
        time.sleep(0.02)
    raise TimeoutError("the replica did not catch up")


def caught_up(pair) -> None:
    """Wait until the replica has every write the primary took (offsets compared)."""
    p, r = redis.Redis(port=pair[0].port), redis.Redis(port=pair[1].port)
    wait_synced(p, r)
    p.close()
    r.close()


@pytest.fixture
def pair(server_factory):
    primary = server_factory("redis", FAST)
    replica = server_factory("redis", (*FAST, "--replicaof", "127.0.0.1", str(primary.port)))
    p, ap = clients(primary.port)
    r, ar = clients(replica.port)
    backend = RedisBackend(p, aclient=ap, replica=r, areplica=ar)
    wait_synced(p, r)
    yield primary, replica, backend
    backend.close()


def test_reads_from_the_replica_and_writes_reported(pair, prefix, caplog):
    primary, _replica, backend = pair
    metrics = Metrics()
    store = SessionStore(backend, prefix=prefix, metrics=metrics)
    session = store.create({"cart": ["apple"]}, user_id="alice")
    caught_up(pair)
    before = store.meta(session.id)
    assert before is not None
    time.sleep(0.01)

    primary.signal(signal.SIGKILL)
    caplog.set_level(logging.DEBUG, logger="gatekeep.sessions")
    loaded = [store.load(session.id) for _ in range(5)]
    assert all(s is not None and s["cart"] == ["apple"] and s.from_replica for s in loaded)
    # read-only on the replica: the idle deadline did not move
    meta = store.meta(session.id)
    assert meta is not None and meta.last_seen_at == before.last_seen_at
    assert store.exists(session.id) and store.load("x" * 47) is None

    s = loaded[0]
    s["cart"].append("pear")
    with pytest.raises(SessionWriteFailed) as info:
        store.save(s)
    assert info.value.retry_after >= 1 and isinstance(info.value.__cause__, redis.ConnectionError)
    with pytest.raises(SessionWriteFailed):
        store.destroy(session.id)
    with pytest.raises(SessionWriteFailed):
        store.create({"new": 1})

    c = store.executor.counters
    print(f"\n[replica reads] {c}")
    assert c["replica_reads"] == 8 and c["write_failures"] == 3
    stats = metrics.stats()
    assert stats["sessions"]["loads"] == 6 and stats["sessions"]["hits"] == 5
    assert stats["backend_errors"]["sessions:ConnectionError"] == 11
    assert stats["watched"][f"sessions:gk:{prefix}:"]["replica_reads"] == 8
    # one line per change of state, not one per request
    events = [
        getattr(r, "gatekeep_event", None) for r in caplog.records if r.levelno >= logging.INFO
    ]
    assert events == ["session_replica_reads", "session_writes_failing"], events


async def test_async_replica_reads_and_recovery_log(pair, prefix, caplog):
    primary, _replica, backend = pair
    store = SessionStore(backend, prefix=prefix, metrics=None)
    session = await store.acreate({"n": 1})
    caught_up(pair)
    primary.signal(signal.SIGSTOP)  # hung: each call costs one timeout
    caplog.set_level(logging.INFO, logger="gatekeep.sessions")
    try:
        started = time.monotonic()
        got = await store.aload(session.id)
        elapsed = time.monotonic() - started
        assert got is not None and got["n"] == 1 and got.from_replica
        assert elapsed < 2 * TIMEOUT + 0.2
        got["n"] = 2
        with pytest.raises(SessionWriteFailed):
            await store.asave(got)
    finally:
        primary.signal(signal.SIGCONT)
    again = await store.aload(session.id)  # the primary answers again
    assert again is not None and again["n"] == 1 and not again.from_replica
    again["n"] = 3
    assert await store.asave(again)
    events = [r.gatekeep_event for r in caplog.records if hasattr(r, "gatekeep_event")]
    assert events == [
        "session_replica_reads",
        "session_writes_failing",
        "session_primary_reads",
        "session_failover_seen",
    ], events
    await backend.aclose()


def test_breaker_skips_the_primary_while_open(pair, prefix):
    primary, _replica, backend = pair
    breaker = CircuitBreaker(failures=1, recovery_time=30, deadline=TIMEOUT)
    store = SessionStore(backend, prefix=prefix, breaker=breaker, metrics=None)
    session = store.create({"n": 1})
    caught_up(pair)
    primary.signal(signal.SIGSTOP)
    try:
        assert store.load(session.id)["n"] == 1  # one timeout opens the breaker
        assert not breaker.is_closed
        started = time.monotonic()
        for _ in range(20):
            assert store.load(session.id)["n"] == 1  # straight to the replica
        with pytest.raises(SessionWriteFailed) as info:
            store.save(store.new({"x": 1}))
        elapsed = time.monotonic() - started
    finally:
        primary.signal(signal.SIGCONT)
    assert info.value.__cause__ is None and info.value.retry_after > 1
    assert elapsed < 0.2, elapsed  # no call waited for the primary
    assert store.executor.counters["primary_failures"] == 1


def _median_save_us(store: SessionStore, n: int) -> float:
    session = store.create({"n": 0})
    times = []
    for i in range(n):
        session["n"] = i + 1
        t = time.perf_counter()
        assert store.save(session)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def test_durable_writes_wait_for_a_replica(pair, prefix):
    primary, replica, _ = pair
    # Room for a busy machine: a 2 s read timeout, WAIT for up to 1 s.
    backend = RedisBackend(f"redis://127.0.0.1:{primary.port}/0", timeout=2.0)
    plain = SessionStore(backend, prefix=prefix, metrics=None)
    durable = SessionStore(backend, prefix=prefix, metrics=None, wait_replicas=1, wait_timeout=1.0)
    for store in (plain, durable):
        _median_save_us(store, 20)  # warm up: scripts loaded, connections open
    fast, slow = _median_save_us(plain, 300), _median_save_us(durable, 300)
    print(
        f"\n[durable writes] median save: {fast:.0f} µs plain, {slow:.0f} µs with "
        f"WAIT 1 (+{slow - fast:.0f} µs)"
    )
    session = durable.create({"a": 1})
    assert redis.Redis(port=replica.port).hget(durable.key(session.id), "d:a") == b"1"

    # NOSCRIPT on the primary: the EVAL fallback is followed by its own WAIT
    redis.Redis(port=primary.port).script_flush()
    session["a"] = 2
    assert durable.save(session)

    replica.signal(signal.SIGSTOP)  # the replica stops acknowledging
    try:
        session["a"] = 3
        started = time.monotonic()
        with pytest.raises(SessionNotReplicated) as info:
            durable.save(session)
        waited = time.monotonic() - started
    finally:
        replica.signal(signal.SIGCONT)
    assert info.value.acknowledged == 0 and 1.0 <= waited < 1.9
    # the write did happen on the primary
    assert redis.Redis(port=primary.port).hget(durable.key(session.id), "d:a") == b"3"
    assert durable.executor.counters["not_replicated"] == 1
    backend.close()


def test_durable_configuration_errors(pair):
    _p, _r, backend = pair
    with pytest.raises(ValueError, match="wait_replicas"):
        SessionStore(wait_replicas=1)
    with pytest.raises(ValueError, match="wait_replicas"):
        SessionStore(backend, wait_replicas=-1)
    with pytest.raises(ValueError, match="half the backend's timeout"):
        SessionStore(
            RedisBackend("redis://127.0.0.1:1/0", timeout=0.2), wait_replicas=1, wait_timeout=0.15
        )
    with pytest.raises(ValueError, match="Cluster"):
        SessionStore(RedisBackend("redis+cluster://127.0.0.1:1"), wait_replicas=1)

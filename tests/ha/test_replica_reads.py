"""Session reads from every replica, on Sentinel with two replicas, while the primary
is stopped: one replica hung (SIGSTOP), or answering as a master with no data (an old
primary being demoted, restarted empty), never makes a read fail or come back empty
while the other replica is up.

The Sentinel topology of the suite has one replica; a second one is started here and
the Sentinels monitor the primary afresh (``SENTINEL REMOVE``, ``MONITOR``: a new
master's replicas are asked for at once; a ``RESET`` waits for the 10 s INFO period).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import redis

from gatekeep.backends.connect import connect
from gatekeep.backends.failover import FailoverBackend
from gatekeep.sessions import SessionStore
from gatekeep.testing import ServerProcess

from .topology import NODE_ARGS, SERVICE, SentinelTopology, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DEADLINE = 0.25


@pytest.fixture
def two_replicas(redis_binary: str) -> Iterator[tuple[SentinelTopology, ServerProcess]]:
    topo = SentinelTopology.start(redis_binary)
    extra = ServerProcess.start(
        redis_binary, args=(*NODE_ARGS, "--replicaof", "127.0.0.1", str(topo.primary.port))
    )
    try:
        rc = redis.Redis(port=extra.port, decode_responses=True)
        wait_until(
            lambda: rc.info("replication")["master_link_status"] == "up", 10, "the 2nd replica"
        )
        rc.close()
        for s in topo.sentinels:
            c = s.client()
            c.execute_command("SENTINEL", "REMOVE", SERVICE)
            c.execute_command("SENTINEL", "MONITOR", SERVICE, "127.0.0.1", topo.primary.port, 2)
            c.execute_command("SENTINEL", "SET", SERVICE, "down-after-milliseconds", 1000)
            wait_until(
                lambda c=c: len([r for r in c.sentinel_slaves(SERVICE) if not r["is_sdown"]]) == 2,
                10,
                "the sentinels to list both replicas",
            )
            c.close()
        yield topo, extra
    finally:
        extra.signal(signal.SIGCONT)
        extra.stop()
        topo.stop()


def caught_up(topo: SentinelTopology, *replicas: ServerProcess) -> None:
    p = redis.Redis(port=topo.primary.port)
    offset = p.info("replication")["master_repl_offset"]
    p.close()
    for r in replicas:
        c = redis.Redis(port=r.port)
        wait_until(
            lambda c=c: c.info("replication").get("slave_repl_offset", -1) >= offset,
            5,
            "the replicas to catch up",
        )
        c.close()


def make_store(topo: SentinelTopology, prefix: str) -> tuple[FailoverBackend, SessionStore]:
    # recovery_time: no probe of the stopped primary while the test runs
    backend = FailoverBackend(connect(topo.url, timeout=DEADLINE), recovery_time=30, metrics=None)
    return backend, SessionStore(backend, prefix=prefix, metrics=None)


async def test_every_replica_is_tried_within_the_deadline(two_replicas, prefix):
    topo, extra = two_replicas
    backend, store = make_store(topo, prefix)
    sessions = [store.create({"n": i}) for i in range(6)]
    caught_up(topo, topo.replica, extra)
    topo.primary.signal(signal.SIGSTOP)
    extra.signal(signal.SIGSTOP)  # one replica hung: each try of it costs its share
    latencies = []
    try:
        for i in range(12):
            s = sessions[i % len(sessions)]
            t = time.monotonic()
            loaded = store.load(s.id)
            latencies.append(time.monotonic() - t)
            assert loaded is not None and loaded["n"] == i % len(sessions) and loaded.from_replica
    finally:
        extra.signal(signal.SIGCONT)
    replicas = store.executor.counters["replicas"]
    print(
        f"\n[sentinel, primary and 1 of 2 replicas SIGSTOPped] sync reads: max "
        f"{max(latencies) * 1000:.0f} ms (first, with the primary's timeout: "
        f"{latencies[0] * 1000:.0f} ms), median {sorted(latencies)[6] * 1000:.1f} ms; "
        f"replicas: {replicas}"
    )
    assert replicas["served_by"] == {f"127.0.0.1:{topo.replica.port}": 12}
    # the hung replica was tried once (its share of the deadline), then skipped
    assert replicas["skipped_failed"] == 1 and replicas["skipped_down"] >= 5
    assert latencies[0] < 2 * DEADLINE + 0.15
    assert max(latencies[1:]) < DEADLINE + 0.1
    backend.close()

    # the other replica now answers as a master with no data (an old primary being
    # demoted, restarted empty): its answers are not used (async driver, new store)
    c = redis.Redis(port=extra.port)
    c.execute_command("REPLICAOF", "NO", "ONE")
    c.flushall()
    c.close()
    backend, store = make_store(topo, prefix)
    try:
        for i in range(6):
            loaded = await store.aload(sessions[i].id)
            assert loaded is not None and loaded["n"] == i and loaded.from_replica
    finally:
        topo.primary.signal(signal.SIGCONT)
    replicas = store.executor.counters["replicas"]
    print(f"[sentinel, 1 of 2 replicas an empty master] async reads; replicas: {replicas}")
    assert replicas["served_by"] == {f"127.0.0.1:{topo.replica.port}": 6}
    # tried first in every other read (it answers at once: it is not skipped as down)
    assert replicas["skipped_refused"] >= 1
    await store.aclose()
    backend.close()

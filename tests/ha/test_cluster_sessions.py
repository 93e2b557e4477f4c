"""Sessions on a real Redis Cluster with one shard's master down: only that shard's
sessions lose their writes (503) and are read from its replica; the others load and
save as usual.

One 3-master cluster (a replica each, node timeout 1000 ms) serves the module, with
``cluster-require-full-coverage no`` (else every node answers CLUSTERDOWN while one
shard is down: nothing a client can do). The first test stops a master
and tells its replica not to fail over, so the shard stays down while it runs; the
last one kills a master and lets its replica take over.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis
from redis.crc import key_slot

from gatekeep.backends.connect import connect
from gatekeep.backends.failover import FailoverBackend
from gatekeep.errors import SessionWriteFailed
from gatekeep.sessions import SessionStore

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DEADLINE = 0.25


def config_all(cluster, *args) -> None:
    for node in cluster.live():
        c = cluster.client(node)
        try:
            c.config_set(*args)
        finally:
            c.close()


def replicas_of(cluster, slot: int) -> list[int]:
    c = cluster.client(cluster.live()[0])
    try:
        for start, end, _master, *replicas in c.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return [int(r[1]) for r in replicas]
    finally:
        c.close()
    raise LookupError(slot)


def sessions_by_master(cluster, store: SessionStore, n: int = 12) -> dict[int, list]:
    """``n`` sessions per master, created now."""
    out: dict[int, list] = {}
    while len(out) < 3 or any(len(v) < n for v in out.values()):
        s = store.create({"n": 1})
        port = cluster.master_of_slot(key_slot(store.key(s.id).encode()))
        if len(out.setdefault(port, [])) < n:
            out[port].append(s)
    return out


def test_a_stopped_master_fails_only_its_own_shards_sessions(cluster, prefix):
    config_all(cluster, "cluster-require-full-coverage", "no")
    backend = FailoverBackend(
        connect(cluster.url, timeout=DEADLINE), recovery_time=0.5, metrics=None
    )
    store = SessionStore(backend, prefix=prefix, metrics=None)
    by_master = sessions_by_master(cluster, store)
    victim = next(iter(by_master))
    # let the replicas catch up, and keep the victim's shard down while this runs
    time.sleep(0.1)
    for port in replicas_of(cluster, key_slot(store.key(by_master[victim][0].id).encode())):
        c = redis.Redis(port=port)
        c.config_set("cluster-replica-no-failover", "yes")
        c.close()
    cluster.node(victim).signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        failed_writes = healthy = 0
        for _round in range(3):
            for port, sessions in by_master.items():
                for s in sessions:
                    if port == victim:
                        loaded = store.load(s.id)  # from the shard's replica
                        assert loaded is not None and loaded["n"] == 1 and loaded.from_replica
                        loaded["n"] = 2
                        with pytest.raises(SessionWriteFailed):
                            store.save(loaded)
                        failed_writes += 1
                        continue
                    loaded = store.load(s.id)
                    assert loaded is not None and loaded["n"] == 1 and not loaded.from_replica
                    loaded["seen"] = _round
                    assert store.save(loaded)
                    healthy += 1
        elapsed = time.monotonic() - started
    finally:
        cluster.node(victim).signal(signal.SIGCONT)
    breakers = backend.breakers
    print(
        f"\n[cluster sessions, master SIGSTOP] {healthy} healthy loads+saves, "
        f"{failed_writes} writes refused, {elapsed:.3f} s; open: {breakers.open_shards()}; "
        f"store: {store.executor.counters}"
    )
    assert breakers.open_shards() == [f"127.0.0.1:{victim}"]
    counters = store.executor.counters
    assert counters["replica_reads"] == failed_writes and counters["unreachable"] == 0
    assert counters["replica_reads_by_shard"] == {f"redis[127.0.0.1:{victim}]": failed_writes}
    # one timeout opened the victim's breaker; the rest went to the replica at once
    assert store.executor.counters["primary_failures"] <= 2
    assert elapsed < 2.0
    backend.close()


async def test_master_sigkill_sessions_through_the_promotion(cluster, prefix):
    """Kill a master (its replica fails over): its sessions are read from the replica,
    then from the promoted one; its writes fail (503) until the promotion; the other
    shards' sessions load and save as usual (a rare timeout aside: redis-py's async
    cluster client maps the cluster again inside the call that follows a refused
    connection, which on a loaded machine can take longer than the deadline)."""
    cluster.wait_ok()
    config_all(cluster, "cluster-require-full-coverage", "no")
    config_all(cluster, "cluster-replica-no-failover", "no")
    backend = FailoverBackend(
        connect(cluster.url, timeout=DEADLINE), recovery_time=0.5, metrics=None
    )
    store = SessionStore(backend, prefix=prefix, metrics=None)
    try:
        outcomes, t_fault, t_promoted = await _through_a_failover(cluster, store)
    finally:
        await backend.aclose()
        backend.close()
    print(
        f"\n[cluster sessions, master SIGKILL] promoted after "
        f"{(t_promoted or 0) - t_fault:.3f} s; {outcomes}; store: {store.executor.counters}"
    )
    assert t_promoted is not None, "no promotion seen"
    assert outcomes.get("victim read from replica", 0) > 0
    assert outcomes.get("victim write 503", 0) > 0 and outcomes.get("victim write ok", 0) > 0
    assert store.executor.counters["unreachable"] == 0
    healthy = outcomes.get("healthy write ok", 0)
    if outcomes.get("healthy write 503", 0) > healthy // 10:
        # A known defect, open in issue 13: in some runs (about 1 in 3 after
        # test_cluster.py, none alone) the healthy shards' calls fail too after the
        # master is killed, with redis-py's async cluster client connecting to the dead
        # node inside them (the probes of healthy shards' breakers fail with "Error 111
        # connecting to <the dead master>"), so their breakers open until the promotion.
        # The uvicorn fault test (test_cluster_faults.py) asserts 0 such 503 and passes.
        pytest.xfail(f"healthy shards' writes failed during the outage: {outcomes}")


async def _through_a_failover(cluster, store: SessionStore):
    by_master = sessions_by_master(cluster, store, n=4)
    for port in by_master:  # every session on its replica too
        c = redis.Redis(port=port)
        assert c.execute_command("WAIT", 1, 2000) == 1
        c.close()
    victim = next(iter(by_master))
    slot = key_slot(store.key(by_master[victim][0].id).encode())
    survivor = next(n for n in cluster.nodes if n.port != victim)
    cluster.node(victim).signal(signal.SIGKILL)
    t_fault = time.monotonic()
    t_promoted = None
    outcomes: dict[str, int] = {}

    def count(what: str) -> None:
        outcomes[what] = outcomes.get(what, 0) + 1

    while time.monotonic() - t_fault < 10:
        if t_promoted is None and cluster.master_of_slot(slot, via=survivor) != victim:
            t_promoted = time.monotonic()
        if t_promoted is not None and time.monotonic() - t_promoted > 0.8:
            break
        for port, sessions in by_master.items():
            shard = "victim" if port == victim else "healthy"
            for s in sessions:
                loaded = await store.aload(s.id)
                assert loaded is not None and loaded["n"] == 1, (shard, loaded)
                count(f"{shard} read from {'replica' if loaded.from_replica else 'primary'}")
                loaded["t"] = time.monotonic()
                try:
                    assert await store.asave(loaded)
                    count(f"{shard} write ok")
                except SessionWriteFailed:
                    if shard == "victim":
                        assert t_promoted is None or time.monotonic() - t_promoted < 1.0
                    count(f"{shard} write 503")
    return outcomes, t_fault, t_promoted

"""A stalled event loop is not an outage on the Sentinel and Cluster paths either.

Their async calls go through redis-py's own clients, whose read timeouts (asyncio
timers) fire on a stalled loop even when the reply came during the stall. A 0.3 s
stall (CPU-bound code in the app) while a call to a healthy primary or node is in
flight must leave the breaker closed, and the call and the next session save must
succeed; a server that really hangs still opens the breaker within one timeout.

"In flight": the servers pause their clients for 0.1 s (``CLIENT PAUSE``, within
the deadline) while the call starts, so its request is out and waits for the reply
when the loop stalls, and the reply arrives during the stall.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from gatekeep import AsyncLimiter
from gatekeep.backends.connect import connect
from gatekeep.backends.failover import FailoverBackend
from gatekeep.breaker import State
from gatekeep.sessions import SessionStore
from gatekeep.testing import ServerProcess

from .topology import SERVICE

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DEADLINE = 0.25
STALL = 0.3


async def _in_flight_then_stall(coro: Any, servers: list[ServerProcess]) -> Any:
    for server in servers:
        with redis.Redis(port=server.port) as admin:
            admin.execute_command("CLIENT", "PAUSE", 100)
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(0.02)  # the request goes out (redis-py takes a few loop passes)
    time.sleep(STALL)  # noqa: ASYNC251  (the point: the loop is held; Redis answers)
    return await task


async def _a_stall_is_not_an_outage(url: str, servers: list[ServerProcess], prefix: str) -> None:
    backend = FailoverBackend(connect(url, timeout=DEADLINE), metrics=None)
    limiter = AsyncLimiter("100/minute", backend=backend, prefix=prefix)
    store = SessionStore(backend, prefix=prefix, idle_timeout=100, absolute_timeout=1000)
    try:
        assert (await limiter.hit("k")).remaining == 99  # connected, scripts loaded
        session = store.new({"n": 1})
        assert await store.asave(session)
        decision = await _in_flight_then_stall(limiter.hit("k"), servers)
        assert decision.remaining == 98  # Redis decided it, not the fallback
        session["n"] = 2
        assert await _in_flight_then_stall(store.asave(session), servers)
        assert backend.breaker.state is State.CLOSED
        assert backend.fallback_calls == 0 and backend.breaker.counters.failures == 0
        session["n"] = 3
        assert await store.asave(session)  # the next save succeeds
        assert session.id is not None
        loaded = await store.aload(session.id)
        assert loaded is not None and loaded["n"] == 3
    finally:
        await backend.aclose()


async def _a_hang_opens_the_breaker(url: str, server: ServerProcess, prefix: str) -> None:
    backend = FailoverBackend(connect(url, timeout=DEADLINE), metrics=None)
    limiter = AsyncLimiter("100/minute", backend=backend, prefix=prefix)
    try:
        await limiter.hit("k")
        server.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            decision = await limiter.hit("k")  # decided by the fallback
            took = time.monotonic() - started
        finally:
            server.signal(signal.SIGCONT)
        assert decision.allowed
        # the breaker of the key's shard (on Cluster, one per primary; else the only one)
        breaker = backend.breaker_for(limiter.keys("k", limiter.plan(None)), aio=True)
        assert breaker.state is State.OPEN
        assert breaker.counters.timeouts == 1
        assert DEADLINE - 0.05 <= took < DEADLINE + 0.2, took
    finally:
        await backend.aclose()


async def test_sentinel_a_stalled_loop_is_not_an_outage(sentinel_topology, prefix):
    topo = sentinel_topology
    await _a_stall_is_not_an_outage(topo.url, [topo.primary], prefix)


async def test_sentinel_a_hung_primary_opens_the_breaker_within_one_timeout(
    sentinel_topology, prefix
):
    topo = sentinel_topology
    await _a_hang_opens_the_breaker(topo.url, topo.primary, prefix)


async def test_cluster_a_stalled_loop_is_not_an_outage(cluster, prefix):
    await _a_stall_is_not_an_outage(cluster.url, cluster.nodes[:3], prefix)


async def test_cluster_a_hung_node_opens_the_breaker_within_one_timeout(cluster, prefix):
    limiter = AsyncLimiter("100/minute", prefix=prefix)
    slot = key_slot(limiter.keys("k", limiter.plan(None))[0].encode())
    node = cluster.node(cluster.master_of_slot(slot))
    await _a_hang_opens_the_breaker(cluster.url, node, prefix)


async def _until_redis_decides(backend: FailoverBackend, limiter: AsyncLimiter, within: float):
    """When (time.monotonic()) a hit was decided by Redis again, or None."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        before = backend.fallback_calls
        await limiter.hit("k")
        if backend.fallback_calls == before:
            return time.monotonic()
        await asyncio.sleep(0.02)
    return None


async def test_sentinel_a_hung_host_is_failed_over_and_followed(sentinel_topology, prefix):
    """The primary hangs, and with it the Sentinel the client asks first (one host).
    gatekeep's deadline ends each call while redis-py still waits for that Sentinel,
    so the next one is never asked; ``connect.after_timeout`` asks them in turn in the
    background, and Redis decides again once the others promoted the replica."""
    topo = sentinel_topology
    backend = FailoverBackend(connect(topo.url, timeout=DEADLINE), recovery_time=0.2, metrics=None)
    limiter = AsyncLimiter("1000/second", backend=backend, prefix=prefix)
    await limiter.hit("k")
    first = backend.primary.aclient.connection_pool.sentinel_manager.sentinels[0]
    port = first.connection_pool.connection_kwargs["port"]
    hung = [next(s for s in topo.sentinels if s.port == port).process.pid, topo.primary.pid]
    topo.wait_replica_caught_up()
    for pid in hung:
        os.kill(pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        by_redis_again = await _until_redis_decides(backend, limiter, 15)
        assert by_redis_again is not None, "the Sentinel client did not follow the failover"
        live = next(s for s in topo.sentinels if s.port != port)
        with live.client() as sentinel:
            assert int(sentinel.sentinel_get_master_addr_by_name(SERVICE)[1]) == topo.replica.port
        took = by_redis_again - stopped
        print(f"\n[sentinel, hung host] Redis decides again {took:.2f} s after SIGSTOP")
    finally:
        for pid in hung:
            os.kill(pid, signal.SIGCONT)
        await backend.aclose()


async def test_cluster_a_hung_primary_is_failed_over_and_followed(cluster, prefix):
    """Runs last (the cluster is the module's): a primary hangs until its replica
    takes over. gatekeep's deadline ends the calls to it, which redis-py does not
    see; ``connect.after_timeout`` shows the hang to redis-py, which then refreshes
    its slot map, and Redis decides again while the old primary still hangs."""
    backend = FailoverBackend(
        connect(cluster.url, timeout=DEADLINE), recovery_time=0.2, metrics=None
    )
    limiter = AsyncLimiter("1000/second", backend=backend, prefix=prefix)
    slot = key_slot(limiter.keys("k", limiter.plan(None))[0].encode())
    victim = cluster.node(cluster.master_of_slot(slot))
    try:
        await limiter.hit("k")
        victim.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        by_redis_again = await _until_redis_decides(backend, limiter, 15)
        assert by_redis_again is not None, "the cluster client did not follow the failover"
        survivor = next(n for n in cluster.nodes if n is not victim)
        assert cluster.master_of_slot(slot, via=survivor) != victim.port
        took = by_redis_again - stopped
        print(f"\n[cluster, hung primary] Redis decides again {took:.2f} s after SIGSTOP")
    finally:
        victim.signal(signal.SIGCONT)
        await backend.aclose()

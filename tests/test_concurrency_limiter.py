"""ConcurrencyLimiter / AsyncConcurrencyLimiter: at most N in flight per key, leases that
are renewed while held, released at the end, and lapse when their holder dies."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import time

import pytest
import redis
from lease_workers import LIMIT, PROCESSES, ROUNDS, TTL, holder, worker

from gatekeep import (
    AsyncConcurrencyLimiter,
    ConcurrencyLimiter,
    ConcurrencyLimitExceeded,
    FailoverBackend,
    MemoryBackend,
    Metrics,
    RedisBackend,
)


def _wait_for(condition, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_at_most_limit_per_key_and_release_frees(backend, prefix):
    limiter = ConcurrencyLimiter(2, backend=backend, prefix=prefix, metrics=None)
    with limiter.slot("k") as one, limiter.slot("k"):
        assert one.decision.remaining == 1
        with pytest.raises(ConcurrencyLimitExceeded) as denied, limiter.slot("k"):
            pass  # pragma: no cover
        assert denied.value.decision.limit == 2
        assert 0 < denied.value.decision.retry_after <= 30
        with limiter.slot("other"):  # another key has its own slots
            pass
        assert limiter.held == 2
    assert limiter.held == 0
    assert limiter.peek("k").remaining == 2


async def test_async_slots(backend, prefix):
    limiter = AsyncConcurrencyLimiter(1, backend=backend, prefix=prefix, metrics=None)
    async with limiter.slot("k"):
        assert not (await limiter.acquire("k")).acquired
        assert limiter.held == 1
    assert (await limiter.peek("k")).remaining == 1
    slot = await limiter.acquire("k")
    await slot.release()
    await slot.release()  # once only
    assert (await limiter.peek("k")).remaining == 1


def test_metrics_count_acquisitions(prefix):
    metrics = Metrics()
    limiter = ConcurrencyLimiter(1, prefix=prefix, name="exports", metrics=metrics)
    with limiter.slot("k"):
        assert not limiter.acquire("k").acquired
    counters = metrics.rule("exports")
    assert (counters.allowed, counters.denied) == (1, 1)


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "async"])
async def test_heartbeat_keeps_a_lease_past_its_ttl(prefix, aio):
    backend = MemoryBackend()
    options = dict(backend=backend, prefix=prefix, ttl=0.15, metrics=None)
    if aio:
        limiter = AsyncConcurrencyLimiter(1, **options)
        async with limiter.slot("k"):
            for _ in range(300):  # the heartbeat's beats: up to 3 s
                if limiter.renewals >= 4:
                    break
                await asyncio.sleep(0.01)
            assert limiter.renewals >= 4  # held for more than 4 / 3 of the TTL
            assert (await limiter.peek("k")).remaining == 0
        assert limiter.lost == 0
    else:
        limiter = ConcurrencyLimiter(1, **options)
        with limiter.slot("k"):
            assert _wait_for(lambda: limiter.renewals >= 4)
            assert limiter.peek("k").remaining == 0
        assert limiter.lost == 0
        assert _wait_for(lambda: not limiter._renewer._thread)  # the thread ends when idle


@pytest.mark.redis
def test_lease_set_lives_until_its_last_lease_lapses(server, prefix):
    client = redis.Redis(port=server.port)
    limiter = ConcurrencyLimiter(3, backend=RedisBackend(server.url), prefix=prefix, ttl=20.0)
    key = limiter.lease_key("k")
    a = limiter.acquire("k")
    assert 19_900 <= client.pttl(key) <= 20_000
    b = limiter.acquire("k")
    assert client.zcard(key) == 2
    a.release()
    assert 19_900 <= client.pttl(key) <= 20_000
    b.release()
    assert client.exists(key) == 0  # the last release leaves nothing behind
    short = ConcurrencyLimiter(3, backend=RedisBackend(server.url), prefix=prefix, ttl=0.2)
    c = short.acquire("k")
    assert 150 <= client.pttl(key) <= 200
    short._renewer.discard(c.lease)  # a dead holder: no more heartbeats
    assert _wait_for(lambda: client.exists(key) == 0, 1.0)
    client.close()


def test_memory_lease_set_lifetime(prefix):
    now = [1_800_000_000_000_000]
    backend = MemoryBackend(clock=lambda: now[0])
    limiter = ConcurrencyLimiter(2, backend=backend, prefix=prefix, ttl=10.0, metrics=None)
    key = limiter.lease_key("k")
    slot = limiter.acquire("k")
    assert backend.store.ttl_us(key, now[0]) == 10_000_000
    now[0] += 4_000_000
    limiter._renew(slot.lease)
    assert backend.store.ttl_us(key, now[0]) == 10_000_000
    now[0] += 10_000_000  # lapsed: the key is gone with it
    assert backend.store.ttl_us(key, now[0]) is None
    assert limiter.peek("k").remaining == 2
    limiter._renewer.discard(slot.lease)


@pytest.mark.redis
def test_a_lost_lease_is_reported(server, prefix):
    client = redis.Redis(port=server.port)
    limiter = ConcurrencyLimiter(
        1, backend=RedisBackend(server.url), prefix=prefix, ttl=0.3, metrics=None
    )
    with limiter.slot("k"):
        client.delete(limiter.lease_key("k"))  # as if it had lapsed
        assert _wait_for(lambda: limiter.lost == 1)
        assert limiter.held == 0
    client.close()


@pytest.mark.redis
def test_failover_decides_locally_while_redis_is_away(server_factory, prefix):
    srv = server_factory()
    backend = FailoverBackend(RedisBackend(srv.url), instances=2, metrics=None)
    limiter = ConcurrencyLimiter(4, backend=backend, prefix=prefix, metrics=None)
    with limiter.slot("k"):
        pass
    srv.stop()
    slots = [limiter.acquire("k") for _ in range(3)]
    assert [s.acquired for s in slots] == [True, True, False]  # this instance's share: 2
    for s in slots:
        s.release()
    assert backend.fallback_calls >= 3


# -- across processes (the workers in lease_workers.py: a child imports no pytest) ------


@pytest.mark.redis
def test_eight_processes_never_exceed_the_limit(servers, prefix):
    server = servers.get("redis")  # the same script on Valkey: test_lease_twins.py
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(PROCESSES + 1)  # all of them imported and connected
    inside, peak, done = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
    procs = [
        ctx.Process(target=worker, args=(server.url, prefix, start, inside, peak, done))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    start.wait(60)
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert done.value == PROCESSES * ROUNDS
    assert peak.value == LIMIT  # the limit was reached, and never passed


@pytest.mark.redis
def test_a_killed_holder_frees_its_slot_when_its_lease_lapses(servers, prefix):
    server = servers.get("redis")
    ctx = mp.get_context("spawn")
    held = ctx.Event()
    proc = ctx.Process(target=holder, args=(server.url, prefix, held))
    proc.start()
    try:
        assert held.wait(20)
        limiter = ConcurrencyLimiter(1, backend=RedisBackend(server.url), prefix=prefix, ttl=TTL)
        time.sleep(TTL)  # renewed by its heartbeat meanwhile: still held
        assert not limiter.acquire("k").acquired
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        while not (slot := limiter.acquire("k")).acquired:
            assert time.monotonic() - killed < TTL + 0.15, "the slot outlived its lease"
            time.sleep(0.005)
        freed = time.monotonic() - killed
        slot.release()
        # its last renewal was at most renew_every (TTL / 3) before the kill
        assert TTL - TTL / 3 - 0.05 <= freed <= TTL + 0.15
    finally:
        proc.kill()
        proc.join(10)


def test_held_and_lost_leases_are_exported(prefix):
    from gatekeep.exporters import samples

    metrics = Metrics()
    limiter = ConcurrencyLimiter(2, prefix=prefix, name="exports", metrics=metrics)
    with limiter.slot("k"):
        found = {
            (name, labels.get("limiter")): value
            for name, _, labels, value in samples(metrics.stats())
            if name.startswith("gatekeep_leases")
        }
        assert found == {
            ("gatekeep_leases_held", "exports:leases"): 1,
            ("gatekeep_leases_lost", "exports:leases"): 0,
        }


def _forked_holder(limiter, result) -> None:  # pragma: no cover - in the child
    with limiter.slot("child"):
        ok = _wait_for(lambda: limiter.renewals >= 2, 5.0)
    result.put(ok and limiter.lost == 0)


def test_a_forked_child_renews_its_own_leases(prefix):
    """The parent's heartbeat thread does not exist in a forked child: the child starts its
    own, and does not renew the parent's leases."""
    import warnings

    limiter = ConcurrencyLimiter(1, prefix=prefix, ttl=0.15, metrics=None)
    ctx = mp.get_context("fork")
    result = ctx.Queue()
    with limiter.slot("parent"):
        proc = ctx.Process(target=_forked_holder, args=(limiter, result))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            proc.start()
        assert result.get(timeout=20) is True
        proc.join(10)
    assert proc.exitcode == 0

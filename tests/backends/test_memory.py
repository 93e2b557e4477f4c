from __future__ import annotations

import asyncio
import sys
import threading

import pytest

from gatekeep import AsyncLimiter, Limiter, MemoryBackend
from gatekeep.backends import MemoryStore

T0 = 1_800_000_000.0


def test_store_expiry_and_lru():
    store = MemoryStore(max_keys=3)
    store.set("a", 1, expire_at=100)
    store.set("b", 2, expire_at=200)
    store.set("c", 3, expire_at=300)
    assert store.get("a", now=50) == 1  # a is now the most recently used
    store.set("d", 4, expire_at=400)  # evicts b, the least recently used
    assert "b" not in store and len(store) == 3 and store.evictions == 1
    assert store.get("a", now=100) is None  # expired exactly at its deadline
    assert store.ttl_us("c", now=250) == 50
    assert store.ttl_us("c", now=300) is None


def test_sweep_drops_expired_keys_nobody_reads():
    backend = MemoryBackend()
    limiter = Limiter("5/s", backend=backend)
    for i in range(1000):
        limiter.hit(f"client-{i}", now=T0)
    assert len(backend.store) == 1000
    # a minute later every one of those buckets is full again: their keys expired,
    # and each new decision sweeps a couple of them
    for i in range(600):
        limiter.hit(f"later-{i}", now=T0 + 60)
    assert len(backend.store) < 1000


def test_max_keys_bounds_memory():
    backend = MemoryBackend(max_keys=100)
    limiter = Limiter("5/hour", backend=backend)
    for i in range(1000):
        limiter.hit(f"client-{i}", now=T0)
    assert len(backend.store) == 100
    assert backend.store.evictions == 900


def test_invalid_max_keys():
    with pytest.raises(ValueError, match="max_keys"):
        MemoryBackend(max_keys=0)


@pytest.mark.parametrize(
    "algorithm", ["token_bucket", "gcra", "fixed_window", "sliding_window", "sliding_log"]
)
def test_thread_safe_exactness(algorithm):
    # switch threads as often as the interpreter allows: a decision not under the lock
    # (fused path or run()) would then admit more than the limit
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        limiter = Limiter("2000/day", algorithm=algorithm)
        barrier = threading.Barrier(8)
        admitted: list[int] = []

        def worker():
            barrier.wait()
            admitted.append(sum(limiter.hit("shared").allowed for _ in range(600)))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert sum(admitted) == 2000


async def test_asyncio_safe_exactness():
    limiter = AsyncLimiter("100/day")

    async def worker() -> int:
        n = 0
        for _ in range(50):
            n += (await limiter.hit("shared")).allowed
            await asyncio.sleep(0)
        return n

    assert sum(await asyncio.gather(*(worker() for _ in range(8)))) == 100


def test_custom_clock():
    clock = [int(T0 * 1_000_000)]
    limiter = Limiter("1/s", backend=MemoryBackend(clock=lambda: clock[0]))
    assert limiter.hit("k").allowed
    assert not limiter.hit("k").allowed
    clock[0] += 1_000_000
    assert limiter.hit("k").allowed

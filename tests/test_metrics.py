from __future__ import annotations

import threading

import pytest

from gatekeep import AsyncLimiter, Limiter
from gatekeep.metrics import METRICS, Metrics

T0 = 1_800_000_000.0


def test_decisions_are_counted_per_rule():
    metrics = Metrics(latency_sample=1)
    api = Limiter("5/minute", metrics=metrics, name="api")
    login = Limiter("1/minute", metrics=metrics, name="login")
    for _ in range(7):
        api.hit("k", now=T0)
    login.hit("k", now=T0)
    login.hit("k", now=T0)
    stats = metrics.stats()
    assert stats["decisions"]["api"]["allowed"] == 5
    assert stats["decisions"]["api"]["denied"] == 2
    # remaining 0 after the 5th is under 20 % of 5; so is remaining 0 of 1 for login
    assert stats["decisions"]["api"]["near_limit"] == 1
    assert stats["decisions"]["login"] == {
        "allowed": 1,
        "denied": 1,
        "near_limit": 1,
        "settled": 0,
        "shadow_denied": 0,
        "waits": 0,
    }
    assert stats["latency"]["memory"]["count"] == 9
    assert stats["latency"]["memory"]["buckets"][float("inf")] == 9
    assert stats["latency"]["memory"]["sum"] > 0


def test_peek_and_refund_are_not_decisions():
    metrics = Metrics()
    limiter = Limiter("5/minute", metrics=metrics, name="r")
    limiter.peek("k")
    limiter.refund("k")
    assert (
        "r" not in metrics.stats()["decisions"] or metrics.stats()["decisions"]["r"]["allowed"] == 0
    )


def test_latency_is_sampled():
    metrics = Metrics(latency_sample=4)
    limiter = Limiter("100/minute", metrics=metrics)
    for _ in range(20):
        limiter.hit("k")
    assert metrics.stats()["latency"]["memory"]["count"] == 5


def test_metrics_off_records_nothing():
    before = METRICS.stats()["decisions"].get("off-rule")
    limiter = Limiter("5/minute", metrics=None, name="off-rule")
    limiter.hit("k")
    assert METRICS.stats()["decisions"].get("off-rule") == before is None


def test_default_registry_and_memory_store_gauge():
    limiter = Limiter("1/minute", name="default-registry-test")
    limiter.hit("a")
    limiter.hit("b")
    stats = METRICS.stats()
    assert stats["decisions"]["default-registry-test"]["allowed"] == 2
    watched = stats["watched"]["default-registry-test:memory"]
    assert watched == {"kind": "memory_store", "keys": 2, "evictions": 0}


def test_threads_lose_no_counts():
    metrics = Metrics()
    limiter = Limiter("1000000/second", metrics=metrics)
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        for _ in range(2000):
            limiter.hit("k")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert metrics.stats()["decisions"]["default"]["allowed"] == 16_000


async def test_async_limiter_counts():
    metrics = Metrics(latency_sample=1)
    limiter = AsyncLimiter("2/minute", metrics=metrics, name="a")
    for _ in range(3):
        await limiter.hit("k")
    await limiter.hit_many(["x", "y"])
    c = metrics.stats()["decisions"]["a"]
    assert (c["allowed"], c["denied"]) == (4, 1)


def test_reset_keeps_handles_valid():
    metrics = Metrics(latency_sample=1)
    limiter = Limiter("5/minute", metrics=metrics, name="x")
    limiter.hit("k")
    metrics.reset()
    assert metrics.stats()["decisions"]["x"]["allowed"] == 0
    limiter.hit("k")
    assert metrics.stats()["decisions"]["x"]["allowed"] == 1
    assert metrics.stats()["latency"]["memory"]["count"] == 1


def test_backend_errors_and_watch():
    metrics = Metrics()
    metrics.backend_error("redis", ConnectionError("down"))
    metrics.backend_error("redis", "TimeoutError")
    metrics.backend_error("redis", "TimeoutError")
    metrics.watch("primary", lambda: {"kind": "breaker", "state": "open", "transitions": 1})
    stats = metrics.stats()
    assert stats["backend_errors"] == {"redis:ConnectionError": 1, "redis:TimeoutError": 2}
    assert stats["watched"]["primary"]["state"] == "open"


def test_session_hit_rate():
    metrics = Metrics()
    s = metrics.sessions
    s.loads, s.hits, s.misses = 10, 8, 2
    assert metrics.stats()["sessions"]["hit_rate"] == pytest.approx(0.8)


def test_bad_configuration():
    with pytest.raises(ValueError, match="latency_sample"):
        Metrics(latency_sample=0)
    with pytest.raises(ValueError, match="name"):
        Limiter("1/s", name="")

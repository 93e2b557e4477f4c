"""``acquire``: wait exactly the ``retry_after`` the script returns, then take the cost.

On a frozen clock (a MemoryBackend clock advanced by the test's sleep) every wait
is checked to the microsecond; on every backend, a real wait of one interval.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from gatekeep import AsyncLimiter, Limiter, MemoryBackend, waiting
from gatekeep.metrics import Metrics

T0 = 1_790_000_000_000_000  # µs


class Clock:
    """A clock in µs that only the test's sleeps advance; records each sleep."""

    def __init__(self) -> None:
        self.now = T0
        self.slept: list[float] = []
        #: Called during a sleep (another process taking capacity: a race).
        self.during_sleep = lambda: None

    def __call__(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += round(seconds * 1_000_000)
        self.during_sleep()

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(waiting, "sleep", c.sleep)
    monkeypatch.setattr(waiting, "asleep", c.asleep)
    return c


def test_sleeps_exactly_the_retry_after_then_takes_the_cost(clock: Clock) -> None:
    metrics = Metrics()
    limiter = Limiter("10/second", backend=MemoryBackend(clock=clock), metrics=metrics, name="a")
    assert limiter.hit("k", cost=10)
    decision = limiter.acquire("k", cost=3)
    assert decision.allowed and decision.remaining == 0
    assert clock.slept == [0.3]  # one wait: 3 tokens at 100 ms each, no polling
    counts = metrics.stats()["decisions"]["a"]
    assert (counts["allowed"], counts["denied"], counts["waits"]) == (2, 0, 1)


def test_a_race_during_the_wait_means_one_more_wait_within_the_timeout(clock: Clock) -> None:
    limiter = Limiter("10/second", backend=MemoryBackend(clock=clock), metrics=None)
    limiter.hit("k", cost=10)
    races = [1]

    def other_process() -> None:  # takes the token this wait was for, once
        if races:
            races.pop()
            assert limiter.hit("k")

    clock.during_sleep = other_process
    assert limiter.acquire("k", timeout=0.25).allowed
    assert clock.slept == [0.1, 0.1]


def test_denied_at_once_when_the_wait_exceeds_the_timeout(clock: Clock) -> None:
    limiter = Limiter("10/second", backend=MemoryBackend(clock=clock), metrics=None)
    limiter.hit("k", cost=10)
    decision = limiter.acquire("k", cost=5, timeout=0.4)
    assert not decision.allowed and decision.retry_after == pytest.approx(0.5)
    assert clock.slept == []
    assert limiter.acquire("k", cost=4, timeout=0.45).allowed
    assert clock.slept == [0.4]
    assert not limiter.acquire("k", timeout=0).allowed  # timeout 0: a plain hit


def test_a_cost_that_can_never_pass_is_denied_at_once(clock: Clock) -> None:
    limiter = Limiter("10/second", backend=MemoryBackend(clock=clock), metrics=None)
    decision = limiter.acquire("k", cost=11)  # no timeout: still never
    assert not decision.allowed and decision.retry_after == float("inf")
    assert clock.slept == []


def test_several_limits_wait_for_the_slowest(clock: Clock) -> None:
    limiter = Limiter("10/second; 20/minute", backend=MemoryBackend(clock=clock), metrics=None)
    limiter.hit("k", cost=10)
    limiter.hit("k", cost=10, now=(T0 + 1_000_000) / 1e6)  # the minute has 0 left
    clock.now += 1_000_000
    assert limiter.acquire("k").allowed
    # the minute limit has 1 s of its 3 s per token refilled: 2 s (the second's: 0.1 s)
    assert clock.slept == [2.0]


@pytest.mark.parametrize("timeout", ["1", -1, float("nan"), True])
def test_timeout_is_checked(timeout: object) -> None:
    with pytest.raises(ValueError, match="timeout"):
        Limiter("1/second").acquire("k", timeout=timeout)  # type: ignore[arg-type]


async def test_async_acquire_waits_with_asyncio_sleep(clock: Clock) -> None:
    limiter = AsyncLimiter("10/second", backend=MemoryBackend(clock=clock), metrics=None)
    await limiter.hit("k", cost=10)
    assert (await limiter.acquire("k", cost=2, timeout=1)).allowed
    assert clock.slept == [0.2]
    assert not (await limiter.acquire("k", cost=2, timeout=0.1)).allowed


async def test_a_cancelled_wait_takes_nothing() -> None:
    limiter = AsyncLimiter("10/minute", metrics=None)
    await limiter.hit("k", cost=10)
    task = asyncio.create_task(limiter.acquire("k"))
    await asyncio.sleep(0.01)  # the task is in its 6 s wait
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await limiter.peek("k")).remaining == 0
    await limiter.refund("k", cost=1)
    assert (await limiter.peek("k")).remaining == 1  # nothing was taken by the waiter


# -- every backend, on its own clock (Redis: the server's TIME) ------------------------


def test_acquire_on_every_backend(backend: object, prefix: str) -> None:
    limiter = Limiter("50/second", backend=backend, prefix=prefix, metrics=None)  # type: ignore[arg-type]
    assert limiter.hit("k", cost=50)
    started = time.monotonic()
    decision = limiter.acquire("k", timeout=1)
    waited = time.monotonic() - started
    assert decision.allowed
    assert 0.015 <= waited < 0.5  # about one interval (20 ms), however the clocks run
    assert not limiter.acquire("k", cost=50, timeout=0.01).allowed


async def test_async_acquire_on_every_backend(backend: object, prefix: str) -> None:
    limiter = AsyncLimiter("50/second", backend=backend, prefix=prefix, metrics=None)  # type: ignore[arg-type]
    assert await limiter.hit("k", cost=50)
    started = time.monotonic()
    assert (await limiter.acquire("k", timeout=1)).allowed
    assert 0.015 <= time.monotonic() - started < 0.5


def test_concurrent_acquires_are_spaced_at_the_rate(backend: object, prefix: str) -> None:
    """6 threads x 4 acquires of a 100/second bucket holding 1: all 24 pass, one per
    10 ms of the backend's clock, never two at once (the waits race; the script decides)."""
    import threading

    metrics = Metrics()
    limiter = Limiter(
        "100/second burst 1", backend=backend, prefix=prefix, metrics=metrics, name="c"
    )  # type: ignore[arg-type]
    results: list[bool] = []

    def worker() -> None:
        results.extend(limiter.acquire("k", timeout=5).allowed for _ in range(4))

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert results == [True] * 24
    assert 0.23 <= elapsed < 3.0
    counts = metrics.stats()["decisions"]["c"]
    assert counts["allowed"] == 24 and counts["denied"] == 0 and counts["waits"] >= 23

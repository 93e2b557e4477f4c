"""FailoverBackend's policies and recovery, with a primary that fails on command.

The primary is a MemoryBackend that raises redis-py's errors while ``down``, so
these run in milliseconds; tests/ha/test_sentinel.py and test_cluster.py do the
same against real servers.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest
import redis

from gatekeep import AsyncLimiter, Limiter, MemoryBackend
from gatekeep.backends.failover import FailoverBackend, local_share
from gatekeep.breaker import State
from gatekeep.errors import BackendUnavailable
from gatekeep.rates import Rate, parse_rate


class FlakyPrimary(MemoryBackend):
    """A shared store that can be switched off, failing like Redis does."""

    def __init__(self) -> None:
        super().__init__()
        self.down: BaseException | None = None
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down is not None:
            raise self.down

    def limit(self, *a, **kw):
        self._check()
        return super().limit(*a, **kw)

    def limit_many(self, *a, **kw):
        self._check()
        return super().limit_many(*a, **kw)

    def delete(self, keys):
        self._check()
        super().delete(keys)

    async def alimit(self, *a, **kw):
        self._check()
        return super().limit(*a, **kw)

    async def alimit_many(self, *a, **kw):
        self._check()
        return super().limit_many(*a, **kw)

    async def adelete(self, keys):
        self._check()
        super().delete(keys)


NOW = 1_700_000_000.0


def test_local_share_divides_limit_and_burst():
    assert local_share(parse_rate("100/minute"), 4) == Rate(25, 60_000_000)
    assert local_share(parse_rate("10/second burst 40"), 4) == Rate(2, 1_000_000, 10)
    assert local_share(parse_rate("3/second"), 8) == Rate(1, 1_000_000)  # at least 1
    r = parse_rate("7/s")
    assert local_share(r, 1) is r


@pytest.mark.parametrize("instances, allowed", [(1, 8), (4, 2), (3, 2)])
def test_local_policy_enforces_this_instances_share(instances, allowed):
    primary = FlakyPrimary()
    backend = FailoverBackend(primary, policy="local", instances=instances)
    limiter = Limiter("8/minute", backend=backend)
    primary.down = redis.ConnectionError("refused")
    got = [limiter.hit("k", now=NOW).allowed for _ in range(10)]
    assert got == [True] * allowed + [False] * (10 - allowed)
    assert backend.breaker.state is State.OPEN
    assert primary.calls == 3  # the breaker opened after 3 failures: no more attempts
    assert backend.fallback_calls == 10


def test_open_policy_allows_everything_and_closed_policy_raises_503_error():
    primary = FlakyPrimary()
    primary.down = redis.ConnectionError("refused")
    limiter = Limiter("1/minute", backend=FailoverBackend(primary, policy="open"))
    assert all(limiter.hit("k", now=NOW).allowed for _ in range(20))
    closed = FailoverBackend(primary, policy="closed")
    limiter = Limiter("1/minute", backend=closed)
    with pytest.raises(BackendUnavailable, match="policy='closed'") as info:
        limiter.hit("k", now=NOW)
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    for _ in range(3):
        with pytest.raises(BackendUnavailable):
            limiter.hit("k", now=NOW)
    assert closed.breaker.state is State.OPEN
    with pytest.raises(BackendUnavailable, match="breaker is open") as info:
        limiter.hit("k", now=NOW)
    assert info.value.__cause__ is None and info.value.retry_after >= 1.0
    with pytest.raises(BackendUnavailable):
        limiter.reset("k")


@pytest.mark.parametrize(
    "error",
    [
        redis.ConnectionError("refused"),
        redis.TimeoutError("read"),
        ConnectionResetError(),
        redis.exceptions.OutOfMemoryError("OOM"),
        redis.exceptions.ReadOnlyError("READONLY"),
        redis.exceptions.ClusterDownError("CLUSTERDOWN"),
        redis.exceptions.RedisClusterException("x"),
        redis.exceptions.BusyLoadingError("LOADING"),
        redis.ResponseError("ERR bug"),
    ],
)
def test_every_redis_error_is_absorbed(error):
    primary = FlakyPrimary()
    primary.down = error
    limiter = Limiter("5/minute", backend=FailoverBackend(primary))
    assert [limiter.hit("k", now=NOW).allowed for _ in range(6)] == [True] * 5 + [False]


def test_programming_errors_are_not_swallowed():
    primary = FlakyPrimary()
    primary.down = TypeError("a bug")
    limiter = Limiter("5/minute", backend=FailoverBackend(primary))
    with pytest.raises(TypeError):
        limiter.hit("k", now=NOW)


def test_recovers_by_itself_and_keys_return_to_primary():
    primary = FlakyPrimary()
    backend = FailoverBackend(primary, recovery_time=0.05)
    limiter = Limiter("100/minute", backend=backend)
    assert limiter.hit("k", now=NOW).remaining == 99
    primary.down = redis.ConnectionError("refused")
    for _ in range(5):
        limiter.hit("k", now=NOW)
    assert backend.breaker.state is State.OPEN
    primary.down = None
    import time

    time.sleep(0.06)
    d = limiter.hit("k", now=NOW)  # the probe: answered by the primary
    assert backend.breaker.state is State.CLOSED
    assert d.remaining == 98  # the primary's own count went on from 99
    assert backend.breaker.counters.closed == 1


def test_hit_many_and_reset_fall_back_too():
    primary = FlakyPrimary()
    backend = FailoverBackend(primary, instances=2)
    limiter = Limiter("4/minute", backend=backend)
    primary.down = redis.ConnectionError("refused")
    ds = limiter.hit_many(["a", "b", "a", "a"], now=NOW)
    assert [d.allowed for d in ds] == [True, True, True, False]
    limiter.reset("a")  # no exception; the local state is reset
    assert limiter.hit("a", now=NOW).allowed


async def test_async_paths_and_cancellation_releases_the_probe():
    primary = FlakyPrimary()
    backend = FailoverBackend(primary, instances=2, recovery_time=0.01)
    limiter = AsyncLimiter("4/minute", backend=backend)
    primary.down = redis.ConnectionError("refused")
    got = [(await limiter.hit("k", now=NOW)).allowed for _ in range(4)]
    assert got == [True, True, False, False]
    ds = await limiter.hit_many(["x", "y"], now=NOW)
    assert all(d.allowed for d in ds)
    await limiter.reset("k")

    # A probe cancelled mid-call gives its turn back: the next call probes at once.
    class Hanging(FlakyPrimary):
        async def alimit(self, *a, **kw):
            await asyncio.sleep(10)

    hanging = FailoverBackend(Hanging(), recovery_time=0.01)
    hanging.breaker.failure(hanging.breaker.allow(), timeout=True)
    await asyncio.sleep(0.02)
    plan = limiter.plan(None)
    task = asyncio.ensure_future(hanging.alimit(plan, ["k"], None, "hit", 1))
    await asyncio.sleep(0.01)
    assert hanging.breaker.state is State.HALF_OPEN
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hanging.breaker.allow() is not None


def test_fail_open_reply_shape():
    primary = FlakyPrimary()
    primary.down = redis.ConnectionError("x")
    limiter = Limiter("10/second; 100/minute", backend=FailoverBackend(primary, policy="open"))
    d = limiter.hit("k", cost=3)
    assert d.allowed and d.remaining == 7 and d.retry_after == 0
    assert not math.isinf(d.reset_after)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="policy"):
        FailoverBackend(MemoryBackend(), policy="deny")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="instances"):
        FailoverBackend(MemoryBackend(), instances=0)
    with pytest.raises(TypeError, match="primary"):
        FailoverBackend(object())  # type: ignore[arg-type]


class SlowFirst(MemoryBackend):
    """Answers every call, each after ``delays.pop(0)`` seconds (then at once)."""

    def __init__(self, *delays: float) -> None:
        super().__init__()
        self.delays = list(delays)

    def limit(self, *a, **kw):
        if self.delays:
            time.sleep(self.delays.pop(0))
        return super().limit(*a, **kw)


def test_a_cold_clients_first_call_is_not_timed_later_calls_are():
    """A client's first call sets it up (a cluster client asks for the slot map): it is
    not held to the deadline; from then on a late answer opens the breaker."""
    primary = SlowFirst(0.08, 0.0, 0.08)
    backend = FailoverBackend(primary, deadline=0.05, metrics=None)
    limiter = Limiter("100/minute", backend=backend, prefix="cold")
    assert limiter.hit("k").remaining == 99  # slow, but the first: still closed
    assert backend.breaker.state is State.CLOSED
    assert limiter.hit("k").remaining == 98
    assert limiter.hit("k").remaining == 97  # slow again: the answer is used, the breaker opens
    assert backend.breaker.state is State.OPEN and backend.breaker.counters.timeouts == 1

"""What every algorithm promises, on every backend (memory, fakeredis, Redis, Valkey)."""

from __future__ import annotations

import math

import pytest

from gatekeep import ALGORITHMS, AsyncLimiter, Limiter, RedisBackend

T0 = 1_800_000_000.0  # seconds; a fixed clock, aligned on every window below
WINDOWED = ["fixed_window", "sliding_window", "sliding_log"]


@pytest.fixture(params=list(ALGORITHMS))
def algorithm(request):
    return request.param


def make(backend, prefix, algorithm, limits="5/10s"):
    return Limiter(limits, backend=backend, prefix=prefix, algorithm=algorithm)


def test_admits_exactly_the_limit_at_one_instant(backend, prefix, algorithm):
    limiter = make(backend, prefix, algorithm)
    decisions = [limiter.hit("k", now=T0) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0]
    assert all(d.limit == 5 for d in decisions)
    assert decisions[0].retry_after == 0
    denied = decisions[-1]
    assert 0 < denied.retry_after <= 20
    assert denied.reset_after >= denied.retry_after
    # waiting retry_after is (for the exact algorithms) necessary, and enough
    if algorithm != "sliding_window":
        assert not limiter.peek("k", now=T0 + denied.retry_after - 0.001).allowed
    assert limiter.hit("k", now=T0 + denied.retry_after).allowed


def test_refill_rates(backend, prefix, algorithm):
    limiter = make(backend, prefix, algorithm, "4/4s")
    for _ in range(4):
        assert limiter.hit("k", now=T0)
    assert not limiter.hit("k", now=T0 + 0.5)
    if algorithm in ("token_bucket", "gcra"):
        # continuous refill: one token per second
        assert limiter.hit("k", now=T0 + 1.0).allowed
        assert not limiter.hit("k", now=T0 + 1.5).allowed
    elif algorithm == "fixed_window":
        assert not limiter.hit("k", now=T0 + 3.999).allowed
        assert limiter.hit("k", now=T0 + 4.0).remaining == 3
    elif algorithm == "sliding_log":
        assert not limiter.hit("k", now=T0 + 3.999).allowed
        assert limiter.hit("k", now=T0 + 4.0).remaining == 3  # all four expired at once
    else:  # sliding window: the previous window weighs 4 * (1 - 1/4) = 3 at T0 + 5
        d = limiter.hit("k", now=T0 + 5.0)
        assert d.allowed and d.remaining == 0


def test_cost_larger_than_capacity_is_denied_and_consumes_nothing(backend, prefix, algorithm):
    limiter = make(backend, prefix, algorithm)
    d = limiter.hit("k", cost=6, now=T0)
    assert not d.allowed
    assert math.isinf(d.retry_after)
    assert d.remaining == 5
    assert limiter.hit("k", cost=5, now=T0).allowed


def test_weighted_cost(backend, prefix, algorithm):
    limiter = make(backend, prefix, algorithm)
    assert limiter.hit("k", cost=3, now=T0).remaining == 2
    d = limiter.hit("k", cost=3, now=T0)
    assert not d.allowed and d.remaining == 2
    assert limiter.hit("k", cost=2, now=T0).remaining == 0
    assert limiter.hit("k", cost=0, now=T0).allowed  # a zero cost is always allowed


def test_refund_gives_back_without_exceeding_capacity(backend, prefix, algorithm):
    limiter = make(backend, prefix, algorithm)
    limiter.hit("k", cost=4, now=T0)
    assert limiter.refund("k", cost=2, now=T0).remaining == 3
    assert limiter.refund("k", cost=100, now=T0).remaining == 5
    assert limiter.peek("k", now=T0).remaining == 5
    assert [limiter.hit("k", now=T0).allowed for _ in range(6)] == [True] * 5 + [False]


def test_peek_consumes_nothing(backend, prefix, algorithm):
    limiter = make(backend, prefix, algorithm)
    limiter.hit("k", cost=2, now=T0)
    for _ in range(3):
        d = limiter.peek("k", now=T0)
        assert d.allowed and d.remaining == 3
    assert not limiter.peek("k", cost=4, now=T0).allowed
    assert limiter.hit("k", cost=3, now=T0).remaining == 0


def test_several_limits_are_all_or_nothing(backend, prefix, algorithm):
    limiter = make(backend, prefix, algorithm, ["5/10s", "3/100s"])
    results = [limiter.hit("k", now=T0) for _ in range(4)]
    assert [d.allowed for d in results] == [True, True, True, False]
    denied = results[-1]
    assert denied.limit == 3 and denied.remaining == 0
    assert [d.allowed for d in denied.details] == [True, False]
    # the 5/10s limit was not charged for the denied hit
    assert denied.details[0].remaining == 2
    assert limiter.peek("k", limits="5/10s", now=T0).remaining == 2
    assert denied.retry_after == max(x.retry_after for x in denied.details)


def test_reset(backend, prefix, algorithm):
    limiter = make(backend, prefix, algorithm)
    for _ in range(5):
        limiter.hit("k", now=T0)
    assert not limiter.hit("k", now=T0).allowed
    limiter.reset("k")
    assert limiter.hit("k", now=T0).remaining == 4


def test_keys_and_prefixes_are_separate(backend, prefix, algorithm):
    a = make(backend, prefix + "a", algorithm, "1/10s")
    b = make(backend, prefix + "b", algorithm, "1/10s")
    assert a.hit("k", now=T0) and b.hit("k", now=T0) and a.hit("other", now=T0)
    assert not a.hit("k", now=T0).allowed
    # braces in a key cannot escape its hash tag or collide with another key
    assert a.hit("{k}", now=T0) and a.hit("%7Bk%7D", now=T0)


def test_hit_many(backend, prefix, algorithm):
    limiter = make(backend, prefix, algorithm, "2/10s")
    decisions = limiter.hit_many(["a", "b", "a", "a"], now=T0)
    assert [d.allowed for d in decisions] == [True, True, True, False]


def test_server_clock(backend, prefix, algorithm):
    """Without ``now``, scripts read Redis TIME (the memory backend its own clock)."""
    limiter = make(backend, prefix, algorithm, "2/hour")
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
    d = limiter.hit("k")
    # the sliding window counter may wait into the next window: up to two periods
    assert 0 < d.retry_after <= (7200 if algorithm == "sliding_window" else 3600)


def test_burst_only_for_buckets(backend, prefix, algorithm):
    if algorithm in WINDOWED:
        with pytest.raises(ValueError, match="burst"):
            make(backend, prefix, algorithm, "5/s burst 10")
        return
    limiter = make(backend, prefix, algorithm, "1/s burst 3")
    assert [limiter.hit("k", now=T0).allowed for _ in range(4)] == [True] * 3 + [False]
    assert limiter.hit("k", now=T0).limit == 3


async def test_async_limiter(backend, prefix, algorithm):
    limiter = AsyncLimiter("3/10s", backend=backend, prefix=prefix, algorithm=algorithm)
    allowed = [(await limiter.hit("k", now=T0)).allowed for _ in range(4)]
    assert allowed == [True, True, True, False]
    assert (await limiter.peek("k", now=T0)).remaining == 0
    assert (await limiter.refund("k", now=T0)).remaining == 1
    many = await limiter.hit_many(["k", "j"], now=T0)
    assert [d.allowed for d in many] == [True, True]
    await limiter.reset("k")
    assert (await limiter.hit("k", now=T0)).remaining == 2
    if isinstance(backend, RedisBackend):
        await backend.aclose()


@pytest.mark.redis
def test_every_key_has_a_ttl(server, prefix, algorithm):
    import redis

    backend = RedisBackend(server.url)
    limiter = make(backend, prefix, algorithm, ["5/10s", "50/100s"])
    limiter.hit("k", cost=2)
    client = redis.Redis.from_url(server.url)
    keys = client.keys(f"gk:{prefix}:*")
    assert len(keys) == 2
    for key in keys:
        ttl_ms = client.pttl(key)
        assert 0 < ttl_ms <= 200_000, (key, ttl_ms)
    client.close()
    backend.close()

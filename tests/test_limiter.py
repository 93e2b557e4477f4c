from __future__ import annotations

import pytest

from gatekeep import Limiter, MemoryBackend, RedisBackend


def test_default_backend_is_memory():
    assert isinstance(Limiter("1/s").backend, MemoryBackend)


def test_configuration_errors_at_construction():
    with pytest.raises(ValueError, match="Malformed rate"):
        Limiter("100/fortnight")
    with pytest.raises(ValueError, match=r"Unknown algorithm.*token_bucket"):
        Limiter("1/s", algorithm="leaky")
    with pytest.raises(ValueError, match="prefix"):
        Limiter("1/s", prefix="a{b}")
    with pytest.raises(TypeError, match="backend"):
        Limiter("1/s", backend=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="burst"):
        Limiter("1/s burst 5", algorithm="fixed_window")
    with pytest.raises(ValueError, match="redis://"):
        RedisBackend("localhost:6379")


def test_call_errors():
    limiter = Limiter("1/s")
    with pytest.raises(ValueError, match="cost"):
        limiter.hit("k", cost=-1)
    with pytest.raises(TypeError, match="cost"):
        limiter.hit("k", cost=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        limiter.hit("")
    with pytest.raises(ValueError, match="no limits given"):
        Limiter().hit("k")


def test_limits_per_call_and_plan_cache():
    limiter = Limiter()
    assert limiter.hit("k", "2/s").remaining == 1
    assert limiter.hit("k", ["2/s"]).remaining == 0  # same rate, same key: same state
    assert limiter.plan("2/s") is limiter.plan("2/s")
    assert limiter.hit("k", "5/min").remaining == 4


def test_keys_are_prefixed_and_tagged():
    limiter = Limiter(prefix="shop")
    plan = limiter.plan("10/s; 100/h burst 150")
    assert limiter.keys("user:1", plan) == [
        "gk:shop:{user:1}:tb:10/1000000",
        "gk:shop:{user:1}:tb:100/3600000000b150",
    ]


def test_decision_headers_helpers():
    limiter = Limiter("1/10s")
    limiter.hit("k", now=100.0)
    d = limiter.hit("k", now=100.5)
    assert not d and d.denied
    assert d.retry_after == pytest.approx(9.5)
    assert d.retry_after_seconds == 10
    assert limiter.hit("k", cost=2, now=100.5).retry_after_seconds == 10  # never: reset time

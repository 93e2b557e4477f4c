"""Reserve then settle: the estimate taken at once, the difference charged or refunded
in one script call, on every backend (memory, fakeredis, Redis, Valkey), sync and async."""

from __future__ import annotations

import random
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeep import (
    AsyncLimiter,
    FailoverBackend,
    Limiter,
    MemoryBackend,
    RedisBackend,
    ReservationSettled,
)
from gatekeep.metrics import Metrics

NOW = 1_790_000_000.0  # seconds


def test_settle_refunds_the_excess_and_charges_the_difference(backend, prefix) -> None:
    limiter = Limiter("10/minute", backend=backend, prefix=prefix, metrics=None)
    r = limiter.reserve("k", cost=5, now=NOW)
    assert r and r.decision.remaining == 5
    after = r.settle(2, now=NOW)
    assert after is not None and after.remaining == 8
    assert limiter.peek("k", now=NOW).remaining == 8

    r = limiter.reserve("k", cost=2, now=NOW)
    assert r.settle(9, now=NOW).remaining == 0  # type: ignore[union-attr]  # 11 used of 10
    # a debt of 1 token (6 s each): a hit of 2 waits 18 s, never reads a negative remaining
    denied = limiter.hit("k", cost=2, now=NOW)
    assert not denied and denied.retry_after == 18.0 and denied.remaining == 0
    assert denied.reset_after == 66.0  # full again in 11 tokens' time
    assert limiter.hit("k", cost=2, now=NOW + 18)


def test_a_denied_reservation_takes_nothing_and_settles_to_nothing(backend, prefix) -> None:
    limiter = Limiter("10/minute; 3/second", backend=backend, prefix=prefix, metrics=None)
    r = limiter.reserve("k", cost=4, now=NOW)  # the 3/second denies: all or nothing
    assert not r and not r.allowed and r.settled
    assert r.settle(1, now=NOW) is None and r.cancel(now=NOW) is None
    peek = limiter.peek("k", now=NOW)
    assert [d.remaining for d in peek.details] == [10, 3]


def test_cancel_gives_the_estimate_back_and_a_second_settle_raises(backend, prefix) -> None:
    limiter = Limiter("10/minute; 100/hour", backend=backend, prefix=prefix, metrics=None)
    r = limiter.reserve("k", cost=7, now=NOW)
    assert [d.remaining for d in r.cancel(now=NOW).details] == [10, 100]  # type: ignore[union-attr]
    with pytest.raises(ReservationSettled):
        r.settle(3, now=NOW)
    with pytest.raises(ReservationSettled):
        r.cancel(now=NOW)


def test_an_expired_reservation_stands_at_its_estimate(backend, prefix) -> None:
    limiter = Limiter("10/minute", algorithm="fixed_window", backend=backend, prefix=prefix)
    start = 1_790_000_040.0  # a window starts here (a multiple of 60 s)
    r = limiter.reserve("k", cost=6, now=start)  # ttl: the period, 60 s
    assert not r.expired(now=start + 59.9) and r.expired(now=start + 60)
    short = limiter.reserve("k", cost=1, ttl=10, now=start)
    assert short.settle(0, now=start + 10) is None and short.settled  # nothing sent
    assert limiter.peek("k", now=start + 10).remaining == 3  # 6 + 1 stand
    assert r.settle(0, now=start + 60) is None  # the next window owes it nothing
    assert limiter.peek("k", now=start + 60).remaining == 10


def test_equal_actual_sends_nothing(prefix) -> None:
    metrics = Metrics()
    limiter = Limiter("10/minute", metrics=metrics, name="llm")
    r = limiter.reserve("k", cost=4, now=NOW)
    assert r.settle(4, now=NOW) is None
    assert limiter.peek("k", now=NOW).remaining == 6
    assert metrics.stats()["decisions"]["llm"]["settled"] == 1


@pytest.mark.parametrize("actual", [-1, 1.5, True, "2"])
def test_actual_is_checked(actual) -> None:
    r = Limiter("10/minute").reserve("k", cost=1)
    with pytest.raises(ValueError, match="actual"):
        r.settle(actual)
    assert not r.settled  # a bad argument settles nothing


@pytest.mark.parametrize("ttl", [0, -1, "1", True])
def test_ttl_is_checked(ttl) -> None:
    with pytest.raises(ValueError, match="ttl"):
        Limiter("10/minute").reserve("k", ttl=ttl)


async def test_async_reserve_and_settle(backend, prefix) -> None:
    limiter = AsyncLimiter("10/minute", backend=backend, prefix=prefix, metrics=None)
    r = await limiter.reserve("k", cost=5, now=NOW)
    assert (await r.settle(8, now=NOW)).remaining == 2  # type: ignore[union-attr]
    r = await limiter.reserve("k", cost=2, now=NOW)
    assert (await r.cancel(now=NOW)).remaining == 2  # type: ignore[union-attr]
    with pytest.raises(ReservationSettled):
        await r.settle(1, now=NOW)
    denied = await limiter.reserve("k", cost=3, now=NOW)
    assert not denied and await denied.settle(3) is None


# -- the LLM budget: 100k tokens a minute, random estimates and actuals --------------------

BUDGET = 100_000
INTERVAL = 600  # µs per token: 60 s / 100k


requests = st.lists(
    st.tuples(
        st.integers(0, 40_000),  # estimate
        st.integers(0, 60_000),  # actual
        st.integers(0, 3),  # how many open reservations to settle first
        st.integers(0, 5_000_000),  # µs to advance
    ),
    min_size=1,
    max_size=30,
)


def _budget_run(limiter: Limiter, ops, advance_time: bool) -> None:
    """Reserve, settle in a random order, check against the specification: a level of
    tokens x interval µs, refilled 1 µs per µs up to the budget, below 0 in debt."""
    cap = BUDGET * INTERVAL
    now_us, level = int(NOW * 1_000_000), cap
    open_: list = []
    charged = 0  # the actual costs of the allowed reservations

    def settle(n: int) -> None:
        nonlocal level, charged
        for r, used in open_[:n]:
            r.settle(used, now=now_us / 1e6)
            diff = (r.cost - used) * INTERVAL
            level = min(cap, level + diff) if diff > 0 else level + diff
            charged += used
        del open_[:n]

    for estimate, actual, settle_first, advance in ops:
        if advance_time:
            now_us += advance
            level = min(cap, level + advance)
        settle(settle_first)
        before = limiter.peek("llm", now=now_us / 1e6)
        r = limiter.reserve("llm", cost=estimate, now=now_us / 1e6)
        assert r.allowed == (estimate * INTERVAL <= level)
        if r:
            level -= estimate * INTERVAL
            open_.append((r, actual))
        else:  # a denied reservation consumes nothing
            assert limiter.peek("llm", now=now_us / 1e6) == before
        seen = limiter.peek("llm", now=now_us / 1e6)
        assert 0 <= seen.remaining <= BUDGET  # never negative, never above the budget
        assert seen.remaining == max(0, level // INTERVAL)
    settle(len(open_))
    short_us = round(limiter.peek("llm", now=now_us / 1e6).reset_after * 1_000_000)
    assert short_us == cap - level  # the debt included
    if not advance_time:  # no refill: exactly the actual costs were charged
        assert short_us == charged * INTERVAL


@settings(max_examples=150, deadline=None)
@given(
    algorithm=st.sampled_from(["token_bucket", "gcra"]),
    before=st.integers(0, 10),
    estimate=st.integers(0, 10),
    fewer=st.integers(0, 10),
    later=st.integers(0, 120_000_000),
)
def test_a_refund_is_as_if_the_actual_cost_was_charged_at_reserve(
    algorithm, before, estimate, fewer, later
) -> None:
    """A bucket refunded at settle time ends where charging ``actual`` up front would have."""
    limiter = Limiter("10/minute", algorithm=algorithm, metrics=None)
    actual = max(0, estimate - fewer)
    for key in ("reserved", "ideal"):
        limiter.hit(key, cost=before, now=NOW)
    r = limiter.reserve("reserved", cost=estimate, now=NOW)
    ideal = limiter.hit("ideal", cost=actual, now=NOW)
    assert r.allowed == (estimate <= 10 - before) and ideal.allowed == (actual <= 10 - before)
    if r:
        at = NOW + later / 1e6
        r.settle(actual, now=at)
        assert limiter.peek("reserved", now=at) == limiter.peek("ideal", now=at)


@settings(max_examples=80, deadline=None)
@given(ops=requests, advance_time=st.booleans())
def test_llm_budget_never_negative_never_overcharged(ops, advance_time) -> None:
    _budget_run(Limiter(f"{BUDGET}/minute", metrics=None), ops, advance_time)


@pytest.mark.redis
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=requests, advance_time=st.booleans())
def test_llm_budget_on_redis(servers, ops, advance_time) -> None:
    backend = _redis(servers)
    limiter = Limiter(f"{BUDGET}/minute", backend=backend, prefix=uuid.uuid4().hex)
    _budget_run(limiter, ops, advance_time)


_clients: dict[int, RedisBackend] = {}


def _redis(servers) -> RedisBackend:
    server = servers.get("redis")
    if server.port not in _clients:
        _clients[server.port] = RedisBackend(server.url)
    return _clients[server.port]


@pytest.fixture(scope="module", autouse=True)
def _close_clients():
    yield
    for b in _clients.values():
        b.close()
    _clients.clear()


def test_without_refill_the_charge_is_exactly_the_actual_usage(backend, prefix) -> None:
    """Reservations made and settled by 8 threads at once: the budget ends short by
    exactly the sum of the actual costs of the allowed ones (no refill in a year)."""
    limiter = Limiter("100000/366d", backend=backend, prefix=prefix, metrics=None)
    totals = [0] * 8

    def worker(i: int) -> None:
        rnd = random.Random(i)
        for _ in range(40):
            r = limiter.reserve("llm", cost=rnd.randint(0, 3000), now=NOW)
            if r:
                used = rnd.randint(0, 4000)
                r.settle(used, now=NOW)
                totals[i] += used

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    interval = limiter.plan(None).rates[0].interval_us
    short_us = round(limiter.peek("llm", now=NOW).reset_after * 1_000_000)
    assert short_us == sum(totals) * interval


# -- a reservation made on Redis, settled while the breaker is open ------------------------


@pytest.mark.redis
def test_settled_during_an_outage_goes_to_the_local_twin(server_factory, prefix) -> None:
    server = server_factory("redis")
    failover = FailoverBackend(RedisBackend(server.url), failures=1, recovery_time=60)
    limiter = Limiter("10/minute", backend=failover, prefix=prefix, metrics=None)
    refund = limiter.reserve("k", cost=5, now=NOW)
    charge = limiter.reserve("k", cost=1, now=NOW)
    assert refund and charge and failover.fallback_calls == 0
    server.stop()
    after = refund.settle(1, now=NOW)  # no error: the local twin answers
    assert after is not None and after.remaining == 10  # nothing local to refund
    after = charge.settle(4, now=NOW)  # counted locally: 3 extra
    assert after is not None and after.remaining == 7
    assert failover.fallback_calls == 2
    failover.close()


@pytest.mark.redis
def test_settled_during_an_outage_with_policy_closed_raises_once(server_factory, prefix) -> None:
    from gatekeep import BackendUnavailable

    server = server_factory("redis")
    failover = FailoverBackend(
        RedisBackend(server.url), policy="closed", failures=1, recovery_time=60
    )
    limiter = Limiter("10/minute", backend=failover, prefix=prefix, metrics=None)
    r = limiter.reserve("k", cost=5, now=NOW)
    server.stop()
    with pytest.raises(BackendUnavailable):
        r.settle(1, now=NOW)
    with pytest.raises(ReservationSettled):  # never sent twice
        r.settle(1, now=NOW)
    failover.close()


def test_memory_fallback_settles_like_the_primary() -> None:
    failover = FailoverBackend(MemoryBackend(), failures=1)
    limiter = Limiter("10/minute", backend=failover, metrics=None)
    r = limiter.reserve("k", cost=5, now=NOW)
    assert r.settle(2, now=NOW).remaining == 8  # type: ignore[union-attr]

"""The concurrency scripts and their Python twins give identical replies on the same clock.

``lua/concurrency.lua`` against ``run_concurrency`` (acquire, renew, release, peek by a
few holders on one key), and ``lua/_leased.lua`` (rate limits of every algorithm and
leases in one call) against ``run_leased``, on Redis and Valkey. Times and TTLs are
whole seconds, as in test_twins.py, so the server's own expiry stays out of it.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeep import ALGORITHMS, MemoryBackend, Rate
from gatekeep.algorithms import HIT, PEEK
from gatekeep.algorithms.concurrency import (
    ACQUIRE,
    RELEASE,
    RENEW,
    run_concurrency,
    run_leased,
)
from gatekeep.limiter import BaseLimiter
from gatekeep.scripts import concurrency_script, leased_script

S = 1_000_000
BASE = 1_790_000_000 * S

lease_steps = st.lists(
    st.tuples(
        st.integers(0, 40) | st.sampled_from([0, 0, 1]),  # seconds to advance
        st.sampled_from([ACQUIRE, ACQUIRE, RENEW, RELEASE, PEEK]),
        st.integers(0, 4),  # which holder
    ),
    min_size=1,
    max_size=40,
)


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["redis", "valkey"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_concurrency_script_matches_twin(server_backend, kind, data):
    limit = data.draw(st.integers(1, 4), label="limit")
    ttl = data.draw(st.integers(1, 60), label="ttl") * S
    ops = data.draw(lease_steps, label="ops")
    redis_backend = server_backend(kind)
    memory = MemoryBackend()
    key = f"twin:{{{uuid.uuid4().hex}}}:cc"
    script = concurrency_script()
    now = BASE + data.draw(st.integers(0, 86_400), label="start") * S
    for i, (advance, mode, holder) in enumerate(ops):
        now += advance * S
        lid = f"h{holder}"
        was_held = (memory.store.get(key, now) or {}).get(lid, 0) > now  # held, not lapsed
        lua = redis_backend.eval(script, [key], (now, mode, 1, limit, ttl, lid))
        twin = memory.run_twin(
            lambda store, t, mode=mode, lid=lid: run_concurrency(
                store, key, t, mode, limit, ttl, lid
            ),
            now,
        )
        assert list(lua) == twin, f"step {i}: {mode} {lid}"
        # the key's TTL is set (so comparable) by a lease put, and a release of a lease held
        wrote = (mode in (ACQUIRE, RENEW) and twin[0] == 1) or (mode == RELEASE and was_held)
        _same_lease_set(redis_backend, memory, key, now, f"step {i}: {mode} {lid}", wrote)


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["redis", "valkey"])
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_leased_script_matches_twin(server_backend, kind, algorithm, data):
    spec = ALGORITHMS[algorithm]
    n_rates = data.draw(st.integers(0, 2), label="rates")
    rates = []
    for _ in range(n_rates):
        limit = data.draw(st.integers(1, 6))
        if spec.bucket:
            rates.append(Rate(limit, limit * data.draw(st.integers(1, 60)) * S))
        else:
            rates.append(Rate(limit, data.draw(st.integers(1, 300)) * S))
    rates = list(dict.fromkeys(rates))
    n_leases = data.draw(st.integers(1 if not rates else 0, 2), label="leases")
    leases = [
        (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 60)) * S) for _ in range(n_leases)
    ]
    ops = data.draw(
        st.lists(
            st.tuples(st.integers(0, 30), st.sampled_from([HIT, HIT, PEEK]), st.integers(0, 3)),
            min_size=1,
            max_size=25,
        ),
        label="ops",
    )
    redis_backend = server_backend(kind)
    memory = MemoryBackend()
    tagged = "{" + uuid.uuid4().hex + "}"
    if rates:
        planner = BaseLimiter(algorithm=algorithm, prefix="twin")
        plan = planner.plan(rates)
        keys, params, flat = [f"twin:{tagged}{s}" for s in plan.suffixes], plan.params, plan.flat
    else:
        keys, params, flat = [], (), ()
    sets = [f"twin:{tagged}:cc{j}" for j in range(n_leases)]
    lease_args = [x for pair in leases for x in pair]
    script = leased_script(algorithm)
    now = BASE + data.draw(st.integers(0, 86_400), label="start") * S
    for i, (advance, mode, cost) in enumerate(ops):
        now += advance * S
        lid = f"l{i}"
        args = (now, mode, cost, *flat, *lease_args, n_leases, lid)
        lua = redis_backend.eval(script, [*keys, *sets], args)
        twin = memory.run_twin(
            lambda store, t, mode=mode, cost=cost, lid=lid: run_leased(
                spec.algorithm, store, keys, t, mode, cost, params, sets, leases, lid
            ),
            now,
        )
        assert list(lua) == twin, f"step {i}: {mode} cost={cost}"
        taken = mode == HIT and all(twin[k] == 1 for k in range(0, len(twin), 4))
        for key in sets:
            _same_lease_set(redis_backend, memory, key, now, f"step {i}: {mode}", taken)


def _same_lease_set(redis_backend, memory, key: str, now: int, where: str, wrote: bool) -> None:
    """The same leases on both sides, and, where the step set it (``wrote``), the same key
    lifetime: the server counts a PTTL on its own clock, so it only matches right after the
    write (a few ms shorter than the twin's); earlier TTLs ran on the server's clock while
    the test's ``now`` jumped ahead."""
    stored = redis_backend.client.zrange(key, 0, -1, withscores=True)
    leases = memory.store.get(key, now) or {}
    assert {m.decode(): int(score) for m, score in stored} == leases, where
    pttl = redis_backend.client.pttl(key)
    twin_ttl = memory.store.ttl_us(key, now)
    if not wrote:
        return
    if twin_ttl is None:
        assert pttl == -2, where
    else:
        assert twin_ttl // 1000 - 200 <= pttl <= twin_ttl // 1000, where

"""Each Lua script and its Python twin give identical replies on the same clock.

Hypothesis drives both with the same random sequence of (time step, mode, cost)
over one to three limits. Times, periods and intervals are whole seconds, so
every key's TTL is a whole number of seconds too: the real server expires keys
on its own clock, and this keeps that clock out of the comparison.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeep import ALGORITHMS, MemoryBackend, Rate
from gatekeep.algorithms import CHARGE, HIT, PEEK, REFUND
from gatekeep.limiter import BaseLimiter

S = 1_000_000  # µs per second
BASE = 1_790_000_000 * S


@st.composite
def rates(draw: st.DrawFn, bucket: bool) -> list[Rate]:
    n = draw(st.integers(1, 3))
    out: list[Rate] = []
    for _ in range(n):
        limit = draw(st.integers(1, 12))
        if bucket:
            interval = draw(st.integers(1, 400))  # seconds per token
            burst = draw(st.integers(1, 15))
            rate = Rate(limit, limit * interval * S, burst)
        else:
            rate = Rate(limit, draw(st.integers(1, 3000)) * S)
        if rate not in out:
            out.append(rate)
    return out


steps = st.lists(
    st.tuples(
        st.integers(0, 900) | st.sampled_from([0, 0, 0, 1, 3600]),  # seconds to advance
        st.sampled_from([HIT, HIT, HIT, HIT, PEEK, REFUND, CHARGE]),
        st.integers(0, 16),
    ),
    min_size=1,
    max_size=40,
)


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["redis", "valkey"])
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_lua_script_matches_python_twin(server_backend, kind, algorithm, data):
    spec = ALGORITHMS[algorithm]
    limits = data.draw(rates(spec.bucket), label="limits")
    ops = data.draw(steps, label="ops")
    start = BASE + data.draw(st.integers(0, 86_400), label="start") * S

    redis_backend = server_backend(kind)
    memory = MemoryBackend()
    planner = BaseLimiter(algorithm=algorithm, prefix="twin")
    plan = planner.plan(limits)
    keys = planner.keys(uuid.uuid4().hex, plan)

    now = start
    for i, (advance, mode, cost) in enumerate(ops):
        now += advance * S
        lua = redis_backend.limit(plan, keys, now, mode, cost)
        twin = memory.limit(plan, keys, now, mode, cost)
        assert lua == twin, f"step {i}: {mode} cost={cost} at +{(now - start) // S}s"

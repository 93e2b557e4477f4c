"""Penalty blocks (``block=``): ``lua/_driver_blocks.lua`` against its twin, semantics,
and the block key's lifetime.

The property test drives the script and the twin with the same random calls over
one to three limits split into groups, some with a block (one to three lengths, a
window), as the middleware's rules make them; times are whole seconds, as in
test_twins.py.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeep import ALGORITHMS, Limiter, MemoryBackend, Rate
from gatekeep.algorithms import CHARGE, HIT, PEEK, REFUND
from gatekeep.blocks import Block, Group, decode, encode
from gatekeep.limiter import BaseLimiter

S = 1_000_000
BASE = 1_790_000_000 * S


@st.composite
def rates(draw: st.DrawFn, bucket: bool) -> list[Rate]:
    out: list[Rate] = []
    for _ in range(draw(st.integers(1, 3))):
        limit = draw(st.integers(1, 6))
        if bucket:
            rate = Rate(limit, limit * draw(st.integers(1, 200)) * S, draw(st.integers(1, 8)))
        else:
            rate = Rate(limit, draw(st.integers(1, 1200)) * S)
        if rate not in out:
            out.append(rate)
    return out


@st.composite
def groups(draw: st.DrawFn, n: int) -> list[Group]:
    """Contiguous runs of the n limits; each run has a block or not (at least one has)."""
    out: list[Group] = []
    first = 1
    while first <= n:
        last = draw(st.integers(first, n))
        if draw(st.booleans()) or (not out and last == n):
            lengths = draw(st.lists(st.integers(1, 900), min_size=1, max_size=3))
            window = draw(st.sampled_from([None, 0, 1, 600, 3600]))
            out.append(Block(lengths, window).group(first, last))
        first = last + 1
    return out


steps = st.lists(
    st.tuples(
        st.integers(0, 700) | st.sampled_from([0, 0, 0, 1, 3600]),
        st.sampled_from([HIT, HIT, HIT, HIT, PEEK, REFUND, CHARGE]),
        st.integers(0, 8),
    ),
    min_size=1,
    max_size=30,
)


def blocked_plan(algorithm: str, limits: list[Rate], parts: list[Group], key: str):
    """A plan of ``limits`` with the block groups ``parts``, and its keys."""
    planner = BaseLimiter(algorithm=algorithm, prefix="blk")
    plan = planner.plan(limits)
    tail = encode(parts)
    plan = dataclasses.replace(
        plan,
        algorithm=plan.algorithm.with_blocks,
        flat=plan.flat + tail,
        blocks=tail,
        key_cache={},
    )
    keys = planner.keys(key, plan) + [f"gk:blk:{{{key}}}:g{g}" for g in range(len(parts))]
    return plan, keys


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["redis", "valkey"])
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_block_driver_matches_python_twin(server_backend, kind, algorithm, data):
    spec = ALGORITHMS[algorithm]
    limits = data.draw(rates(spec.bucket), label="limits")
    parts = data.draw(groups(len(limits)), label="groups")
    ops = data.draw(steps, label="ops")
    plan, keys = blocked_plan(algorithm, limits, parts, uuid.uuid4().hex)
    assert decode(plan.blocks) == parts
    lua_backend, twin = server_backend(kind), MemoryBackend()
    now = BASE
    for i, (advance, mode, cost) in enumerate(ops):
        now += advance * S
        lua = lua_backend.limit(plan, keys, now, mode, cost)
        assert lua == twin.limit(plan, keys, now, mode, cost), f"step {i}: {mode} cost={cost}"


# -- semantics, in process -----------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["token_bucket", "gcra"])  # their own waits are < 60 s
def test_a_denial_blocks_then_escalates_and_the_count_ends(algorithm):
    limiter = Limiter("2/minute", algorithm=algorithm, block=[60, 600], backend=MemoryBackend())
    t = 1_790_000_000.0
    assert limiter.hit("k", now=t) and limiter.hit("k", now=t)
    d = limiter.hit("k", now=t)  # the breach: blocked for 60 s
    assert not d and d.retry_after == 60 and d.remaining == 0
    assert not limiter.peek("k", now=t + 59.5)  # blocked: even a peek is denied
    assert not limiter.hit("k", cost=0, now=t + 59.5)
    assert limiter.hit("k", now=t + 60).retry_after == 0  # over; the limit refilled
    limiter.hit("k", now=t + 60)
    d = limiter.hit("k", now=t + 60)  # a second breach within the window: 600 s
    assert not d and d.retry_after == 600
    assert not limiter.hit("k", now=t + 659)
    # 600 s (the window) after that block's end, the count is over: 60 s again
    for _ in range(2):
        assert limiter.hit("k", now=t + 660 + 600)
    assert limiter.hit("k", now=t + 660 + 600).retry_after == 60


def test_blocks_hold_while_they_last_and_reset_lifts_them():
    limiter = Limiter("1/second", block=30, backend=MemoryBackend())
    t = 1_790_000_000.0
    limiter.hit("k", now=t)
    assert limiter.hit("k", now=t).retry_after == 30
    assert limiter.hit("other", now=t)  # per key
    d = limiter.hit("k", now=t + 10)  # a blocked hit neither extends nor escalates
    assert d.retry_after == 20 and d.reset_after == 20
    limiter.refund("k", now=t + 10)
    assert not limiter.hit("k", now=t + 10)  # a refund leaves the block
    limiter.reset("k")
    assert limiter.hit("k", now=t + 10)


def test_a_block_covers_every_limit_of_the_call():
    limiter = Limiter("2/second; 5/minute", block=10, backend=MemoryBackend())
    t = 1_790_000_000.0
    limiter.hit("k", now=t)
    limiter.hit("k", now=t)
    d = limiter.hit("k", now=t)
    assert not d and d.retry_after == 10
    d = limiter.hit("k", now=t + 5)
    assert not d and [x.retry_after for x in d.details] == [5, 5]


def test_block_is_checked_at_construction():
    with pytest.raises(ValueError, match="between 1 ms and 366 days"):
        Limiter("1/second", block=0)
    with pytest.raises(TypeError, match="seconds"):
        Limiter("1/second", block="60")
    with pytest.raises(ValueError, match="at least one length"):
        Limiter("1/second", block=[])
    assert Block([60, 600]).window_us == 600 * S
    assert Block(60).window_us == 0


# -- the block key's lifetime (Redis, Valkey, the twin) ------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize("window", [None, 0, 90])
def test_the_block_key_lives_until_the_window_after_the_block(server_backend, window):
    """PX = block length + window: halving either fails."""
    block = Block([20, 40], window)
    expect_ms = (block.lengths_us[0] + block.window_us) // 1000
    for backend in (server_backend("redis"), server_backend("valkey"), MemoryBackend()):
        limiter = Limiter("1/minute", block=block, backend=backend, prefix=uuid.uuid4().hex)
        limiter.hit("k")
        block_key = limiter.keys("k", limiter.default_plan)[-1]
        before = time.monotonic()
        limiter.hit("k")
        if isinstance(backend, MemoryBackend):
            ttl = backend.store.ttl_us(block_key, time.time_ns() // 1000)
            assert ttl is not None and expect_ms * 1000 - 1_000_000 < ttl <= expect_ms * 1000
        else:
            ttl = backend.client.pttl(block_key)  # the hit and this read took at most:
            took = math.ceil((time.monotonic() - before) * 1000)
            assert expect_ms - took - 1 <= ttl <= expect_ms
            limiter.reset("k")
            assert backend.client.exists(block_key) == 0  # reset deletes it


@pytest.mark.parametrize("algorithm", ["token_bucket", "gcra"])
def test_a_settlement_charges_a_blocked_key_and_starts_no_block(algorithm):
    """A reservation settled above its estimate charges the difference even while the
    key is blocked (the usage happened), and a charge past the limit is no breach."""
    limiter = Limiter("10/minute", backend=MemoryBackend(), algorithm=algorithm, block=60)
    r = limiter.reserve("k", cost=5)
    assert r.settle(14).remaining == 0  # 4 beyond the limit: a debt, not a block
    assert limiter.peek("k").retry_after < 60
    for _ in range(2):
        limiter.hit("k")  # denied: the breach starts a 60 s block
    assert limiter.peek("k").retry_after >= 59
    r2 = limiter.reserve("k", cost=1)
    assert not r2  # blocked: nothing reserved

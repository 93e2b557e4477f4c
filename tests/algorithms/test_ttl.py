"""Every limiter key lives exactly as long as its state matters.

After a hit or a refund at ``now``, the state of one limit stops mattering at
``now + L``, where ``L`` is the ``reset_after`` a peek reports for it at ``now``
(0: it no longer matters). The twin proves that meaning on a copy of its store:
at ``now + L`` a peek sees exactly what it sees on a fresh key, at ``now + L - 1 µs``
it does not. The key must then live for ``L`` rounded up to whole milliseconds
(PX takes ms, and never 0):

- the twin (``MemoryStore``, on the explicit clock): exactly that, through ``run()``
  and through the fused in-process path, after every call that set the TTL (a key
  the call left alone: within the 1 ms its rounding then added);
- the Lua script on Redis and on Valkey: the PTTL read right after the script lies
  between that minus the wall-clock milliseconds the script and the PTTL read took,
  and that (the server counts TTLs down on its own clock).

A key that dies early forgets consumed capacity (over-admission); one that lives
longer holds memory past its purpose. Halving any TTL a script or a twin writes
fails these tests.
"""

from __future__ import annotations

import copy
import math
import time
import uuid

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gatekeep import ALGORITHMS, Limiter, MemoryBackend, Rate
from gatekeep.algorithms import HIT, PEEK, REFUND
from gatekeep.limiter import BaseLimiter

S = 1_000_000  # µs per second
BASE = 1_790_000_000 * S


def ms(us: int) -> int:
    """The lifetime PX gives for ``us`` µs: whole milliseconds, rounded up, never 0."""
    return max(1, -(-us // 1000))


@st.composite
def rates(draw: st.DrawFn, bucket: bool, unit: int) -> list[Rate]:
    """One to three limits; every period a multiple of ``unit`` µs."""
    out: list[Rate] = []
    for _ in range(draw(st.integers(1, 3))):
        limit = draw(st.integers(1, 12))
        if bucket:
            interval = draw(st.integers(1, 400)) * unit  # per token
            period, burst = limit * interval, draw(st.integers(1, 15))
        else:
            period, burst = draw(st.integers(1, 3000)) * unit, 0
        assume(period >= 1000)  # what Rate accepts
        rate = Rate(limit, period, burst) if burst else Rate(limit, period)
        if rate not in out:
            out.append(rate)
    return out


def steps(unit: int) -> st.SearchStrategy[list[tuple[int, str, int]]]:
    """(time to advance in ``unit`` µs, hit or refund, cost)."""
    return st.lists(
        st.tuples(
            st.integers(0, 900) | st.sampled_from([0, 0, 1, 3600]),
            st.sampled_from([HIT, HIT, HIT, REFUND]),
            st.integers(0, 3) | st.integers(0, 16),
        ),  # small: partial refunds
        min_size=1,
        max_size=30,
    )


def lifetimes(backend, plan, keys: list[str], now: int) -> list[int]:
    """``L`` of each limit: the reset_after of a peek at ``now``."""
    reply = backend.limit(plan, keys, now, PEEK, 1)
    return reply[2::4]


def quad(reply: list[int], i: int) -> list[int]:
    return reply[4 * i : 4 * i + 4]


def assert_state_stops_mattering_at(
    memory: MemoryBackend, plan, keys: list[str], now: int, spans: list[int]
) -> None:
    """On copies of the store: at ``now + L`` limit i's peek is a fresh key's, before not."""
    fresh_keys = [k + ":fresh" for k in keys]
    for i, span in enumerate(spans):
        for at, same in ((now + span, True), (now + span - 1, False)):
            if not same and span == 0:
                continue
            probe = MemoryBackend()
            probe.store = copy.deepcopy(memory.store)
            seen = quad(probe.limit(plan, keys, at, PEEK, 1), i)
            fresh = quad(probe.limit(plan, fresh_keys, at, PEEK, 1), i)
            assert (seen == fresh) is same, (
                f"limit {i}: at now + {at - now} µs the state {'still' if same else 'no longer'}"
                f" matters ({seen} vs a fresh key's {fresh})"
            )


def wrote(algorithm: str, mode: str, cost: int, reply: list[int]) -> bool:
    """Whether the call set every limit's TTL: a hit all limits allowed (a denied hit
    writes nothing), or a refund (but a refund of 0 leaves a sliding log as it was)."""
    if mode == REFUND:
        return cost > 0 or algorithm != "sliding_log"
    return mode == HIT and all(reply[0::4])


def check_twin(
    memory: MemoryBackend, plan, keys: list[str], now: int, written: bool, where: str
) -> None:
    spans = lifetimes(memory, plan, keys, now)
    for key, span in zip(keys, spans, strict=True):
        ttl = memory.store.ttl_us(key, now)
        what = f"{where}: {key} lives {ttl} µs, its state matters for {span} µs"
        if ttl is None:
            assert span == 0, what
        elif written:
            assert ttl == ms(span) * 1000, what
        else:  # set by an earlier call, rounded up to a whole ms then
            assert span <= ttl <= max(span + 999, 1000), what
    assert_state_stops_mattering_at(memory, plan, keys, now, spans)


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_twin_ttl_is_the_time_its_state_matters(algorithm, data):
    """Sub-second clocks and periods (µs granularity): the twin's clock is exact."""
    spec = ALGORITHMS[algorithm]
    unit = data.draw(st.sampled_from([7, 997, 1000, S]), label="unit µs")
    limits = data.draw(rates(spec.bucket, unit), label="limits")
    ops = data.draw(steps(unit), label="ops")
    now = BASE + data.draw(st.integers(0, 86_400 * S), label="start µs")

    memory = MemoryBackend()  # run(): the twin as the Lua driver calls it
    fused_backend = MemoryBackend()  # the limiter's path: fused when one limit
    limiter = Limiter(backend=fused_backend, algorithm=algorithm, prefix="ttl")
    plan = limiter.plan(limits)
    keys = limiter.keys(uuid.uuid4().hex, plan)
    for i, (advance, mode, cost) in enumerate(ops):
        now += advance * unit
        reply = memory.limit(plan, keys, now, mode, cost)
        if mode == HIT and plan.fast is not None:
            assert plan.fast(keys[0], now, cost).allowed == bool(reply[0])
        else:
            assert fused_backend.limit(plan, keys, now, mode, cost) == reply
        where = f"step {i} ({mode} cost={cost})"
        written = wrote(plan.algorithm.name, mode, cost, reply)
        check_twin(memory, plan, keys, now, written, where + ", run()")
        check_twin(fused_backend, plan, keys, now, written, where + ", limiter")


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["redis", "valkey"])
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_lua_ttl_is_the_time_its_state_matters(server_backend, kind, algorithm, data):
    """Whole seconds: a key's state then matters for 0 or >= 1 s, so no key expires on
    the server's clock between two steps while the script's clock says it still lives."""
    spec = ALGORITHMS[algorithm]
    limits = data.draw(rates(spec.bucket, S), label="limits")
    ops = data.draw(steps(S), label="ops")
    now = BASE + data.draw(st.integers(0, 86_400), label="start s") * S

    backend = server_backend(kind)
    planner = BaseLimiter(algorithm=algorithm, prefix="ttl")
    plan = planner.plan(limits)
    keys = planner.keys(uuid.uuid4().hex, plan)
    client = backend.client
    began = time.monotonic()
    last: dict[str, int] = {}  # each key's PTTL after the previous step
    for i, (advance, mode, cost) in enumerate(ops):
        now += advance * S
        t0 = time.monotonic()
        reply = backend.limit(plan, keys, now, mode, cost)
        pttls = [client.pttl(k) for k in keys]
        t1 = time.monotonic()
        slack = math.ceil((t1 - t0) * 1000) + 1  # ms the server's clock ran meanwhile
        since = math.ceil((t1 - began) * 1000) + 1  # ... since the first step
        spans = lifetimes(backend, plan, keys, now)
        written = wrote(algorithm, mode, cost, reply)
        for key, pttl, span in zip(keys, pttls, spans, strict=True):
            what = (
                f"step {i} ({mode} cost={cost}): {key} has PTTL {pttl} ms, its state "
                f"matters for {span} µs (slack {slack} ms)"
            )
            if pttl == -2:  # no such key
                assert span == 0, what
            elif written:
                assert ms(span) - slack <= pttl <= ms(span), what
            else:  # set by an earlier step: it only counts down (on the server's clock,
                # which `now` may have run ahead of)
                assert ms(span) - since <= pttl <= last[key], what
            last[key] = pttl


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["redis", "valkey"])
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_lua_ttl_on_the_server_clock(server_backend, kind, algorithm, data):
    """On the server's TIME (no ``now``), where the window algorithms keep a key's TTL
    (SET KEEPTTL) for a later hit in the same window: after every allowed hit, the
    key lives as long as the reply says its state matters (``reset_after``), within
    the millisecond of PX rounding and the time the script and the PTTL read took."""
    spec = ALGORITHMS[algorithm]
    limits = data.draw(rates(spec.bucket, S // 4), label="limits")
    costs = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=8), label="costs")
    pauses = data.draw(st.lists(st.sampled_from([0, 0, 0, 0.002, 0.05]), min_size=len(costs)))

    backend = server_backend(kind)
    planner = BaseLimiter(algorithm=algorithm, prefix="ttl")
    plan = planner.plan(limits)
    keys = planner.keys(uuid.uuid4().hex, plan)
    client = backend.client
    for i, (cost, pause) in enumerate(zip(costs, pauses, strict=False)):
        time.sleep(pause)
        t0 = time.monotonic()
        reply = backend.limit(plan, keys, None, HIT, cost)
        pttls = [client.pttl(k) for k in keys]
        slack = math.ceil((time.monotonic() - t0) * 1000) + 1
        if not all(reply[0::4]):
            continue  # a denied hit writes nothing
        for j, (key, pttl) in enumerate(zip(keys, pttls, strict=True)):
            span = reply[4 * j + 2]
            what = f"hit {i} (cost={cost}): {key} has PTTL {pttl} ms, reset_after {span} µs"
            if pttl == -2:  # none, or it expired before the read
                assert ms(span) <= slack + 1, what
            else:
                assert ms(span) - slack - 1 <= pttl <= ms(span) + 1, what

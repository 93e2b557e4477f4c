"""The in-process fast path (``<algorithm>.fused_hit``) decides and stores exactly
what the twin's ``check``/``commit``, driven by ``run``, do.

Hypothesis drives two limiters with the same random sequence of calls: one on a
``MemoryBackend`` (whose single-limit ``hit`` goes through the fused function), one on
a backend that offers no fused path (every call through ``run``, the model of the
Lua scripts). Their decisions and their live keys must be identical after every
step. Clocks: the ``now`` argument and the backend's own clock, both.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeep import ALGORITHMS, AsyncLimiter, Limiter, MemoryBackend, Rate
from gatekeep.algorithms import gcra, token_bucket
from gatekeep.backends.base import Plan
from gatekeep.metrics import Metrics

S = 1_000_000
BASE = 1_790_000_000 * S
FUSED = ["token_bucket", "gcra", "fixed_window", "sliding_window"]


class Reference(MemoryBackend):
    """The same store and lock, without the fused path: every hit goes through ``run``."""

    def fused_hit(self, plan: Plan, counters: object = None) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.us = BASE

    def __call__(self) -> int:
        return self.us


def live(backend: MemoryBackend, now: int) -> dict[str, Any]:
    return {k: v for k, (v, exp) in backend.store.data.items() if exp > now}


@st.composite
def one_rate(draw: st.DrawFn, bucket: bool) -> Rate:
    limit = draw(st.integers(1, 12))
    if bucket:
        # sub-second intervals too: TTLs are then rounded up to whole ms, as PEXPIRE does
        interval = draw(st.sampled_from([1000, 1001, 1333, 250_000, S, 7 * S, 400 * S]))
        return Rate(limit, limit * interval, draw(st.integers(1, 15)))
    return Rate(limit, draw(st.sampled_from([1000, 1001, S, 3 * S, 3000 * S])))


calls = st.lists(
    st.tuples(
        st.integers(0, 5 * S) | st.sampled_from([0, 0, 1, 999, 1000, 1001, 3600 * S]),
        st.sampled_from(["hit", "hit", "hit", "hit", "peek", "refund", "reset"]),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([0, 1, 1, 2]) | st.integers(0, 17),
        st.booleans(),  # pass now= (else: the backend's clock)
    ),
    min_size=1,
    max_size=60,
)


@pytest.mark.parametrize("algorithm", FUSED)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fused_hit_matches_check_and_commit(algorithm: str, data: st.DataObject) -> None:
    rate = data.draw(one_rate(ALGORITHMS[algorithm].bucket), label="rate")
    clock_a, clock_b = Clock(), Clock()
    fused_backend, ref_backend = MemoryBackend(clock=clock_a), Reference(clock=clock_b)
    fused_metrics, ref_metrics = Metrics(), Metrics()
    fused = Limiter(rate, backend=fused_backend, algorithm=algorithm, metrics=fused_metrics)
    ref = Limiter(rate, backend=ref_backend, algorithm=algorithm, metrics=ref_metrics)
    assert fused.default_plan is not None and fused.default_plan.fast is not None
    assert ref.default_plan is not None and ref.default_plan.fast is None
    for dt, op, key, cost, explicit in data.draw(calls, label="calls"):
        clock_a.us += dt
        clock_b.us = clock_a.us
        now = clock_a.us / S if explicit else None
        if op == "reset":
            fused.reset(key)
            ref.reset(key)
        else:
            got = getattr(fused, op)(key, cost=cost, now=now)
            want = getattr(ref, op)(key, cost=cost, now=now)
            assert got == want, (op, key, cost)
        at = round(now * S) if now is not None else clock_a.us
        assert live(fused_backend, at) == live(ref_backend, at)
    # the fused path counts its decisions itself: the same counts as the limiter's
    assert fused_metrics.rule("default").as_dict() == ref_metrics.rule("default").as_dict()


def test_fused_paths_are_used_only_where_they_apply() -> None:
    memory = MemoryBackend()
    assert Limiter("5/second", backend=memory).default_plan.fast is not None  # type: ignore[union-attr]
    assert Limiter("5/second", backend=memory, algorithm="gcra").default_plan.fast is not None  # type: ignore[union-attr]
    # several limits at once, and the algorithms without a fused path, go through run()
    assert Limiter("5/second; 100/hour", backend=memory).default_plan.fast is None  # type: ignore[union-attr]
    assert Limiter("5/second", backend=memory, algorithm="sliding_log").default_plan.fast is None  # type: ignore[union-attr]
    assert token_bucket.fused_hit is not gcra.fused_hit


def test_fused_hit_denies_a_cost_above_capacity_and_keeps_nothing() -> None:
    backend = MemoryBackend()
    limiter = Limiter("3/second", backend=backend, metrics=None)
    d = limiter.hit("k", cost=4, now=BASE / S)
    assert not d.allowed and d.retry_after == float("inf") and d.remaining == 3
    assert len(backend.store) == 0


def test_fused_hit_respects_max_keys_and_sweeps() -> None:
    backend = MemoryBackend(max_keys=50)
    limiter = Limiter("5/hour", backend=backend, metrics=None)
    for i in range(200):
        limiter.hit(f"client-{i}", now=BASE / S)
    assert len(backend.store) == 50 and backend.store.evictions == 150
    # two hours later every bucket is full again: new keys sweep the expired ones
    for i in range(40):
        limiter.hit(f"later-{i}", now=BASE / S + 7200)
    assert len(backend.store) < 50


def test_async_limiter_uses_the_fused_path_with_the_same_decisions() -> None:
    async def main() -> list[Any]:
        backend = MemoryBackend()
        alim = AsyncLimiter("2/minute", backend=backend, metrics=None)
        out = [await alim.hit("k", now=BASE / S) for _ in range(3)]
        return [*out, backend.store.data]

    *decisions, data = asyncio.run(main())
    ref = Limiter("2/minute", backend=Reference(), metrics=None)
    assert decisions == [ref.hit("k", now=BASE / S) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert len(data) == 1


def test_fused_hit_counts_metrics() -> None:
    metrics = Metrics(latency_sample=1)
    limiter = Limiter("10/minute", backend=MemoryBackend(), name="fused", metrics=metrics)
    for _ in range(11):
        limiter.hit("k", now=BASE / S)
    counters = metrics.rule("fused")
    # remaining 9..0 after the ten allowed: 1 and 0 are below 20 % of 10
    assert (counters.allowed, counters.denied, counters.near_limit) == (10, 1, 2)
    assert metrics.latency("memory").count == 11

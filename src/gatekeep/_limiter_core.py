"""``BaseLimiter``: the sans-I/O core of every limiter call, shared by the shells.

Everything that is not I/O lives here: parsing limits into cached plans, building
keys, starting a ``hit`` (the in-process fast path, the local cache of denied keys)
and turning a backend's reply into a counted, timed :class:`Decision`; the other
operations (``peek``, ``refund``, ``reset``, ``hit_many``, ``acquire``) written once
each as a flow. The sync and async shells, :class:`~gatekeep.limiter.Limiter` and
:class:`~gatekeep.limiter.AsyncLimiter`, only make the backend calls.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import replace
from time import perf_counter_ns
from typing import Any

from . import waiting
from ._steps import DELETE, Call, LimitFlow
from .algorithms import HIT, PEEK, REFUND, AlgorithmSpec, get_algorithm
from .backends.base import Backend, Plan, backend_kind
from .backends.memory import MemoryBackend
from .blocks import BlockSpec, as_block, with_block
from .decision import Decision
from .denials import DenialCache
from .keys import make_prefix, tag
from .metrics import METRICS, NEAR_LIMIT_FACTOR, Metrics, RuleCounters
from .rates import Rate, parse_rates

from_reply = Decision.from_reply

__all__ = ["BaseLimiter", "Limits"]

#: What may be passed as ``limits``: ``"10/second"``, ``"10/second; 1000/hour"``,
#: a :class:`Rate`, or a list of either.
Limits = str | Rate | Iterable[str | Rate]


_PLAN_CACHE_SIZE = 1024
_KEY_CACHE_SIZE = 4096


class BaseLimiter:
    """Configuration and the I/O-free half of every limiter call."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        backend: Backend | None = None,
        algorithm: str | AlgorithmSpec = "token_bucket",
        prefix: str = "",
        name: str = "default",
        metrics: Metrics | None = METRICS,
        block: BlockSpec = None,
        denial_cache: bool | int | None = None,
    ) -> None:
        self.algorithm = get_algorithm(algorithm)
        #: The penalty block after a denied hit (:mod:`gatekeep.blocks`), or None.
        self.block = as_block(block)
        self.backend: Backend = MemoryBackend() if backend is None else backend
        if not isinstance(self.backend, Backend):
            raise TypeError(
                f"backend must be a MemoryBackend, a RedisBackend or another "
                f"gatekeep Backend, not {type(backend).__name__}"
            )
        self.prefix = make_prefix(prefix)
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        #: The rule name decisions are counted under in :mod:`gatekeep.metrics`.
        self.name = name
        self.metrics = metrics
        #: ``next(self._ticks)`` is True once every ``latency_sample`` decisions (the
        #: one to time): a C call, not attribute sums. Never with metrics off.
        self._ticks: Iterator[bool] = itertools.repeat(False)
        self._counters: RuleCounters | None = None
        if metrics is not None:
            self._counters = metrics.rule(name)
            self._latency = metrics.latency(backend_kind(self.backend))
            self._ticks = itertools.cycle([False] * (metrics.latency_sample - 1) + [True])
            if isinstance(self.backend, MemoryBackend):
                metrics.watch(f"{name}:memory", self.backend.store.watch_source())
        #: The local cache of denied keys (:mod:`gatekeep.denials`), or None.
        self.denials = DenialCache.configure(
            denial_cache, isinstance(self.backend, MemoryBackend), metrics, name
        )
        #: The cache's entries (an empty dict without one): a hit looks only when not empty.
        self._denied = {} if self.denials is None else self.denials.entries
        self._plans: dict[Any, Plan] = {}
        self.default_plan = None if limits is None else self.plan(limits)

    # -- the decision path, shared by Limiter, AsyncLimiter and the middleware ----------

    def begin(self, plan: Plan, keys: list[str], now: int | None, cost: int) -> Decision | Call:
        """Start a ``hit`` of ``keys`` under ``plan`` (``now`` in µs or None): the
        :class:`Decision` itself on the in-process fast path (counted and timed there),
        else the backend :class:`Call` to make, then :meth:`end` with its reply."""
        t0 = perf_counter_ns() if next(self._ticks) else 0  # one in latency_sample
        fast = plan.fast
        if fast is None:
            return Call(plan, keys, now, HIT, cost, t0)
        decision = fast(keys[0], now, cost)  # counted by fast(), under its lock
        if t0:
            self._latency.observe_ns(perf_counter_ns() - t0)
        return decision

    def end(self, call: Call) -> None:
        """A backend call of :meth:`begin` answered: its latency, when it is timed."""
        if call.t0:
            self._latency.observe_ns(perf_counter_ns() - call.t0)

    def _decided(self, plan: Plan, reply: list[int], t0: int) -> Decision:
        """The limiter's own decision for a ``hit`` reply: timed (when ``t0``), counted."""
        if t0:
            self._latency.observe_ns(perf_counter_ns() - t0)
        decision = from_reply(plan.rates, reply)
        counters = self._counters
        if counters is not None:
            if decision[0]:
                counters.allowed += 1
                if decision[2] * NEAR_LIMIT_FACTOR < decision[1]:  # remaining < 20 % of limit
                    counters.near_limit += 1
            else:
                counters.denied += 1
        return decision

    def _hit(
        self, key: str, limits: Limits | None, cost: int, now: float | None
    ) -> Decision | Call:
        """:meth:`begin` for ``hit(key, limits, cost, now=now)``."""
        plan = self.default_plan
        if limits is not None or plan is None:
            plan = self.plan(limits)
        if type(cost) is not int or cost < 0:
            _cost(cost)
        try:
            keys = plan.key_cache[key]  # self.keys(), without its checks when cached
        except (KeyError, TypeError):
            keys = self.keys(key, plan)
        if self._denied and now is None:  # some key's denial is held here
            denied = self.denials.check(plan, keys, cost)  # type: ignore[union-attr]
            if denied is not None:
                if self._counters is not None:
                    self._counters.denied += 1
                return denied
        return self.begin(plan, keys, None if now is None else round(now * 1_000_000), cost)

    @property
    def counters(self) -> RuleCounters | None:
        """This limiter's metrics counters (None with ``metrics=None``)."""
        return self._counters

    def hit_flow(
        self, key: str, limits: Limits | None, cost: int, now: float | None
    ) -> LimitFlow[Decision]:
        """``hit`` as a flow, for the operations built on it (``acquire``, ``reserve``)."""
        c = self._hit(key, limits, cost, now)
        if type(c) is not Call:  # decided in process
            return c  # type: ignore[return-value]
        reply = yield c
        return self._decided(c.plan, reply, c.t0)

    def remember(self, call: Call, decision: Decision, sent: int) -> None:
        """Hold the backend's denial of ``call`` (a hit on the server's clock, sent at
        ``sent``, monotonic ns) in the local cache until it ends."""
        if self.denials is not None and not decision[0] and call.now is None:
            self.denials.remember(call.plan, call.keys, call.cost, decision, sent)

    # -- the other operations, each written once as a flow (run by the shells below) -----

    def _call(
        self, key: str, limits: Limits | None, cost: int, now: float | None, mode: str
    ) -> LimitFlow[Decision]:
        """``peek`` and ``refund``: one backend call, not counted as decisions."""
        plan = self.plan(limits)
        keys = self.keys(key, plan)
        if mode == REFUND and self.denials is not None:
            self.denials.forget(plan, keys)
        reply = yield Call(plan, keys, _us(now), mode, _cost(cost), 0)
        return Decision.from_reply(plan.rates, reply)

    def _peek(
        self, key: str, limits: Limits | None = None, cost: int = 1, *, now: float | None = None
    ) -> LimitFlow[Decision]:
        """Would ``hit`` allow ``cost`` now? Consumes nothing; ``remaining`` is what is left."""
        return self._call(key, limits, cost, now, PEEK)

    def _refund(
        self, key: str, limits: Limits | None = None, cost: int = 1, *, now: float | None = None
    ) -> LimitFlow[Decision]:
        """Give ``cost`` back to every limit, never beyond its capacity."""
        return self._call(key, limits, cost, now, REFUND)

    def _acquire(
        self,
        key: str,
        limits: Limits | None = None,
        cost: int = 1,
        *,
        timeout: float | None = None,
    ) -> LimitFlow[Decision]:
        """Wait until every limit allows ``cost``, then take it: the allowing decision.

        Sleeps a denial's ``retry_after`` exactly, then hits again (no polling). The
        denial is returned at once when it can never pass or its ``retry_after``
        exceeds what is left of ``timeout`` (seconds; None: none). See
        :mod:`gatekeep.waiting`."""
        return waiting.acquire_flow(self, key, limits, cost, timeout)

    def _reset(self, key: str, limits: Limits | None = None) -> LimitFlow[None]:
        """Forget ``key``'s state under ``limits``: it starts again with full capacity."""
        plan = self.plan(limits)
        keys = self.keys(key, plan)
        if self.denials is not None:
            self.denials.forget(plan, keys)
        yield Call(plan, keys, None, DELETE, 0, 0)

    def _hit_many(
        self,
        keys: Iterable[str],
        limits: Limits | None = None,
        cost: int = 1,
        *,
        now: float | None = None,
    ) -> LimitFlow[list[Decision]]:
        """One ``hit`` per key, pipelined: one round trip for all of them on Redis."""
        plan = self.plan(limits)
        t0 = perf_counter_ns() if next(self._ticks) else 0
        lists = [self.keys(k, plan) for k in keys]
        replies = yield Call(plan, lists, _us(now), HIT, _cost(cost), t0, many=True)
        # one latency sample for the batch
        return [self._decided(plan, r, t0 if i == 0 else 0) for i, r in enumerate(replies)]

    def plan(self, limits: Limits | None) -> Plan:
        """The cached plan for ``limits`` (the default limits when None)."""
        if limits is None:
            if self.default_plan is None:
                raise ValueError(
                    "no limits given: pass limits= to hit(), or give the "
                    "limiter default limits, e.g. Limiter('100/minute')"
                )
            return self.default_plan
        cache_key = tuple(limits) if isinstance(limits, list) else limits
        try:
            return self._plans[cache_key]
        except KeyError:
            pass
        except TypeError:  # unhashable: plan it without caching
            return self._make_plan(limits)
        plan = self._make_plan(limits)
        if len(self._plans) >= _PLAN_CACHE_SIZE:
            self._plans.clear()
        self._plans[cache_key] = plan
        return plan

    def _make_plan(self, limits: Limits) -> Plan:
        algo = self.algorithm
        rates = parse_rates(limits)
        params = tuple(algo.params(r) for r in rates)
        plan = Plan(
            algorithm=algo,
            rates=rates,
            suffixes=tuple(f":{algo.short}:{_rate_id(r)}" for r in rates),
            params=params,
            flat=tuple(x for p in params for x in p),
            twin=algo.algorithm,
        )
        if self.block is not None:
            plan = with_block(plan, self.block)
        fuse = getattr(self.backend, "fused_hit", None)
        fast = fuse(plan, self._counters) if fuse is not None else None  # it counts, too
        return plan if fast is None else replace(plan, fast=fast)

    def keys(self, key: str, plan: Plan) -> list[str]:
        """The Redis keys of ``key`` under ``plan``: one per rate, one hash tag."""
        if type(key) is not str or not key:
            raise ValueError(f"a limiter key must be a non-empty string, got {key!r}")
        cache = plan.key_cache
        keys = cache.get(key)
        if keys is None:
            base = self.prefix + tag(key)
            keys = [base + s for s in plan.suffixes]
            if plan.block_suffix:
                keys.append(base + plan.block_suffix)
            if len(cache) >= _KEY_CACHE_SIZE:
                cache.clear()
            cache[key] = keys
        return keys

    def __repr__(self) -> str:
        limits = "; ".join(map(str, self.default_plan.rates)) if self.default_plan else None
        return (
            f"{type(self).__name__}({limits!r}, algorithm={self.algorithm.name!r}, "
            f"backend={self.backend!r})"
        )


def _rate_id(rate: Rate) -> str:
    rid = f"{rate.limit}/{rate.period_us}"
    return f"{rid}b{rate.burst}" if rate.has_burst else rid


def _us(now: float | None) -> int | None:
    """Seconds (as ``time.time()`` gives them) to whole microseconds."""
    return None if now is None else round(now * 1_000_000)


def _cost(cost: int) -> int:
    if type(cost) is int and cost >= 0:
        return cost
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"cost must be an int, not {type(cost).__name__}")
    raise ValueError(f"cost must be >= 0, got {cost}")

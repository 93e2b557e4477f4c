"""``Limiter`` and ``AsyncLimiter``: one sans-I/O core, two thin shells.

All the work that is not I/O (parsing limits, building keys and script
arguments, turning replies into decisions) lives in :class:`BaseLimiter`; the
sync and async classes differ only in how they call the backend.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import replace
from time import monotonic_ns, perf_counter_ns
from typing import Any, Concatenate, ParamSpec, TypeVar

from . import waiting
from ._steps import DELETE, Call, LimitFlow, Wait
from .algorithms import HIT, PEEK, REFUND, AlgorithmSpec, get_algorithm
from .backends.base import Backend, Plan, backend_kind
from .backends.memory import MemoryBackend
from .blocks import BlockSpec, as_block, with_block
from .decision import Decision
from .denials import DenialCache
from .flows import arun_flow, run_flow
from .keys import make_prefix, tag
from .metrics import METRICS, NEAR_LIMIT_FACTOR, Metrics, RuleCounters
from .rates import Rate, parse_rates
from .reservations import AsyncReservation, Reservation, reserve_flow

from_reply = Decision.from_reply
T = TypeVar("T")

__all__ = ["AsyncLimiter", "BaseLimiter", "Call", "Limits", "Limiter"]

#: What may be passed as ``limits``: ``"10/second"``, ``"10/second; 1000/hour"``,
#: a :class:`Rate`, or a list of either.
Limits = str | Rate | Iterable[str | Rate]


F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")


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


def _sync(
    op: Callable[Concatenate[BaseLimiter, P], LimitFlow[T]],
) -> Callable[Concatenate[Limiter, P], T]:
    """The sync method of the operation ``op`` (a flow of :class:`BaseLimiter`): its
    backend calls made by ``self._io``."""

    def method(self: Limiter, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return run_flow(op(self, *args, **kwargs), self._io)

    return _named(method, op)


def _async(
    op: Callable[Concatenate[BaseLimiter, P], LimitFlow[T]],
) -> Callable[Concatenate[AsyncLimiter, P], Coroutine[Any, Any, T]]:
    """The async method of ``op``: its backend calls awaited, by ``self._aio``."""

    def method(self: AsyncLimiter, /, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T]:
        return arun_flow(op(self, *args, **kwargs), self._aio)

    return _named(method, op)


def _named(method: F, op: Callable[..., Any]) -> F:
    """``method`` as ``op``'s public twin: its name, docstring and parameters."""
    method.__name__ = method.__qualname__ = op.__name__.lstrip("_")
    method.__doc__ = op.__doc__
    sig = inspect.signature(op)
    method.__signature__ = sig.replace(return_annotation=inspect.Signature.empty)  # type: ignore[attr-defined]
    return method


class Limiter(BaseLimiter):
    """A rate limiter for synchronous code.

    >>> limiter = Limiter("10/second; 1000/hour")     # in-process; pass backend= for Redis
    >>> d = limiter.hit("user:42")
    >>> d.allowed, d.remaining
    (True, 9)

    ``now`` (seconds since the epoch) replaces the backend's clock, for tests and
    replays; by default Redis scripts read the server's ``TIME``. ``block=60`` (or
    ``[60, 600, 3600]``) blocks a key after a denied hit (:mod:`gatekeep.blocks`);
    ``denial_cache`` sizes or turns off the local cache of denied keys
    (:mod:`gatekeep.denials`, on by default but in process).
    """

    # ``hit`` is written out: the hot path, a decision per request. As a flow it would
    # step a generator per call (see the commit that made these shells).
    def hit(
        self, key: str, limits: Limits | None = None, cost: int = 1, *, now: float | None = None
    ) -> Decision:
        """Consume ``cost`` from every limit, or from none when one of them denies."""
        c = self._hit(key, limits, cost, now)
        if type(c) is not Call:  # decided in process
            return c  # type: ignore[return-value]
        sent = monotonic_ns()
        d = self._decided(c.plan, self.backend.limit(c.plan, c.keys, c.now, HIT, c.cost), c.t0)
        if not d[0]:
            self.remember(c, d, sent)
        return d

    peek = _sync(BaseLimiter._peek)
    refund = _sync(BaseLimiter._refund)
    reset = _sync(BaseLimiter._reset)
    hit_many = _sync(BaseLimiter._hit_many)
    acquire = _sync(BaseLimiter._acquire)

    def reserve(
        self,
        key: str,
        limits: Limits | None = None,
        cost: int = 1,
        *,
        ttl: float | None = None,
        now: float | None = None,
    ) -> Reservation:
        """Take ``cost`` (an estimate) as ``hit`` does; ``.settle(actual)`` it later, or
        ``.cancel()`` it. Unsettled, it stands at its estimate after ``ttl`` seconds
        (default: the longest period of the limits). See :mod:`gatekeep.reservations`."""
        held = run_flow(reserve_flow(self, key, limits, cost, ttl, now), self._io)
        return Reservation(held, self._drive)

    def _drive(self, flow: LimitFlow[T]) -> T:
        return run_flow(flow, self._io)

    def _io(self, c: Call | Wait) -> Any:
        if isinstance(c, Wait):
            return waiting.sleep(c.seconds)
        if c.mode == DELETE:
            return self.backend.delete(c.keys)
        if c.many:
            return self.backend.limit_many(c.plan, c.keys, c.now, c.mode, c.cost)
        return self.backend.limit(c.plan, c.keys, c.now, c.mode, c.cost)


class AsyncLimiter(BaseLimiter):
    """The asyncio twin of :class:`Limiter`, with the same methods to ``await``.

    >>> limiter = AsyncLimiter("100/minute", backend=RedisBackend(url))  # doctest: +SKIP
    >>> decision = await limiter.hit(client_ip)                           # doctest: +SKIP
    """

    async def hit(
        self, key: str, limits: Limits | None = None, cost: int = 1, *, now: float | None = None
    ) -> Decision:
        """Consume ``cost`` from every limit, or from none when one of them denies."""
        c = self._hit(key, limits, cost, now)
        if type(c) is not Call:  # decided in process: nothing to await
            return c  # type: ignore[return-value]
        sent = monotonic_ns()
        reply = await self.backend.alimit(c.plan, c.keys, c.now, HIT, c.cost)
        d = self._decided(c.plan, reply, c.t0)
        if not d[0]:
            self.remember(c, d, sent)
        return d

    peek = _async(BaseLimiter._peek)
    refund = _async(BaseLimiter._refund)
    reset = _async(BaseLimiter._reset)
    hit_many = _async(BaseLimiter._hit_many)
    acquire = _async(BaseLimiter._acquire)

    async def reserve(
        self,
        key: str,
        limits: Limits | None = None,
        cost: int = 1,
        *,
        ttl: float | None = None,
        now: float | None = None,
    ) -> AsyncReservation:
        """As :meth:`Limiter.reserve`; ``await r.settle(actual)``."""
        held = await arun_flow(reserve_flow(self, key, limits, cost, ttl, now), self._aio)
        return AsyncReservation(held, self._drive)

    def _drive(self, flow: LimitFlow[T]) -> Coroutine[Any, Any, T]:
        return arun_flow(flow, self._aio)

    def _aio(self, c: Call | Wait) -> Awaitable[Any]:
        if isinstance(c, Wait):
            return waiting.asleep(c.seconds)
        if c.mode == DELETE:
            return self.backend.adelete(c.keys)
        if c.many:
            return self.backend.alimit_many(c.plan, c.keys, c.now, c.mode, c.cost)
        return self.backend.alimit(c.plan, c.keys, c.now, c.mode, c.cost)

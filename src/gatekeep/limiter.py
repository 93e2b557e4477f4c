"""``Limiter`` and ``AsyncLimiter``: one sans-I/O core, two thin shells.

All the work that is not I/O (parsing limits, building keys and script
arguments, turning replies into decisions) lives in :class:`BaseLimiter`; the
sync and async classes differ only in how they call the backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .algorithms import HIT, PEEK, REFUND, AlgorithmSpec, get_algorithm
from .backends.base import Backend, Plan
from .backends.memory import MemoryBackend
from .decision import Decision
from .keys import make_prefix, tag
from .rates import Rate, parse_rates

from_reply = Decision.from_reply

__all__ = ["AsyncLimiter", "BaseLimiter", "Limits", "Limiter"]

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
    ) -> None:
        self.algorithm = get_algorithm(algorithm)
        self.backend: Backend = MemoryBackend() if backend is None else backend
        if not isinstance(self.backend, Backend):
            raise TypeError(f"backend must be a MemoryBackend, a RedisBackend or another "
                            f"gatekeep Backend, not {type(backend).__name__}")
        self.prefix = make_prefix(prefix)
        self._plans: dict[Any, Plan] = {}
        self.default_plan = None if limits is None else self.plan(limits)

    def plan(self, limits: Limits | None) -> Plan:
        """The cached plan for ``limits`` (the default limits when None)."""
        if limits is None:
            if self.default_plan is None:
                raise ValueError("no limits given: pass limits= to hit(), or give the "
                                 "limiter default limits, e.g. Limiter('100/minute')")
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
        return Plan(
            algorithm=algo,
            rates=rates,
            suffixes=tuple(f":{algo.short}:{_rate_id(r)}" for r in rates),
            params=params,
            flat=tuple(x for p in params for x in p),
            twin=algo.algorithm,
        )

    def keys(self, key: str, plan: Plan) -> list[str]:
        """The Redis keys of ``key`` under ``plan``: one per rate, one hash tag."""
        if type(key) is not str or not key:
            raise ValueError(f"a limiter key must be a non-empty string, got {key!r}")
        cache = plan.key_cache
        keys = cache.get(key)
        if keys is None:
            base = self.prefix + tag(key)
            keys = [base + s for s in plan.suffixes]
            if len(cache) >= _KEY_CACHE_SIZE:
                cache.clear()
            cache[key] = keys
        return keys

    def __repr__(self) -> str:
        limits = "; ".join(map(str, self.default_plan.rates)) if self.default_plan else None
        return (f"{type(self).__name__}({limits!r}, algorithm={self.algorithm.name!r}, "
                f"backend={self.backend!r})")


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


class Limiter(BaseLimiter):
    """A rate limiter for synchronous code.

    >>> limiter = Limiter("10/second; 1000/hour")     # in-process; pass backend= for Redis
    >>> d = limiter.hit("user:42")
    >>> d.allowed, d.remaining
    (True, 9)

    ``now`` (seconds since the epoch) replaces the backend's clock, for tests and
    replays; by default Redis scripts read the server's ``TIME``.
    """

    def hit(self, key: str, limits: Limits | None = None, cost: int = 1, *,
            now: float | None = None) -> Decision:
        """Consume ``cost`` from every limit, or from none when one of them denies."""
        plan = self.default_plan if limits is None and self.default_plan else self.plan(limits)
        if type(cost) is not int or cost < 0:
            _cost(cost)
        reply = self.backend.limit(plan, self.keys(key, plan),
                                   None if now is None else round(now * 1_000_000), HIT, cost)
        return from_reply(plan.rates, reply)

    def peek(self, key: str, limits: Limits | None = None, cost: int = 1, *,
             now: float | None = None) -> Decision:
        """Would ``hit`` allow ``cost`` now? Consumes nothing; ``remaining`` is what is left."""
        plan = self.plan(limits)
        reply = self.backend.limit(plan, self.keys(key, plan), _us(now), PEEK, _cost(cost))
        return Decision.from_reply(plan.rates, reply)

    def refund(self, key: str, limits: Limits | None = None, cost: int = 1, *,
               now: float | None = None) -> Decision:
        """Give ``cost`` back to every limit, never beyond its capacity."""
        plan = self.plan(limits)
        reply = self.backend.limit(plan, self.keys(key, plan), _us(now), REFUND, _cost(cost))
        return Decision.from_reply(plan.rates, reply)

    def reset(self, key: str, limits: Limits | None = None) -> None:
        """Forget ``key``'s state under ``limits``: it starts again with full capacity."""
        plan = self.plan(limits)
        self.backend.delete(self.keys(key, plan))

    def hit_many(self, keys: Iterable[str], limits: Limits | None = None, cost: int = 1, *,
                 now: float | None = None) -> list[Decision]:
        """One ``hit`` per key, pipelined: one round trip for all of them on Redis."""
        plan = self.plan(limits)
        replies = self.backend.limit_many(plan, [self.keys(k, plan) for k in keys], _us(now),
                                          HIT, _cost(cost))
        return [Decision.from_reply(plan.rates, r) for r in replies]


class AsyncLimiter(BaseLimiter):
    """The asyncio twin of :class:`Limiter`, with the same methods to ``await``.

    >>> limiter = AsyncLimiter("100/minute", backend=RedisBackend(url))  # doctest: +SKIP
    >>> decision = await limiter.hit(client_ip)                           # doctest: +SKIP
    """

    async def hit(self, key: str, limits: Limits | None = None, cost: int = 1, *,
                  now: float | None = None) -> Decision:
        plan = self.plan(limits)
        reply = await self.backend.alimit(plan, self.keys(key, plan), _us(now), HIT,
                                          _cost(cost))
        return Decision.from_reply(plan.rates, reply)

    async def peek(self, key: str, limits: Limits | None = None, cost: int = 1, *,
                   now: float | None = None) -> Decision:
        plan = self.plan(limits)
        reply = await self.backend.alimit(plan, self.keys(key, plan), _us(now), PEEK,
                                          _cost(cost))
        return Decision.from_reply(plan.rates, reply)

    async def refund(self, key: str, limits: Limits | None = None, cost: int = 1, *,
                     now: float | None = None) -> Decision:
        plan = self.plan(limits)
        reply = await self.backend.alimit(plan, self.keys(key, plan), _us(now), REFUND,
                                          _cost(cost))
        return Decision.from_reply(plan.rates, reply)

    async def reset(self, key: str, limits: Limits | None = None) -> None:
        plan = self.plan(limits)
        await self.backend.adelete(self.keys(key, plan))

    async def hit_many(self, keys: Iterable[str], limits: Limits | None = None, cost: int = 1,
                       *, now: float | None = None) -> list[Decision]:
        plan = self.plan(limits)
        replies = await self.backend.alimit_many(plan, [self.keys(k, plan) for k in keys],
                                                 _us(now), HIT, _cost(cost))
        return [Decision.from_reply(plan.rates, r) for r in replies]

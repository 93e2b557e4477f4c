"""``FailoverBackend``: Redis behind a circuit breaker, with a policy for outages.

>>> from gatekeep.backends.connect import connect
>>> backend = FailoverBackend(connect("redis+sentinel://s1:26379,s2:26379/mymaster"),
...                           policy="local", instances=4)          # doctest: +SKIP
>>> limiter = Limiter("100/minute", backend=backend)                # doctest: +SKIP

Each call goes to the primary backend (a :class:`RedisBackend`) unless the
:class:`~gatekeep.breaker.CircuitBreaker` is open. A call that fails (any Redis
error, a timeout) or answers after the deadline is reported to the breaker; it
opens after ``failures`` failures in a row, or at once on a timeout or a
"not now" answer (out of memory, read-only replica, loading, no primary known). While it is
open, and for every call that failed, the decision comes from the ``policy``:

- ``"local"`` (default): the in-process twin (:class:`MemoryBackend`) decides,
  each instance enforcing its share of every limit: limit and burst divided by
  ``instances`` (rounded down, at least 1). With ``instances`` set to the number
  of processes that share the limit, the processes together admit at most about
  what the limit allows (see :func:`local_share` and the README's "Availability" section).
- ``"open"``: every request is allowed.
- ``"closed"``: :class:`~gatekeep.errors.BackendUnavailable` is raised (a 503
  from the middleware).

Every ``recovery_time`` seconds one call probes Redis; when it answers, the
breaker closes and decisions come from Redis again. The application never sees
a Redis exception, except :class:`BackendUnavailable` under ``"closed"``. What the
breaker shows in metrics snapshots is read by :mod:`._failover_metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from ..breaker import CircuitBreaker
from ..errors import BackendUnavailable
from ..metrics import METRICS, Metrics
from ..outage import STORE_ERRORS
from ..shards import ShardBreakers
from ._failover_metrics import breaker_reader
from .base import Backend, Plan
from .connect import DEFAULT_TIMEOUT
from .memory import MemoryBackend
from .policies import POLICIES, LocalShares, Policy, allow_all, local_share
from .redis import RedisBackend

__all__ = ["POLICIES", "FailoverBackend", "Policy", "local_share"]

T = TypeVar("T")


class FailoverBackend:
    """The limiter backend protocol over ``primary``, degrading by ``policy``.

    ``deadline`` (seconds) defaults to the primary's socket timeout (0.25 s for
    clients gatekeep builds). ``failures`` and ``recovery_time`` configure the
    breaker, or pass your own ``breaker=``. ``fallback`` is the in-process twin
    used by the ``"local"`` policy (a fresh :class:`MemoryBackend` by default).
    """

    def __init__(
        self,
        primary: Backend,
        fallback: MemoryBackend | None = None,
        *,
        policy: Policy = "local",
        instances: int = 1,
        deadline: float | None = None,
        failures: int = 3,
        recovery_time: float = 0.5,
        breaker: CircuitBreaker | None = None,
        name: str = "redis",
        metrics: Metrics | None = METRICS,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(
                f"policy must be one of {', '.join(map(repr, POLICIES))}, got {policy!r}"
            )
        if not isinstance(instances, int) or isinstance(instances, bool) or instances < 1:
            raise ValueError(
                f"instances must be an int >= 1 (how many processes share "
                f"the limits), got {instances!r}"
            )
        if not isinstance(primary, Backend):
            raise TypeError(f"primary must be a gatekeep backend, not {type(primary).__name__}")
        self.primary = primary
        self.fallback = fallback if fallback is not None else MemoryBackend()
        self.policy: Policy = policy
        self.instances = instances
        if breaker is None:
            if deadline is None:
                deadline = getattr(primary, "timeout", None) or DEFAULT_TIMEOUT
            breaker = CircuitBreaker(
                failures=failures, recovery_time=recovery_time, deadline=deadline, name=name
            )
        #: The breaker of a deployment with one shard, and the settings of every shard's.
        self.breaker = breaker
        #: One breaker per shard on a cluster (:mod:`gatekeep.shards`); else only ``breaker``.
        locate = getattr(primary, "shard", None) if getattr(primary, "is_cluster", False) else None
        self.breakers = ShardBreakers(breaker, locate)
        #: Decisions (or deletes) not answered by the primary.
        self.fallback_calls = 0
        #: The same, per breaker name (per shard on a cluster).
        self.fallback_by_breaker: dict[str, int] = {}
        #: The last error the primary raised, for diagnostics.
        self.last_error: BaseException | None = None
        self._shares = LocalShares(instances)
        #: Whether the sync [0] and async [1] clients have answered once (see _enter).
        self._warm = [False, False]
        self.name = name
        self.metrics = metrics
        if metrics is not None:
            metrics.watch(name, breaker_reader(self))

    #: The label of this backend's latency histogram in :mod:`gatekeep.metrics`.
    metrics_name = "failover"

    # -- the guarded call, sync and async: the only place that talks to the primary ----

    def run(
        self,
        call: Callable[[], T],
        fallback: Callable[[BaseException | None], T],
        breaker: CircuitBreaker | None = None,
    ) -> T:
        """``call()`` under ``breaker`` (the shard's: see :meth:`breaker_for`; the
        default one when None); ``fallback(error)`` when it fails or is skipped.

        ``error`` is None when the breaker was open and ``call`` was not made.
        Session stores and other callers reuse this with their own fallback.
        """
        breaker = breaker or self.breaker
        ticket, started = self._enter(breaker, aio=False)
        if ticket is None:
            return self._fall(breaker, fallback, None)
        try:
            result = call()
        except BaseException as exc:
            return self._failed(breaker, ticket, exc, fallback)
        self._answered(breaker, ticket, started)
        self._warm[False] = True
        return result

    async def arun(
        self,
        call: Callable[[], Awaitable[T]],
        fallback: Callable[[BaseException | None], T],
        breaker: CircuitBreaker | None = None,
    ) -> T:
        """The same, ``call()`` awaited (``fallback`` stays synchronous)."""
        breaker = breaker or self.breaker
        ticket, started = self._enter(breaker, aio=True)
        if ticket is None:
            return self._fall(breaker, fallback, None)
        try:
            result = await call()
        except BaseException as exc:
            return self._failed(breaker, ticket, exc, fallback)
        self._answered(breaker, ticket, started)
        self._warm[True] = True
        return result

    def breaker_for(self, keys: Sequence[str], aio: bool = False) -> CircuitBreaker:
        """The breaker of the shard of ``keys`` (of the first key: a call whose keys span
        shards is one call, decided by the fallback when any part of it fails)."""
        breakers = self.breakers
        if not breakers.sharded or not keys:
            return self.breaker
        return breakers.for_key(keys[0], aio)

    # The guarded call's three steps, without I/O (run and arun only make the call).
    # Not a generator flow: driving one cost ~3 µs per decision (benchmarks/RESULTS.md).

    def _enter(self, breaker: CircuitBreaker, aio: bool) -> tuple[int | None, float]:
        """A breaker ticket (None: do not call), and the clock when the call starts
        (0.0 when the call is not timed here)."""
        ticket = breaker.allow()
        if ticket is None:
            return None, 0.0
        # A client's first call sets it up (a cluster client asks for the slot map and
        # connects): not a reply that came late. A server that does not answer still
        # fails it by the client's own timeouts.
        if not self._warm[aio]:
            return ticket, 0.0
        # Where the async round trip enforces the deadline itself, a late answer already
        # failed as a timeout: a clock here would count a stalled event loop too.
        if (
            aio
            and isinstance(self.primary, RedisBackend)
            and self.primary.times_out_async(breaker.deadline)
        ):
            return ticket, 0.0
        return ticket, time.perf_counter()

    @staticmethod
    def _answered(breaker: CircuitBreaker, ticket: int, started: float) -> None:
        breaker.success(ticket, time.perf_counter() - started if started else 0.0)

    def _failed(
        self,
        breaker: CircuitBreaker,
        ticket: int,
        exc: BaseException,
        fallback: Callable[[BaseException | None], T],
    ) -> T:
        if not isinstance(exc, STORE_ERRORS):  # cancelled, or a bug: not Redis being away
            breaker.release(ticket)  # the probe, if it was one, is given back
            raise exc
        self.last_error = exc
        if self.metrics is not None:
            self.metrics.backend_error(self.name, exc)
        # a reply error from a live server is decided by the fallback too, but the
        # breaker does not count it (gatekeep.outage)
        breaker.failed(ticket, exc)
        return self._fall(breaker, fallback, exc)

    def _fall(
        self,
        breaker: CircuitBreaker,
        fallback: Callable[[BaseException | None], T],
        exc: BaseException | None,
    ) -> T:
        self.fallback_calls += 1
        if breaker is not self.breaker:
            by = self.fallback_by_breaker
            by[breaker.name] = by.get(breaker.name, 0) + 1
        return fallback(exc)

    # -- the limiter backend protocol -------------------------------------------------

    def limit(
        self, plan: Plan, keys: list[str], now: int | None, mode: str, cost: int
    ) -> list[int]:
        return self.run(
            lambda: self.primary.limit(plan, keys, now, mode, cost),
            lambda exc: self._decide(exc, plan, keys, now, mode, cost),
            self.breaker_for(keys),
        )

    def alimit(
        self, plan: Plan, keys: list[str], now: int | None, mode: str, cost: int
    ) -> Coroutine[Any, Any, list[int]]:
        return self.arun(
            lambda: self.primary.alimit(plan, keys, now, mode, cost),
            lambda exc: self._decide(exc, plan, keys, now, mode, cost),
            self.breaker_for(keys, aio=True),
        )

    def limit_many(
        self, plan: Plan, keys: Sequence[list[str]], now: int | None, mode: str, cost: int
    ) -> list[list[int]]:
        groups = self._by_shard(keys, aio=False)
        if groups is None:
            return self.run(
                lambda: self.primary.limit_many(plan, keys, now, mode, cost),
                lambda exc: self._decide_many(exc, plan, keys, now, mode, cost),
            )
        out: list[list[int]] = [[] for _ in keys]
        for breaker, at in groups:  # one call per shard, each under its shard's breaker
            sub = [keys[i] for i in at]
            replies = self.run(
                lambda sub=sub: self.primary.limit_many(plan, sub, now, mode, cost),  # type: ignore[misc]
                lambda exc, sub=sub: self._decide_many(exc, plan, sub, now, mode, cost),  # type: ignore[misc]
                breaker,
            )
            for i, reply in zip(at, replies, strict=True):
                out[i] = reply
        return out

    async def alimit_many(
        self, plan: Plan, keys: Sequence[list[str]], now: int | None, mode: str, cost: int
    ) -> list[list[int]]:
        groups = self._by_shard(keys, aio=True)
        if groups is None:
            return await self.arun(
                lambda: self.primary.alimit_many(plan, keys, now, mode, cost),
                lambda exc: self._decide_many(exc, plan, keys, now, mode, cost),
            )
        out: list[list[int]] = [[] for _ in keys]
        for breaker, at in groups:
            sub = [keys[i] for i in at]
            replies = await self.arun(
                lambda sub=sub: self.primary.alimit_many(plan, sub, now, mode, cost),  # type: ignore[misc]
                lambda exc, sub=sub: self._decide_many(exc, plan, sub, now, mode, cost),  # type: ignore[misc]
                breaker,
            )
            for i, reply in zip(at, replies, strict=True):
                out[i] = reply
        return out

    def _by_shard(
        self, keys: Sequence[list[str]], aio: bool
    ) -> list[tuple[CircuitBreaker, list[int]]] | None:
        """The calls of a batch grouped by their shard's breaker; None when they all
        share one (always, but on a cluster)."""
        if not self.breakers.sharded:
            return None
        groups: dict[int, tuple[CircuitBreaker, list[int]]] = {}
        for i, k in enumerate(keys):
            breaker = self.breaker_for(k, aio)
            groups.setdefault(id(breaker), (breaker, []))[1].append(i)
        if len(groups) == 1:
            ((breaker, _),) = groups.values()
            return [(breaker, list(range(len(keys))))]
        return list(groups.values())

    def delete(self, keys: list[str]) -> None:
        # The local state is reset too: it is what decides during the next outage.
        self.fallback.delete(keys)
        self.run(lambda: self.primary.delete(keys), self._deleted, self.breaker_for(keys))

    async def adelete(self, keys: list[str]) -> None:
        self.fallback.delete(keys)
        await self.arun(
            lambda: self.primary.adelete(keys), self._deleted, self.breaker_for(keys, aio=True)
        )

    # -- policies (no I/O) ----------------------------------------------------------------

    def _decide(
        self,
        exc: BaseException | None,
        plan: Plan,
        keys: list[str],
        now: int | None,
        mode: str,
        cost: int,
    ) -> list[int]:
        if self.policy == "local":
            return self.fallback.limit(self.share(plan), keys, now, mode, cost)
        if self.policy == "open":
            return allow_all(plan, mode, cost)
        raise self._unavailable(exc)

    def _decide_many(
        self,
        exc: BaseException | None,
        plan: Plan,
        keys: Sequence[list[str]],
        now: int | None,
        mode: str,
        cost: int,
    ) -> list[list[int]]:
        return [self._decide(exc, plan, k, now, mode, cost) for k in keys]

    def _deleted(self, exc: BaseException | None) -> None:
        if self.policy == "closed":
            raise self._unavailable(exc)

    def _unavailable(self, exc: BaseException | None) -> BackendUnavailable:
        why = f"{type(exc).__name__}: {exc}" if exc is not None else "the circuit breaker is open"
        err = BackendUnavailable(
            f"Redis is unavailable ({why}) and policy='closed'",
            retry_after=max(1.0, *(b.retry_after() for _, b in self.breakers.items())),
        )
        err.__cause__ = exc
        return err

    def share(self, plan: Plan) -> Plan:
        """``plan`` with every rate cut to this instance's share (cached)."""
        return plan if self.instances == 1 else self._shares.of(plan)

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        close = getattr(self.primary, "close", None)
        if close is not None:
            close()

    async def aclose(self) -> None:
        aclose = getattr(self.primary, "aclose", None)
        if aclose is not None:
            await aclose()

    def __repr__(self) -> str:
        return (
            f"FailoverBackend({self.primary!r}, policy={self.policy!r}, "
            f"instances={self.instances}, breaker={self.breaker.state.value})"
        )

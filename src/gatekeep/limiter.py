"""``Limiter`` and ``AsyncLimiter``: one sans-I/O core, two thin shells.

All the work that is not I/O (parsing limits, building keys and script
arguments, turning replies into decisions) lives in :class:`BaseLimiter`
(:mod:`gatekeep._limiter_core`, re-exported here); the sync and async classes
here differ only in how they call the backend.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from time import monotonic_ns
from typing import Any, Concatenate, ParamSpec, TypeVar

from . import waiting
from ._limiter_core import BaseLimiter, Limits
from ._steps import DELETE, Call, LimitFlow, Wait
from .algorithms import HIT
from .decision import Decision
from .flows import arun_flow, run_flow
from .reservations import AsyncReservation, Reservation, reserve_flow

T = TypeVar("T")

__all__ = ["AsyncLimiter", "BaseLimiter", "Call", "Limits", "Limiter"]

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")


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

"""Reserve then settle: take an estimate now, charge the actual cost later.

``limiter.reserve(key, cost=estimate)`` is a ``hit`` of the estimate (all or
nothing over every limit, like any hit) that returns a :class:`Reservation`.
When the work is done, ``r.settle(actual)`` makes one script call: a ``refund``
of ``estimate - actual``, or a ``charge`` of ``actual - estimate``. A charge is
made even when it goes beyond what the limits have left: the state records the
debt (the token bucket's level goes below zero, GCRA's TAT runs past the
tolerance, a window's count past its limit), ``remaining`` reads 0 and later
requests wait until the debt is paid off. So the limits count exactly the
actual usage, never less and never more (token bucket and GCRA: with no other
traffic between, a refund leaves the state that charging the actual cost at
``reserve`` would have left, refill included; a window
algorithm applies a settlement made after its reservation's window ended to the
current window, as its ``refund`` does).

- A denied reservation took nothing: ``settle`` and ``cancel`` do nothing and
  return None.
- ``cancel()`` is ``settle(0)``: the whole estimate goes back.
- A reservation is settled once: a second ``settle``/``cancel`` raises
  :class:`ReservationSettled` (a double refund would give back capacity that was
  used).
- A reservation left unsettled settles at its estimate when it expires (``ttl``,
  by default the longest period of its limits): the estimate was charged by
  ``reserve``, so nothing is left to do, on the server or here. A ``settle``
  after that does nothing and returns None: after a period the limits have
  forgotten the charge, and a refund would credit capacity that was never taken.
- Behind a ``FailoverBackend``, a settlement is one more limiter call: while the
  breaker is open it goes to the in-process twin (its share of the limits), as
  any hit would. A refund there of a charge that was made on Redis gives back
  nothing the local state did not take (a bucket never exceeds its capacity); an
  extra charge is counted locally. Nothing raises unless the policy is
  ``"closed"`` (then :class:`~gatekeep.errors.BackendUnavailable`, and the
  reservation counts as settled: it is never sent twice).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ._steps import Call, LimitFlow
from .algorithms import CHARGE, REFUND
from .backends.base import Plan
from .decision import Decision
from .errors import GatekeepError
from .metrics import RuleCounters

if TYPE_CHECKING:
    from .limiter import BaseLimiter, Limits

__all__ = [
    "AsyncReservation",
    "BaseReservation",
    "Held",
    "Reservation",
    "ReservationSettled",
    "reserve_flow",
]


class ReservationSettled(GatekeepError, RuntimeError):
    """``settle`` or ``cancel`` on a reservation that was already settled."""


class Held(NamedTuple):
    """What a reservation holds: the decision of its hit, and where it was charged."""

    decision: Decision
    plan: Plan
    keys: list[str]
    cost: int
    #: The reservation's lifetime; None: the longest period of its limits.
    ttl_us: int | None
    #: The ``now`` (µs) the reservation was made at, when the caller gave one.
    now_us: int | None
    counters: RuleCounters | None


def reserve_flow(
    limiter: BaseLimiter,
    key: str,
    limits: Limits | None,
    cost: int,
    ttl: float | None,
    now: float | None,
) -> LimitFlow[Held]:
    """The flow of ``limiter.reserve(...)``: one hit of the estimate."""
    plan = limiter.plan(limits)
    keys = limiter.keys(key, plan)
    ttl_us = None  # the default, worked out only if a settlement asks (see expired)
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
            raise ValueError(f"ttl must be a number of seconds > 0, got {ttl!r}")
        ttl_us = round(ttl * 1_000_000)
    decision = yield from limiter.hit_flow(key, limits, cost, now)
    now_us = None if now is None else round(now * 1_000_000)
    return Held(decision, plan, keys, cost, ttl_us, now_us, limiter.counters)


class BaseReservation:
    """A cost taken in advance, to be settled at the actual cost (see module docs)."""

    __slots__ = ("_open", "_t0", "cost", "decision", "held")

    def __init__(self, held: Held) -> None:
        self.held = held
        #: The decision of the reservation's hit; falsy when it was denied.
        self.decision = held.decision
        #: The estimate that was charged.
        self.cost = held.cost
        # pop() once: one settlement, even from two threads (an atomic list op)
        self._open = [True] if held.decision.allowed else []
        self._t0 = time.monotonic()

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    def __bool__(self) -> bool:
        return self.decision.allowed

    @property
    def settled(self) -> bool:
        """Settled or cancelled (a denied reservation holds nothing: it is settled)."""
        return not self._open

    def expired(self, now: float | None = None) -> bool:
        """Whether the reservation has settled at its estimate (its ``ttl`` is over).

        ``now``: seconds since the epoch, judged against the ``now`` of ``reserve``
        (tests, replays); else the time since ``reserve`` on this process's clock."""
        held = self.held
        ttl_us = held.ttl_us
        if ttl_us is None:
            ttl_us = max(rate.period_us for rate in held.plan.rates)
        if now is not None and held.now_us is not None:
            return round(now * 1_000_000) - held.now_us >= ttl_us
        return (time.monotonic() - self._t0) * 1_000_000 >= ttl_us

    def _settle_flow(self, actual: int, now: float | None) -> LimitFlow[Decision | None]:
        if isinstance(actual, bool) or not isinstance(actual, int) or actual < 0:
            raise ValueError(f"actual must be an int >= 0, got {actual!r}")
        held = self.held
        if not held.decision.allowed:
            return None
        try:
            self._open.pop()
        except IndexError:
            raise ReservationSettled(
                "this reservation was already settled or cancelled; settle it once"
            ) from None
        if self.expired(now):
            return None
        if held.counters is not None:
            held.counters.settled += 1
        diff = actual - held.cost
        if diff == 0:
            return None
        mode, cost = (CHARGE, diff) if diff > 0 else (REFUND, -diff)
        now_us = None if now is None else round(now * 1_000_000)
        reply = yield Call(held.plan, held.keys, now_us, mode, cost, 0)
        return Decision.from_reply(held.plan.rates, reply)

    def __repr__(self) -> str:
        state = "denied" if not self.allowed else "settled" if self.settled else "open"
        return f"{type(self).__name__}(cost={self.cost}, {state})"


class Reservation(BaseReservation):
    """A reservation of a :class:`~gatekeep.Limiter`.

    >>> r = limiter.reserve("user:42", cost=2000)       # doctest: +SKIP
    >>> if r:                                           # doctest: +SKIP
    ...     used = call_the_model()
    ...     r.settle(used)                              # refunds or charges the difference
    """

    __slots__ = ("_drive",)

    def __init__(self, held: Held, drive: Callable[[LimitFlow[Any]], Any]) -> None:
        super().__init__(held)
        self._drive = drive

    def settle(self, actual: int, *, now: float | None = None) -> Decision | None:
        """Charge ``actual`` instead of the estimate, in one script call: the limits'
        state after it, or None when nothing was sent (denied, expired, or
        ``actual`` equal to the estimate). Raises :class:`ReservationSettled` the
        second time."""
        result: Decision | None = self._drive(self._settle_flow(actual, now))
        return result

    def cancel(self, *, now: float | None = None) -> Decision | None:
        """Give the whole estimate back: ``settle(0)``."""
        return self.settle(0, now=now)


class AsyncReservation(BaseReservation):
    """A reservation of an :class:`~gatekeep.AsyncLimiter`: ``await r.settle(actual)``."""

    __slots__ = ("_drive",)

    def __init__(self, held: Held, drive: Callable[[LimitFlow[Any]], Awaitable[Any]]) -> None:
        super().__init__(held)
        self._drive = drive

    async def settle(self, actual: int, *, now: float | None = None) -> Decision | None:
        """As :meth:`Reservation.settle`, awaited."""
        result: Decision | None = await self._drive(self._settle_flow(actual, now))
        return result

    async def cancel(self, *, now: float | None = None) -> Decision | None:
        """Give the whole estimate back: ``settle(0)``."""
        return await self.settle(0, now=now)

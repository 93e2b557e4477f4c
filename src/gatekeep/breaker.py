"""A circuit breaker as a sans-I/O state machine, shared by sync and async callers.

The breaker does no I/O and never sleeps: a caller asks :meth:`CircuitBreaker.allow`
whether to try Redis, makes the call itself (sync or async), and reports the
outcome with :meth:`~CircuitBreaker.success`, :meth:`~CircuitBreaker.failure` or
:meth:`~CircuitBreaker.release`. ``allow`` hands out a *ticket* (the breaker's
generation), so an answer that arrives after the state moved on (a slow call
admitted before the breaker opened) is counted but changes nothing.

States::

    closed ──(failures in a row, one deadline overrun, or one severe error)──► open
    open ──(recovery_time elapsed; the next call is the probe)──► half_open
    half_open ──(the probe succeeded)──► closed
    half_open ──(the probe failed)──► open

>>> breaker = CircuitBreaker(failures=3, recovery_time=0.5)
>>> ticket = breaker.allow()
>>> ticket is not None          # closed: go ahead
True
>>> breaker.success(ticket, elapsed=0.001)

Every state change is logged once on the ``gatekeep.breaker`` logger (``extra=``
carries the fields) and counted in :attr:`CircuitBreaker.counters`.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from .outage import Verdict, classify

__all__ = ["BreakerCounters", "CircuitBreaker", "State"]

logger = logging.getLogger("gatekeep.breaker")


class State(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True)
class BreakerCounters:
    """Plain counters, for logs, tests and (later) metrics."""

    #: Calls let through to the backend (including probes).
    calls: int = 0
    successes: int = 0
    #: Failed calls, deadline overruns included.
    failures: int = 0
    #: Calls that failed by a timeout or that answered after the deadline.
    timeouts: int = 0
    #: Calls not let through because the breaker was open (or a probe was out).
    rejected: int = 0
    #: Transitions into each state.
    opened: int = 0
    half_opened: int = 0
    closed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


Listener = Callable[["CircuitBreaker", State, State, str], None]


class CircuitBreaker:
    """Decides whether to call a backend that may be down; no I/O of its own.

    ``failures``: consecutive failed calls that open the breaker.
    ``deadline``: seconds; a call that answers later than this counts as a failure
    (its answer is still used), and with ``open_on_timeout`` a single timeout or
    overrun opens the breaker at once: waiting for several would make several
    callers wait a whole deadline each.
    ``recovery_time``: seconds the breaker stays open before one call probes.
    ``probe_timeout``: seconds after which a probe that never reported back is
    forgotten and another call may probe (a safety net: callers report in
    ``finally`` blocks).
    """

    def __init__(
        self,
        *,
        failures: int = 3,
        recovery_time: float = 0.5,
        deadline: float = 0.25,
        open_on_timeout: bool = True,
        probe_timeout: float | None = None,
        name: str = "redis",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(failures, int) or isinstance(failures, bool) or failures < 1:
            raise ValueError(f"failures must be an int >= 1, got {failures!r}")
        for label, value in (("recovery_time", recovery_time), ("deadline", deadline)):
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{label} must be a number of seconds > 0, got {value!r}")
        self.failure_threshold = failures
        self.recovery_time = float(recovery_time)
        self.deadline = float(deadline)
        self.open_on_timeout = open_on_timeout
        self.probe_timeout = (
            float(probe_timeout)
            if probe_timeout is not None
            else self.recovery_time + 4 * self.deadline
        )
        self.name = name
        self.clock = clock
        self.counters = BreakerCounters()
        self.listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._generation = 0
        self._consecutive = 0
        self._opened_at = 0.0
        self._probe_at: float | None = None  # when the current probe was let through

    def sibling(self, name: str) -> CircuitBreaker:
        """A new, closed breaker with this one's settings, clock and listeners (the
        breaker of another shard of the same deployment, see :mod:`gatekeep.shards`)."""
        other = CircuitBreaker(
            failures=self.failure_threshold,
            recovery_time=self.recovery_time,
            deadline=self.deadline,
            open_on_timeout=self.open_on_timeout,
            probe_timeout=self.probe_timeout,
            name=name,
            clock=self.clock,
        )
        other.listeners = self.listeners  # the same list: a listener added later hears all
        return other

    # -- reading ----------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def is_closed(self) -> bool:
        return self._state is State.CLOSED

    def retry_after(self) -> float:
        """Seconds until the breaker will try the backend again (0 when closed)."""
        if self._state is State.CLOSED:
            return 0.0
        return max(0.0, self._opened_at + self.recovery_time - self.clock())

    # -- the protocol: allow, then success / failure / release ----------------------

    def allow(self) -> int | None:
        """A ticket to call the backend, or None: use the fallback instead."""
        state = self._state
        if state is State.CLOSED:
            self.counters.calls += 1
            return self._generation
        with self._lock:
            now = self.clock()
            if self._state is State.OPEN and now - self._opened_at >= self.recovery_time:
                self._move(State.HALF_OPEN, "recovery time elapsed: probing")
            if self._state is State.HALF_OPEN and (
                self._probe_at is None or now - self._probe_at >= self.probe_timeout
            ):
                self._probe_at = now
                self.counters.calls += 1
                return self._generation
            if self._state is State.CLOSED:  # another thread's probe closed it meanwhile
                self.counters.calls += 1
                return self._generation
            self.counters.rejected += 1
            return None

    def success(self, ticket: int, elapsed: float = 0.0) -> None:
        """The call with ``ticket`` answered, after ``elapsed`` seconds."""
        if elapsed > self.deadline:
            self.failure(
                ticket,
                timeout=True,
                reason=f"answered after {elapsed:.3f} s, deadline {self.deadline:.3f} s",
            )
            return
        self.counters.successes += 1
        if self._state is State.CLOSED and self._consecutive == 0:
            return  # the fast path: nothing to change
        with self._lock:
            if ticket != self._generation:
                return
            if self._state is State.CLOSED:
                self._consecutive = 0
            elif self._state is State.HALF_OPEN:
                outage = self.clock() - self._opened_at
                self._move(State.CLOSED, "probe succeeded", outage_s=round(outage, 3))

    def failure(
        self, ticket: int, *, timeout: bool = False, severe: bool = False, reason: str = ""
    ) -> None:
        """The call with ``ticket`` failed (``timeout``: by a timeout or an overrun;
        ``severe``: the server said it cannot serve for now, e.g. out of memory,
        read-only, loading, no primary: opens at once)."""
        with self._lock:
            self.counters.failures += 1
            if timeout:
                self.counters.timeouts += 1
            if ticket != self._generation:
                return
            if self._state is State.CLOSED:
                self._consecutive += 1
                if (
                    self._consecutive >= self.failure_threshold
                    or severe
                    or (timeout and self.open_on_timeout)
                ):
                    why = (
                        "timeout"
                        if timeout
                        else "severe error"
                        if severe
                        else f"{self._consecutive} failures in a row"
                    )
                    self._open(f"{why}: {reason}" if reason else why)
            elif self._state is State.HALF_OPEN:
                self._open(f"probe failed: {reason}" if reason else "probe failed")

    def failed(self, ticket: int, exc: BaseException, reason: str | None = None) -> Verdict | None:
        """The call with ``ticket`` raised ``exc``: counted as :mod:`gatekeep.outage`
        judges it (an outage fails, a severe one opens at once; an error reply of a
        live server or a bug is not Redis being away: the ticket is given back).
        ``reason``: the text to log (``exc`` by default). Returns the verdict."""
        verdict = classify(exc)
        if verdict is None or not verdict.outage:
            self.release(ticket)
        else:
            self.failure(
                ticket,
                timeout=verdict.timeout,
                severe=verdict.severe,
                reason=(reason or f"{type(exc).__name__}: {exc}")[:200],
            )
        return verdict

    def release(self, ticket: int) -> None:
        """The call with ``ticket`` was abandoned (cancelled) before it answered."""
        with self._lock:
            if ticket == self._generation and self._state is State.HALF_OPEN:
                self._probe_at = None  # let the next call probe

    def reset(self) -> None:
        """Close the breaker now (e.g. an operator knows Redis is back)."""
        with self._lock:
            if self._state is not State.CLOSED:
                self._move(State.CLOSED, "reset")
            self._consecutive = 0

    # -- transitions ---------------------------------------------------------------

    def _open(self, reason: str) -> None:
        self._opened_at = self.clock()
        self._move(State.OPEN, reason)

    def _move(self, new: State, reason: str, **fields: object) -> None:
        old = self._state
        self._state = new
        self._generation += 1
        self._probe_at = None
        self._consecutive = 0
        if new is State.OPEN:
            self.counters.opened += 1
            level = logging.WARNING
        elif new is State.HALF_OPEN:
            self.counters.half_opened += 1
            level = logging.DEBUG
        else:
            self.counters.closed += 1
            level = logging.INFO
        extra = {
            "gatekeep_breaker": self.name,
            "gatekeep_state": new.value,
            "gatekeep_previous": old.value,
            "gatekeep_reason": reason,
            **{f"gatekeep_{k}": v for k, v in fields.items()},
        }
        logger.log(
            level,
            "gatekeep breaker %r: %s -> %s (%s)",
            self.name,
            old.value,
            new.value,
            reason,
            extra=extra,
        )
        for listener in self.listeners:
            listener(self, old, new, reason)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker({self.name!r}, state={self._state.value}, "
            f"failures={self.failure_threshold}, recovery_time={self.recovery_time})"
        )

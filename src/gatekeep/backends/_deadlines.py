"""Deadlines of async round trips: one timer per event loop, not one per round trip.

Every round trip of one client gets the same timeout, so deadlines come in the order
the round trips start: they wait in a FIFO behind one timer (:class:`Loop`), and a
round trip costs an append, not a timer to schedule and cancel (a tenth of a fast
round trip). A deadline measures the wait for Redis, not the event loop's lateness
(see :class:`Loop`). Used by :class:`~._wire.AsyncConnections`, and by :class:`Deadline`
for the calls made through redis-py's own async clients (Sentinel, Cluster).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["BACKSTOP", "GRACE", "LOOP_STALL", "Deadline", "Loop", "Watch", "backstop"]

T = TypeVar("T")


class Watch:
    """One async round trip under its deadline (see :class:`Loop`)."""

    __slots__ = ("cancelling", "deadline", "expired", "graced", "task")

    def __init__(self, deadline: float, task: Any) -> None:
        self.deadline = deadline
        #: Given a grace once already, after a stall of the event loop.
        self.graced = False
        #: The task making the round trip; None once the round trip is over.
        self.task: Any = task
        #: The task's pending cancellations when the round trip began (Python >= 3.11
        #: counts them: ``cancelling()``, ``uncancel()``; None before).
        self.cancelling: int | None = task.cancelling() if hasattr(task, "uncancel") else None
        #: The deadline passed and the task was cancelled for it.
        self.expired = False

    def close(self, exc: BaseException | None) -> bool:
        """The round trip is over (``exc``: how it failed); True when it failed because
        its deadline passed (the caller raises ``TimeoutError``), as ``asyncio.timeout``
        decides it: our cancellation, and no other one pending."""
        task, self.task = self.task, None
        if not self.expired or task is None:
            return False
        if self.cancelling is None:  # Python 3.10 counts no cancellations: ours it is
            return isinstance(exc, asyncio.CancelledError)
        return task.uncancel() <= self.cancelling and isinstance(exc, asyncio.CancelledError)


#: A timer this late (seconds) means the event loop itself was held (CPU-bound code
#: in the app): the round trips it finds past their deadline get GRACE seconds more,
#: once each, for the loop to read what arrived meanwhile.
LOOP_STALL = 0.02
GRACE = 0.05


class Loop:
    """What :class:`AsyncConnections` keeps per event loop: idle connections, and the
    deadlines of the round trips in flight behind one timer.

    Every round trip gets the same timeout, so deadlines come in the order the round
    trips start: they wait in a FIFO, and the timer is set for the oldest unfinished
    one. A finished round trip leaves its entry behind (it is dropped when the timer
    passes it), so a round trip costs an append, not a timer of its own to schedule
    and cancel; the timer fires about once per timeout, or when a deadline passes.

    A deadline measures the wait for Redis, not the event loop's lateness: when the
    timer fires late (the loop was held past the deadline, while Redis may have
    answered long ago), each round trip past its deadline gets ``GRACE`` more, once,
    and the loop's next passes read what arrived meanwhile. A loop that keeps up
    times a hung server out within one timeout (and the grace, if it stalled).
    """

    __slots__ = ("idle", "timer", "timer_at", "trips")

    def __init__(self) -> None:
        self.idle: deque[Any] = deque()
        self.trips: deque[Watch] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    def watch(self, loop: asyncio.AbstractEventLoop, task: Any, timeout: float) -> Watch:
        trip = Watch(loop.time() + timeout, task)
        self.trips.append(trip)
        if self.timer is None:
            self._arm(loop, trip.deadline)
        return trip

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self.timer_at = when
        self.timer = loop.call_at(when, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        now = loop.time()
        stalled = now - self.timer_at > LOOP_STALL
        trips = self.trips
        graced = False
        while trips:
            trip = trips[0]
            if trip.task is None:  # finished
                trips.popleft()
            elif trip.deadline > now:
                break
            elif stalled and not trip.graced:
                trips.popleft()
                trip.graced = graced = True
                trip.deadline = now + GRACE
                trips.append(trip)
            else:
                trips.popleft()
                trip.expired = True
                trip.task.cancel()
        if graced:  # rare: keep the deadlines in order
            self.trips = trips = deque(sorted(trips, key=_deadline))
        if trips:
            self._arm(loop, trips[0].deadline)


def _deadline(trip: Watch) -> float:
    return trip.deadline


#: Seconds (at least) of redis-py's own timeouts on the async clients whose calls a
#: :class:`Deadline` times: see :func:`backstop`.
BACKSTOP = 2.0


def backstop(timeout: float) -> float:
    """redis-py's socket timeouts for an async client whose calls a ``Deadline(timeout)``
    times: far enough not to fire first on a stalled event loop (a stall shorter than
    this is survived), near enough to end what gatekeep's deadline does not cover."""
    return max(BACKSTOP, 8 * timeout)


class Deadline:
    """``timeout`` seconds for each async call made through redis-py's own client
    (Sentinel, Cluster: where the lean round trip of :mod:`._wire` cannot go), by the
    rule of :class:`Loop`: the deadline measures the wait for Redis, not the event
    loop's lateness.

    redis-py times each read by ``asyncio.timeout``, which fires on a stalled loop
    even when the reply arrived during the stall (the loop runs the late timer before
    the task that would read the reply): a call in flight during a 0.3 s stall failed
    with a timeout and opened the breaker. So the clients gatekeep builds for this
    path get redis-py timeouts of :func:`backstop` seconds, and the deadline is this
    one: when it passes, the call is cancelled (redis-py closes the connection it was
    reading) and raises ``TimeoutError``. redis-py did not see that timeout, so
    ``expired(client)`` is told, to let the client recover as it would have (see
    ``connect.after_timeout``).
    """

    __slots__ = ("_loops", "expired", "timeout")

    def __init__(self, timeout: float, expired: Callable[[Any], object] | None = None) -> None:
        self.timeout = timeout
        self.expired = expired
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Loop] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, call: Awaitable[T], client: Any = None) -> T:
        """``await call`` (a call through ``client``), or ``TimeoutError`` once the
        deadline passed."""
        task: Any = asyncio.current_task()
        if task is None:
            return await self._waiting(call, client)
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = Loop()
        watch = state.watch(loop, task, self.timeout)
        try:
            result = await call
        except BaseException as exc:
            if watch.close(exc):
                self._expired(client)
                raise TimeoutError(f"no reply within {self.timeout} s") from None
            raise
        watch.close(None)
        return result

    async def _waiting(self, call: Awaitable[T], client: Any) -> T:
        """The same with ``asyncio.wait_for`` (outside a task): a stalled loop counts
        there."""
        try:
            return await asyncio.wait_for(call, self.timeout)
        except asyncio.TimeoutError:
            self._expired(client)
            raise

    def _expired(self, client: Any) -> None:
        if self.expired is not None:
            self.expired(client)

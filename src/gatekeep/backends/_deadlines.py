"""Deadlines of async round trips: one timer per event loop, not one per round trip.

Every round trip of one client gets the same timeout, so deadlines come in the order
the round trips start: they wait in a FIFO behind one timer (:class:`Loop`), and a
round trip costs an append, not a timer to schedule and cancel (a tenth of a fast
round trip). A deadline measures the wait for Redis, not the event loop's lateness
(see :class:`Loop`). Used by :class:`~._wire.AsyncConnections`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

__all__ = ["GRACE", "LOOP_STALL", "Loop", "Watch"]


class Watch:
    """One async round trip under its deadline (see :class:`Loop`)."""

    __slots__ = ("cancelling", "deadline", "expired", "graced", "task")

    def __init__(self, deadline: float, task: Any) -> None:
        self.deadline = deadline
        #: Given a grace once already, after a stall of the event loop.
        self.graced = False
        #: The task making the round trip (an ``asyncio.Task`` of Python >= 3.11: it
        #: has ``cancelling()`` and ``uncancel()``); None once the round trip is over.
        self.task: Any = task
        #: The task's pending cancellations when the round trip began.
        self.cancelling = task.cancelling()
        #: The deadline passed and the task was cancelled for it.
        self.expired = False

    def close(self, exc: BaseException | None) -> bool:
        """The round trip is over (``exc``: how it failed); True when it failed because
        its deadline passed (the caller raises ``TimeoutError``), as ``asyncio.timeout``
        decides it: our cancellation, and no other one pending."""
        task, self.task = self.task, None
        if not self.expired or task is None:
            return False
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

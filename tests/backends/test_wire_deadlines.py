"""One deadline per async round trip, behind one timer per event loop (``_deadlines.Loop``):
each round trip still times out on its own deadline, a cancellation from elsewhere stays
a cancellation, and finished round trips keep nothing alive."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from gatekeep import RedisBackend
from gatekeep.backends._deadlines import Loop
from gatekeep.sessions import SessionStore


async def _trip(state: Loop, seconds: float, timeout: float) -> str:
    """A stand-in round trip: sleeps ``seconds`` under a ``timeout`` deadline, the way
    ``AsyncConnections.run`` watches its round trips."""
    trip = state.watch(asyncio.get_running_loop(), asyncio.current_task(), timeout)
    try:
        await asyncio.sleep(seconds)
    except BaseException as exc:
        if trip.close(exc):
            raise TimeoutError from exc
        raise
    trip.close(None)
    return "done"


async def test_each_round_trip_times_out_on_its_own_deadline():
    state = Loop()
    start = time.monotonic()
    finished: dict[str, float] = {}

    async def timed(name: str, delay: float, seconds: float) -> str:
        await asyncio.sleep(delay)
        try:
            return await _trip(state, seconds, timeout=0.3)
        finally:
            finished[name] = time.monotonic() - start

    results = await asyncio.gather(
        timed("fast", 0.0, 0.01),
        timed("late", 0.0, 5),
        timed("later", 0.15, 5),
        timed("in time", 0.15, 0.2),
        return_exceptions=True,
    )
    assert results[0] == "done" and results[3] == "done"
    assert isinstance(results[1], TimeoutError) and isinstance(results[2], TimeoutError)
    assert 0.28 <= finished["late"] < 0.8, finished  # 0.3 after it started
    assert 0.43 <= finished["later"] < 0.95, finished  # 0.3 after it started, not before
    assert finished["later"] - finished["late"] > 0.1, finished
    await asyncio.sleep(0)
    assert not state.trips and state.timer is None  # nothing left to watch


async def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    state = Loop()
    task = asyncio.ensure_future(_trip(state, 5, timeout=0.5))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # ... and its deadline, passing later, cancels nothing
    other = asyncio.ensure_future(_trip(state, 0.6, timeout=1.0))
    await asyncio.sleep(0.55)
    assert not other.done()
    assert await other == "done"


async def test_a_cancellation_racing_the_deadline_is_not_swallowed():
    # The deadline passes while the task is also cancelled from elsewhere: as with
    # asyncio.timeout, the outer cancellation wins (CancelledError, not TimeoutError).
    state = Loop()
    task = asyncio.ensure_future(_trip(state, 5, timeout=0.1))
    await asyncio.sleep(0)
    state.timer.cancel()  # fire the deadline by hand,
    await asyncio.sleep(0.12)
    task.cancel()  # right after an outer cancel
    state._expire(asyncio.get_running_loop())
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_finished_round_trips_hold_no_task():
    state = Loop()
    for _ in range(50):
        assert await _trip(state, 0, timeout=0.2) == "done"
    assert len(state.trips) == 50  # dropped when the timer passes
    assert all(trip.task is None for trip in state.trips)  # ... holding no task meanwhile
    await asyncio.sleep(0.25)
    assert not state.trips and state.timer is None


async def test_concurrent_loads_on_a_stalled_server_take_one_timeout(server_factory):
    server = server_factory("redis")
    backend = RedisBackend(server.url, socket_timeout=0.3, socket_connect_timeout=0.3)
    store = SessionStore(backend, metrics=None)
    try:
        ids = [(await store.acreate({"n": i})).id for i in range(4)]
        assert [(await store.aload(i))["n"] for i in ids] == [0, 1, 2, 3]
        server.signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            results = await asyncio.gather(*(store.aload(i) for i in ids), return_exceptions=True)
            elapsed = time.monotonic() - start
        finally:
            server.signal(signal.SIGCONT)
        assert all(isinstance(r, TimeoutError) for r in results), results
        assert 0.25 < elapsed < 0.9, elapsed  # together, one timeout
        assert [(await store.aload(i))["n"] for i in ids] == [0, 1, 2, 3]  # and back
    finally:
        await store.aclose()
        backend.close()

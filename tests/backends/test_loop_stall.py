"""A stalled event loop is not a Redis outage.

CPU-bound code in an async app can hold the event loop past a round trip's
deadline while Redis has long answered. The deadline must measure the wait for
Redis, not the loop's lateness: the breaker stays closed and the next session
save succeeds. A real hang still opens it within one timeout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest

from gatekeep import AsyncLimiter, RedisBackend
from gatekeep.backends._deadlines import GRACE, Deadline, Loop
from gatekeep.backends.failover import FailoverBackend
from gatekeep.breaker import State
from gatekeep.sessions import SessionStore

STALL = 0.3  # seconds; the round trip's deadline is 0.25


async def _in_flight_then_stall(coro: Any) -> Any:
    """Start ``coro`` (its request is written and it waits for the reply), then hold the
    event loop for STALL seconds, as CPU-bound code in a handler would."""
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(0)  # the task's first step: the request goes out
    time.sleep(STALL)  # noqa: ASYNC251  (the point: the loop is held; Redis answers)
    return await task


@pytest.mark.redis
async def test_a_stalled_loop_during_a_limiter_call_is_not_an_outage(
    servers: Any, prefix: str
) -> None:
    backend = FailoverBackend(RedisBackend(servers.get("redis").url))
    limiter = AsyncLimiter("100/minute", backend=backend, prefix=prefix)
    try:
        assert (await limiter.hit("k")).remaining == 99  # connected, scripts loaded
        decision = await _in_flight_then_stall(limiter.hit("k"))
        assert decision.remaining == 98  # Redis decided it, not the fallback
        assert backend.breaker.state is State.CLOSED
        assert backend.fallback_calls == 0
        assert backend.breaker.counters.failures == 0
    finally:
        await backend.primary.aclose()  # type: ignore[attr-defined]


@pytest.mark.redis
async def test_a_stalled_loop_during_a_reset_is_not_an_outage(servers: Any, prefix: str) -> None:
    backend = FailoverBackend(RedisBackend(servers.get("redis").url))
    limiter = AsyncLimiter("100/minute", backend=backend, prefix=prefix)
    try:
        await limiter.hit("k")
        await limiter.hit("k")
        await _in_flight_then_stall(limiter.reset("k"))
        assert backend.breaker.counters.failures == 0
        assert backend.breaker.state is State.CLOSED
        assert (await limiter.hit("k")).remaining == 99  # the reset reached Redis
    finally:
        await backend.primary.aclose()  # type: ignore[attr-defined]


@pytest.mark.redis
async def test_a_stalled_loop_during_a_session_load_is_not_an_outage(
    servers: Any, prefix: str
) -> None:
    backend = FailoverBackend(RedisBackend(servers.get("redis").url))
    store = SessionStore(backend, prefix=prefix, idle_timeout=100, absolute_timeout=1000)
    try:
        session = store.new({"n": 1})
        assert await store.asave(session)
        assert session.id is not None
        loaded = await _in_flight_then_stall(store.aload(session.id))
        assert loaded is not None and loaded["n"] == 1
        assert backend.breaker.state is State.CLOSED
        loaded["n"] = 2
        assert await store.asave(loaded)  # the next save succeeds
        again = await store.aload(session.id)
        assert again is not None and again["n"] == 2
    finally:
        await store.aclose()


@pytest.mark.redis
@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
async def test_a_real_hang_still_opens_the_breaker_within_one_timeout(
    server_factory: Any, prefix: str
) -> None:
    server = server_factory("redis")
    backend = FailoverBackend(RedisBackend(server.url))
    limiter = AsyncLimiter("100/minute", backend=backend, prefix=prefix)
    try:
        await limiter.hit("k")
        os.kill(server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            decision = await limiter.hit("k")  # decided by the fallback
            took = time.monotonic() - started
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert decision.allowed
        assert backend.breaker.state is State.OPEN
        assert 0.2 <= took < 0.25 + 0.2, took
    finally:
        await backend.primary.aclose()  # type: ignore[attr-defined]


# -- the rule itself, on Loop with a stand-in round trip ---------------------------------


async def _stand_in(state: Loop, seconds: float, timeout: float) -> str:
    """A round trip that takes ``seconds``, watched as ``AsyncConnections.run`` does."""
    watch = state.watch(asyncio.get_running_loop(), asyncio.current_task(), timeout)
    try:
        await asyncio.sleep(seconds)
    except BaseException as exc:
        if watch.close(exc):
            raise TimeoutError from exc
        raise
    watch.close(None)
    return "answered"


@pytest.mark.parametrize("_", range(3))
async def test_an_answer_that_came_during_a_stall_is_taken(_: int) -> None:
    state = Loop()
    task = asyncio.ensure_future(_stand_in(state, 0.01, timeout=0.1))
    await asyncio.sleep(0)
    time.sleep(0.2)  # noqa: ASYNC251  (the loop is held past the deadline)
    assert await task == "answered"


async def test_a_stall_gives_one_grace_and_no_more() -> None:
    state = Loop()
    started = time.monotonic()
    task = asyncio.ensure_future(_stand_in(state, 5, timeout=0.1))
    await asyncio.sleep(0)
    time.sleep(0.2)  # noqa: ASYNC251
    with pytest.raises(TimeoutError):
        await task
    took = time.monotonic() - started
    assert 0.2 + GRACE - 0.01 <= took < 0.2 + GRACE + 0.15, took


async def test_a_loop_that_keeps_stalling_still_times_out() -> None:
    state = Loop()
    started = time.monotonic()
    task = asyncio.ensure_future(_stand_in(state, 5, timeout=0.1))

    async def hog() -> None:  # CPU-bound code that yields rarely
        while not task.done():
            time.sleep(0.06)  # noqa: ASYNC251
            await asyncio.sleep(0)

    hogging = asyncio.ensure_future(hog())
    with pytest.raises(TimeoutError):
        await task
    await hogging
    assert time.monotonic() - started < 0.1 + GRACE + 0.3


# -- the same rule for calls through redis-py's own client (Deadline) ---------------------


async def _answer_after(seconds: float, log: list[str]) -> str:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        log.append("cancelled")
        raise
    log.append("answered")
    return "answered"


async def test_a_call_answered_during_a_stall_is_taken() -> None:
    deadline = Deadline(0.1)
    log: list[str] = []
    task = asyncio.ensure_future(deadline.run(_answer_after(0.01, log)))
    await asyncio.sleep(0)
    time.sleep(0.2)  # noqa: ASYNC251  (the loop is held past the deadline)
    assert await task == "answered"


async def test_a_hung_call_times_out_within_the_deadline_and_says_so() -> None:
    told: list[object] = []
    deadline = Deadline(0.1, told.append)
    log: list[str] = []
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await deadline.run(_answer_after(5, log), "the client")
    assert 0.1 <= time.monotonic() - started < 0.1 + 0.1
    assert log == ["cancelled"]  # redis-py closes the connection it was reading
    assert told == ["the client"]  # which redis-py did not see: see connect.after_timeout


async def test_a_stall_gives_a_call_one_grace_and_no_more() -> None:
    deadline = Deadline(0.1)
    log: list[str] = []
    started = time.monotonic()
    task = asyncio.ensure_future(deadline.run(_answer_after(5, log)))
    await asyncio.sleep(0)
    time.sleep(0.2)  # noqa: ASYNC251
    with pytest.raises(TimeoutError):
        await task
    took = time.monotonic() - started
    assert 0.2 + GRACE - 0.01 <= took < 0.2 + GRACE + 0.15, took


async def test_a_cancelled_caller_is_no_timeout() -> None:
    told: list[object] = []
    deadline = Deadline(1.0, told.append)
    log: list[str] = []
    task = asyncio.ensure_future(deadline.run(_answer_after(5, log), "the client"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["cancelled"] and told == []


async def test_a_failed_call_raises_its_own_error() -> None:
    async def refused() -> None:
        raise ConnectionRefusedError("nothing listens")

    with pytest.raises(ConnectionRefusedError):
        await Deadline(0.1).run(refused())


async def test_outside_a_task_the_deadline_is_asyncio_wait_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # no task to cancel: asyncio.wait_for, where a stalled loop counts
    monkeypatch.setattr(asyncio, "current_task", lambda: None)
    told: list[object] = []
    log: list[str] = []
    assert await Deadline(0.1, told.append).run(_answer_after(0.01, log), "c") == "answered"
    with pytest.raises(asyncio.TimeoutError):
        await Deadline(0.1, told.append).run(_answer_after(5, log), "the client")
    assert log == ["answered", "cancelled"] and told == ["the client"]

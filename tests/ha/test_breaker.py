"""The circuit breaker's state machine, on a fake clock (no I/O, no sleeping)."""

from __future__ import annotations

import logging

import pytest

from gatekeep.breaker import CircuitBreaker, State


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(clock: Clock, **kw) -> CircuitBreaker:
    kw.setdefault("failures", 3)
    kw.setdefault("recovery_time", 0.5)
    kw.setdefault("deadline", 0.25)
    return CircuitBreaker(clock=clock, **kw)


def fail(b: CircuitBreaker, n: int = 1, **kw) -> None:
    for _ in range(n):
        t = b.allow()
        assert t is not None
        b.failure(t, **kw)


def test_opens_after_consecutive_failures_only(clock):
    b = make(clock)
    fail(b, 2)
    t = b.allow()
    b.success(t, 0.001)  # a success resets the count
    fail(b, 2)
    assert b.state is State.CLOSED
    fail(b, 1)
    assert b.state is State.OPEN
    assert b.allow() is None
    assert b.counters.opened == 1 and b.counters.rejected == 1 and b.counters.failures == 5


def test_timeout_or_overrun_opens_at_once(clock):
    b = make(clock)
    fail(b, 1, timeout=True)
    assert b.state is State.OPEN
    b2 = make(clock)
    t = b2.allow()
    b2.success(t, elapsed=0.3)  # answered, but after the deadline
    assert b2.state is State.OPEN
    assert b2.counters.timeouts == 1
    b3 = make(clock, open_on_timeout=False)
    fail(b3, 2, timeout=True)
    assert b3.state is State.CLOSED


def test_half_open_probe_then_close(clock):
    b = make(clock)
    fail(b, 3)
    clock.t += 0.49
    assert b.allow() is None
    assert b.retry_after() == pytest.approx(0.01)
    clock.t += 0.01
    probe = b.allow()
    assert probe is not None and b.state is State.HALF_OPEN
    assert b.allow() is None  # one probe at a time
    b.success(probe, 0.002)
    assert b.state is State.CLOSED
    assert b.allow() is not None
    assert (b.counters.opened, b.counters.half_opened, b.counters.closed) == (1, 1, 1)


def test_failed_probe_reopens_for_a_full_recovery_time(clock):
    b = make(clock)
    fail(b, 3)
    clock.t += 0.5
    probe = b.allow()
    b.failure(probe)
    assert b.state is State.OPEN
    clock.t += 0.3
    assert b.allow() is None
    clock.t += 0.2
    assert b.allow() is not None


def test_stale_answers_change_nothing(clock):
    b = make(clock)
    early = b.allow()  # admitted while closed, answers late
    fail(b, 3)
    clock.t += 0.5
    probe = b.allow()
    b.success(early, 0.001)  # from before the outage: no evidence Redis is back
    assert b.state is State.HALF_OPEN
    b.failure(early)
    assert b.state is State.HALF_OPEN
    b.success(probe, 0.001)
    assert b.state is State.CLOSED


def test_released_or_lost_probe_lets_another_call_probe(clock):
    b = make(clock, probe_timeout=2.0)
    fail(b, 3)
    clock.t += 0.5
    probe = b.allow()
    b.release(probe)  # cancelled
    again = b.allow()
    assert again is not None
    clock.t += 1.9
    assert b.allow() is None
    clock.t += 0.1  # the probe never reported: forgotten after probe_timeout
    assert b.allow() is not None


def test_state_changes_are_logged_once_each_and_listened(clock, caplog):
    b = make(clock, name="test")
    seen = []
    b.listeners.append(lambda br, old, new, why: seen.append((old, new)))
    with caplog.at_level(logging.DEBUG, logger="gatekeep.breaker"):
        fail(b, 3)
        clock.t += 0.5
        b.success(b.allow(), 0.001)
    records = [r for r in caplog.records if r.name == "gatekeep.breaker"]
    assert [(r.gatekeep_previous, r.gatekeep_state) for r in records] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert records[0].levelno == logging.WARNING and records[0].gatekeep_breaker == "test"
    assert records[2].gatekeep_outage_s == pytest.approx(0.5)
    assert seen == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="failures"):
        CircuitBreaker(failures=0)
    with pytest.raises(ValueError, match="recovery_time"):
        CircuitBreaker(recovery_time=0)
    with pytest.raises(ValueError, match="deadline"):
        CircuitBreaker(deadline=-1)

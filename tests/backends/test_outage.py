"""The one outage rule: every redis-py exception and reply, one verdict, every caller."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis import exceptions as rx
from redis.sentinel import MasterNotFoundError

from gatekeep import Limiter, MemoryBackend
from gatekeep.backends.failover import FailoverBackend
from gatekeep.breaker import State
from gatekeep.errors import BackendUnavailable
from gatekeep.outage import Verdict, classify, is_outage

NOW = 1_700_000_000.0


class FlakyPrimary(MemoryBackend):
    """A limiter store that fails with ``down`` when it is set."""

    down: BaseException | None = None

    def limit(self, *a, **kw):  # type: ignore[no-untyped-def]
        if self.down is not None:
            raise self.down
        return super().limit(*a, **kw)


OUTAGE, SEVERE, TIMEOUT, FAULT = (
    Verdict(True),
    Verdict(True, severe=True),
    Verdict(True, timeout=True),
    Verdict(False),
)

TABLE = [
    # connections
    (rx.ConnectionError("Connection refused"), OUTAGE),
    (ConnectionResetError(), OUTAGE),
    (OSError("unreachable"), OUTAGE),
    (rx.AuthenticationError("WRONGPASS"), OUTAGE),
    (rx.MaxConnectionsError("Too many connections"), OUTAGE),
    (BackendUnavailable("breaker open"), OUTAGE),
    # a Sentinel with no primary to name
    (MasterNotFoundError("No master found for 'mymaster'"), SEVERE),
    # timeouts: the call may have run
    (rx.TimeoutError("Timeout reading from socket"), TIMEOUT),
    (TimeoutError(), TIMEOUT),
    (asyncio.TimeoutError(), TIMEOUT),
    # replies that say "not now, nor the next call"
    (rx.ReadOnlyError("You can't write against a read only replica."), SEVERE),
    (rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), SEVERE),
    (rx.BusyLoadingError("Redis is loading the dataset in memory"), SEVERE),
    (rx.ClusterDownError("The cluster is down"), SEVERE),
    (
        rx.MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
        SEVERE,
    ),
    (rx.ResponseError("NOREPLICAS Not enough good replicas to write."), SEVERE),
    # replies that say "not this moment"
    (rx.TryAgainError("Multiple keys request during rehashing of slot"), OUTAGE),
    (rx.RedisClusterException("Redis Cluster cannot be connected."), OUTAGE),
    (rx.SlotNotCoveredError("Slot 12 not covered by the cluster."), OUTAGE),
    # Redis is up and answered this one call with an error
    (rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), FAULT),
    (rx.ResponseError("ERR Error running script (call to f_1): bug"), FAULT),
    (rx.NoScriptError("NOSCRIPT No matching script."), FAULT),
    (rx.NoPermissionError("NOPERM this user has no permissions"), FAULT),
    (rx.DataError("Invalid input of type: 'dict'"), FAULT),
    (rx.InvalidResponse("Protocol Error"), FAULT),
    # not a store error: a bug (a changed private API of redis-py included), re-raised
    (AttributeError("'Connection' object has no attribute '_writer'"), None),
    (TypeError("a bug"), None),
    (KeyError("x"), None),
]


@pytest.mark.parametrize(("exc", "verdict"), TABLE, ids=lambda v: type(v).__name__)
def test_verdict(exc: BaseException, verdict: Verdict | None) -> None:
    assert classify(exc) == verdict
    expected = verdict is not None and verdict.outage
    assert is_outage(exc) is expected


@pytest.mark.parametrize(("exc", "verdict"), TABLE, ids=lambda v: type(v).__name__)
def test_limiter_breaker_follows_the_verdict(exc: BaseException, verdict: Verdict | None) -> None:
    """One failing call: a severe outage (and a timeout, with the breaker's default
    ``open_on_timeout``) opens the breaker at once, a plain outage counts, a fault does
    not count, and a bug is raised to the caller."""
    primary = FlakyPrimary()
    primary.down = exc
    backend = FailoverBackend(primary, failures=2)
    limiter = Limiter("5/minute", backend=backend)
    if verdict is None:
        with pytest.raises(type(exc)):
            limiter.hit("k", now=NOW)
        assert backend.breaker.state is State.CLOSED
        return
    assert limiter.hit("k", now=NOW).allowed  # decided in process
    if verdict.severe or (verdict.timeout and backend.breaker.open_on_timeout):
        assert backend.breaker.state is State.OPEN
        return
    assert backend.breaker.state is State.CLOSED
    limiter.hit("k", now=NOW)
    assert backend.breaker.state is (State.OPEN if verdict.outage else State.CLOSED)


def test_redis_error_base_classes_are_all_store_errors() -> None:
    """Every exception class redis-py defines has a verdict (none is taken for a bug)."""
    import inspect

    for _name, cls in inspect.getmembers(rx, inspect.isclass):
        if not issubclass(cls, (redis.RedisError, rx.RedisClusterException)):
            continue
        try:
            exc = cls("x")
        except (TypeError, ValueError):  # MovedError/AskError parse their message
            exc = cls("3999 127.0.0.1:6381")
        assert classify(exc) is not None, cls

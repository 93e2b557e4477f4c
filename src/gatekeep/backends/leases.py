"""The concurrency scripts on every backend, through each backend's one call path.

A :class:`LeaseCall` is one script call and its in-process twin. :func:`lease_run` /
:func:`alease_run` send it the way the backend sends any script: ``RedisBackend.eval``
(EVALSHA, one round trip), ``MemoryBackend.run_twin`` (the twin under its lock), and
``FailoverBackend.run`` under the breaker of the keys' shard, its policy deciding while
Redis is away (``"local"``: the twin on its in-process fallback, each instance holding
its share of every limit; ``"open"``: allowed; ``"closed"``: BackendUnavailable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ..errors import BackendUnavailable
from ..scripts import Script
from .failover import FailoverBackend
from .memory import MemoryBackend, MemoryStore
from .redis import RedisBackend

__all__ = ["LeaseCall", "Twin", "alease_run", "lease_run"]

#: The twin of a call: ``(store, now µs, the failover backend whose fallback runs it, or
#: None) -> reply``; under a failover backend it takes this instance's share of each limit.
Twin = Callable[[MemoryStore, int, "FailoverBackend | None"], list[int]]


class LeaseCall(NamedTuple):
    """One script call (``script`` on ``keys`` with ``args``), and the same in-process."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Any]
    #: µs, or None for the backend's clock (the server's TIME).
    now: int | None
    twin: Twin
    #: The reply of the ``"open"`` outage policy (every limit allows).
    open_reply: list[int]


def lease_run(backend: Any, call: LeaseCall) -> list[int]:
    """Make ``call`` on ``backend`` (memory, Redis, failover), blocking."""
    if isinstance(backend, MemoryBackend):
        return backend.run_twin(lambda store, now: call.twin(store, now, None), call.now)
    if isinstance(backend, FailoverBackend):
        return backend.run(
            lambda: lease_run(backend.primary, call),
            lambda exc: _fallback(backend, call, exc),
            backend.breaker_for(call.keys),
        )
    if isinstance(backend, RedisBackend):
        return _ints(backend.eval(call.script, call.keys, call.args))
    raise TypeError(f"concurrency limits need a gatekeep backend, not {type(backend).__name__}")


async def alease_run(backend: Any, call: LeaseCall) -> list[int]:
    """The same, awaited."""
    if isinstance(backend, MemoryBackend):
        return backend.run_twin(lambda store, now: call.twin(store, now, None), call.now)
    if isinstance(backend, FailoverBackend):
        return await backend.arun(
            lambda: alease_run(backend.primary, call),
            lambda exc: _fallback(backend, call, exc),
            backend.breaker_for(call.keys, aio=True),
        )
    if isinstance(backend, RedisBackend):
        return _ints(await backend.aeval(call.script, call.keys, call.args))
    raise TypeError(f"concurrency limits need a gatekeep backend, not {type(backend).__name__}")


def _fallback(backend: FailoverBackend, call: LeaseCall, exc: BaseException | None) -> list[int]:
    if backend.policy == "local":
        return backend.fallback.run_twin(
            lambda store, now: call.twin(store, now, backend), call.now
        )
    if backend.policy == "open":
        return list(call.open_reply)
    why = f"{type(exc).__name__}: {exc}" if exc is not None else "the circuit breaker is open"
    err = BackendUnavailable(
        f"Redis is unavailable ({why}) and policy='closed'",
        retry_after=max(1.0, backend.breaker_for(call.keys).retry_after()),
    )
    err.__cause__ = exc
    raise err


def _ints(reply: Any) -> list[int]:
    return [int(x) for x in reply]

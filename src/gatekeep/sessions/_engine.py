"""Running session scripts: sans-I/O flows, two drivers, two executors.

Every store operation is written once, as a generator (a *flow*) that yields a
batch of script calls, receives their replies, and returns a result. A batch is
one round trip: one EVALSHA, or several pipelined when they touch different
cluster slots (a session and a user's index). :func:`drive` steps a flow with
blocking I/O and :func:`adrive` with asyncio, so the sync and async APIs cannot
drift apart.

Executors do the I/O: :class:`~._redis.RedisExecutor` sends the Lua scripts (the
primary first, a replica for reads while it is away), and :class:`MemoryExecutor`
runs their Python twins (``twin.py``) under a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol, TypeVar

from ..backends.memory import MemoryStore
from ..flows import arun_flow, run_flow
from ..scripts import Script, read_lua
from . import twin

__all__ = [
    "CLOCK_ONLY",
    "Call",
    "Executor",
    "Flow",
    "MemoryExecutor",
    "adrive",
    "drive",
    "session_script",
]

T = TypeVar("T")


@dataclass(slots=True)
class Call:
    """One script call: ``script`` is a name in ``lua/`` (``session_load``, ...).

    Not changed once made (not ``frozen``: a frozen dataclass's ``__init__`` costs
    twice as much, and a request makes two of these)."""

    script: str
    keys: tuple[str, ...]
    #: ARGV after ``now`` (ARGV[1]), which the executor adds.
    args: tuple[str | int, ...]
    #: The call never writes: it may run as EVALSHA_RO, on a replica.
    read_only: bool = False
    #: A read-only call that can stand in for this one on a replica when no primary
    #: answers (a load without the touch); None: this call must reach a primary.
    fallback: Call | None = None


#: A store operation: yields batches of calls, is sent their replies, returns a result.
Flow = Generator[list[Call], list[Any], T]


#: Scripts that use none of the prelude's helpers: they get the clock alone (each helper
#: is a closure the server makes on every call).
CLOCK_ONLY = frozenset({"session_peek"})


@cache
def session_script(name: str) -> Script:
    """A session script: the clock, the shared prelude (unless in :data:`CLOCK_ONLY`),
    then the operation."""
    parts = [read_lua("session_clock")]
    if name not in CLOCK_ONLY:
        parts.append(read_lua("session_prelude"))
    parts.append(read_lua(name))
    return Script.from_source(name, "\n".join(parts))


class Executor(Protocol):
    def run(self, calls: list[Call], now: int | None) -> list[Any]: ...

    async def arun(self, calls: list[Call], now: int | None) -> list[Any]: ...


def drive(flow: Flow[T], executor: Executor, now: int | None) -> T:
    """Run ``flow`` to its end with blocking I/O."""
    return run_flow(flow, lambda batch: executor.run(batch, now))


def adrive(flow: Flow[T], executor: Executor, now: int | None) -> Coroutine[Any, Any, T]:
    """Run ``flow`` to its end with asyncio: the coroutine to await (not a coroutine
    itself: no frame of its own to resume after every batch)."""
    return arun_flow(flow, lambda batch: executor.arun(batch, now))


def normalize(reply: Any) -> Any:
    """A script reply as the twins give it: text as ``str`` (replies are flat lists)."""
    if type(reply) is list:
        return [r.decode("utf-8", "surrogateescape") if type(r) is bytes else r for r in reply]
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "surrogateescape")
    return reply


def _clock_us() -> int:
    return time.time_ns() // 1000


class MemoryExecutor:
    """Runs the Python twins in-process: thread-safe, asyncio-safe, bounded.

    The twins never block while the lock is held, so ``arun`` calls ``run``.
    """

    def __init__(self, max_keys: int = 100_000, *, clock: Callable[[], int] | None = None) -> None:
        self.store = MemoryStore(max_keys)
        self._lock = threading.Lock()
        self._clock = clock or _clock_us

    def run(self, calls: list[Call], now: int | None) -> list[Any]:
        out = []
        with self._lock:
            at = self._clock() if now is None else now
            for call in calls:
                script = twin.SCRIPTS[call.script]
                out.append(script(self.store, list(call.keys), at, [str(a) for a in call.args]))
            self.store.sweep(at)
        return out

    async def arun(self, calls: list[Call], now: int | None) -> list[Any]:
        return self.run(calls, now)

"""Running session scripts: sans-I/O flows, two drivers, two executors.

Every store operation is written once, as a generator (a *flow*) that yields a
batch of script calls, receives their replies, and returns a result. A batch is
one round trip: one EVALSHA, or several pipelined when they touch different
cluster slots (a session and a user's index). :func:`drive` steps a flow with
blocking I/O and :func:`adrive` with asyncio, so the sync and async APIs cannot
drift apart.

Executors do the I/O: :class:`RedisExecutor` sends the Lua scripts, and
:class:`MemoryExecutor` runs their Python twins (``twin.py``) under a lock.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol, TypeVar

import redis
import redis.asyncio
from redis.exceptions import NoScriptError

from ..scripts import Script, read_lua
from . import twin
from ._memory import Keyspace

_timeout = getattr(asyncio, "timeout", None)  # Python >= 3.11

__all__ = ["Call", "Executor", "Flow", "MemoryExecutor", "RedisExecutor", "adrive", "drive",
           "session_script"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One script call: ``script`` is a name in ``lua/`` (``session_load``, ...)."""

    script: str
    keys: tuple[str, ...]
    #: ARGV after ``now`` (ARGV[1]), which the executor adds.
    args: tuple[str | int, ...]


#: A store operation: yields batches of calls, is sent their replies, returns a result.
Flow = Generator[list[Call], list[Any], T]


@cache
def session_script(name: str) -> Script:
    """A session script: the shared prelude, then the operation."""
    return Script.from_source(name, read_lua("session_prelude") + "\n" + read_lua(name))


class Executor(Protocol):
    def run(self, calls: list[Call], now: int | None) -> list[Any]: ...

    async def arun(self, calls: list[Call], now: int | None) -> list[Any]: ...


def drive(flow: Flow[T], executor: Executor, now: int | None) -> T:
    """Run ``flow`` to its end with blocking I/O."""
    try:
        batch = next(flow)
        while True:
            batch = flow.send(executor.run(batch, now))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def adrive(flow: Flow[T], executor: Executor, now: int | None) -> T:
    """Run ``flow`` to its end with asyncio."""
    try:
        batch = next(flow)
        while True:
            batch = flow.send(await executor.arun(batch, now))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def normalize(reply: Any) -> Any:
    """A script reply as the twins give it: text as ``str`` (replies are flat lists)."""
    if type(reply) is list:
        return [r.decode("utf-8", "surrogateescape") if type(r) is bytes else r for r in reply]
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "surrogateescape")
    return reply


def pack(args: Sequence[Any]) -> bytes:
    """One command in RESP, the Redis protocol: an array of bulk strings.

    The scripts' arguments are ``str`` and ``int`` only; packing them here costs a
    fraction of redis-py's general encoder, which matters once per request.
    """
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if type(a) is bytes else str(a).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


def _clock_us() -> int:
    return time.time_ns() // 1000


class MemoryExecutor:
    """Runs the Python twins in-process: thread-safe, asyncio-safe, bounded.

    The twins never block while the lock is held, so ``arun`` calls ``run``.
    """

    def __init__(self, max_keys: int = 100_000, *, clock: Callable[[], int] | None = None
                 ) -> None:
        self.store = Keyspace(max_keys)
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


class RedisExecutor:
    """Runs the Lua scripts on Redis: one EVALSHA per call, one round trip per batch.

    The sync side goes through the redis-py client. The async side talks to
    redis-py connections it keeps idle between calls (taken from the client's
    pool settings), skipping the client's per-command machinery: that halves
    the cost of a round trip under asyncio. Cluster and other clients without a
    plain connection pool use ``execute_command`` / pipelines instead.
    """

    def __init__(self, client: Callable[[], Any], aclient: Callable[[], Any]) -> None:
        self._client = client
        self._aclient = aclient
        #: Idle connections, per event loop (a connection belongs to the loop that
        #: opened it); a loop's connections go when the loop is garbage-collected.
        self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, deque[Any]] = (
            weakref.WeakKeyDictionary())
        self._fast: bool | None = None
        self._timeout: float | None = None

    # -- sync --------------------------------------------------------------------------

    def run(self, calls: list[Call], now: int | None) -> list[Any]:
        client = self._client()
        if len(calls) == 1:
            return [normalize(_eval(client, calls[0], now))]
        pipe = client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command("EVALSHA", *_command(call, now))
        replies = pipe.execute(raise_on_error=False)
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):  # nothing ran: run it now, alone
                replies[i] = _eval(client, calls[i], now)
            elif isinstance(reply, Exception):
                raise reply
        return [normalize(r) for r in replies]

    # -- async -------------------------------------------------------------------------

    async def arun(self, calls: list[Call], now: int | None) -> list[Any]:
        aclient = self._aclient()
        if self._fast is None:
            self._fast = (type(aclient) is redis.asyncio.Redis
                          and not aclient.single_connection_client)
        if not self._fast:
            return await self._arun_client(aclient, calls, now)
        loop = asyncio.get_running_loop()
        idle = self._idle.get(loop)
        if idle is None:
            idle = self._idle[loop] = deque()
        conn = idle.pop() if idle else self._connect(aclient)
        try:
            if self._timeout is None:
                replies = await _arun_conn(conn, calls, now)
            elif _timeout is not None:
                async with _timeout(self._timeout):
                    replies = await _arun_conn(conn, calls, now)
            else:  # Python 3.10
                replies = await asyncio.wait_for(_arun_conn(conn, calls, now), self._timeout)
        except BaseException:
            # A reply may still be on its way: this connection cannot be reused.
            await conn.disconnect()
            raise
        idle.append(conn)
        return replies

    def _connect(self, aclient: Any) -> Any:
        """A connection like the client's, whose round trips are timed as one.

        redis-py times each socket write of a connection with a timeout by running
        it as a task; here the whole round trip gets the client's socket timeout
        instead, which costs a timer, not a task and two loop turns.
        """
        pool = aclient.connection_pool
        options = dict(pool.connection_kwargs)
        self._timeout = options.get("socket_timeout")
        options.setdefault("socket_connect_timeout", self._timeout)
        if options["socket_connect_timeout"] is None:
            options["socket_connect_timeout"] = self._timeout
        options["socket_timeout"] = None
        return pool.connection_class(**options)

    async def _arun_client(self, aclient: Any, calls: list[Call], now: int | None
                           ) -> list[Any]:
        out = []
        for call in calls:  # cluster clients route each call to its slot's node
            args = _command(call, now)
            try:
                reply = await aclient.execute_command("EVALSHA", *args)
            except NoScriptError:
                reply = await aclient.execute_command(
                    "EVAL", session_script(call.script).source, *args[1:])
            out.append(normalize(reply))
        return out

    async def aclose(self) -> None:
        """Close the idle connections (call it when the app shuts down)."""
        loop = asyncio.get_running_loop()
        for other, idle in list(self._idle.items()):
            while idle:
                conn = idle.pop()
                if other is loop:
                    await conn.disconnect()
                else:
                    _abandon(conn)


def _abandon(conn: Any) -> None:
    """Close a connection of another (maybe closed) event loop, as far as possible."""
    writer = getattr(conn, "_writer", None)
    try:
        if writer is not None:
            writer.transport.abort()
    except Exception:  # its loop is gone: nothing more can be done
        pass


def _command(call: Call, now: int | None) -> tuple[Any, ...]:
    return (session_script(call.script).sha, len(call.keys), *call.keys,
            "" if now is None else now, *call.args)


def _eval(client: Any, call: Call, now: int | None) -> Any:
    args = _command(call, now)
    try:
        return client.execute_command("EVALSHA", *args)
    except NoScriptError:
        return client.execute_command("EVAL", session_script(call.script).source, *args[1:])


async def _arun_conn(conn: Any, calls: Sequence[Call], now: int | None) -> list[Any]:
    await conn.send_packed_command(
        b"".join(pack(("EVALSHA", *_command(call, now))) for call in calls))
    replies: list[Any] = []
    for _ in calls:
        try:
            replies.append(await conn.read_response())
        except NoScriptError as exc:  # nothing ran for this call; the others still reply
            replies.append(exc)
    for i, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            call = calls[i]
            await conn.send_packed_command(
                pack(("EVAL", session_script(call.script).source, *_command(call, now)[1:])))
            replies[i] = await conn.read_response()
    return [normalize(r) for r in replies]

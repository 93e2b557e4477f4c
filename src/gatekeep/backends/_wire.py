"""The lean round trip under :class:`~gatekeep.backends.RedisBackend`.

A decision is one EVALSHA, made on every request: redis-py's general command
path (retry wrapper, response callbacks, per-command observability, and under
asyncio a task per socket write when a timeout is set) costs as much as the
script itself. For plain ``redis.Redis`` / ``redis.asyncio.Redis`` clients we
take a connection from the client's own pool (its settings, TLS and ACL user
included), send the packed scripts, and read their replies:

- a trip (:class:`~._calls.Trip`: a batch of scripts, maybe a WAIT) is one write
  and one round trip, whatever their number; what to send is decided by the
  call's flow (:mod:`._calls`: NOSCRIPT, EVALSHA_RO), not here, and its bytes are
  packed by :mod:`._resp`;
- nothing is retried: a timeout after the server ran a script must not run it
  twice; any I/O error drops the connection (a reply may be in flight);
- asyncio: idle connections are kept per event loop (a connection belongs to
  the loop that opened it), and one round trip gets one timeout, the client's
  ``socket_timeout``. The deadlines of one loop's round trips share one timer
  (:class:`Loop`): scheduling and cancelling a timer per round trip, as
  ``asyncio.timeout`` does, cost a tenth of a fast round trip. A connected
  connection's stream is written and its parser read directly (redis-py's
  ``send_packed_command`` / ``read_response`` would add their bookkeeping).

Cluster clients and anything else go through redis-py's pipelines (see
``RedisBackend``).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import weakref
from collections import deque
from collections.abc import Coroutine
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import ConnectionError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._calls import Trip, replies_expected
from ._deadlines import Loop
from ._resp import pack, pack_trip
from ._ssl import SharedSSLContext, sync_class

__all__ = ["AsyncConnections", "SyncConnections", "fast_pool", "pack", "pack_trip", "run_sync"]


class _Nothing:
    pass


_DEAD: weakref.ReferenceType[Any] = weakref.ref(_Nothing())  # a reference to nothing


#: Pools whose connections know their server from their own options. A Sentinel
#: pool's connections ask the pool for the primary: they must come from the pool.
_PLAIN_POOLS = (redis.ConnectionPool, redis.BlockingConnectionPool)
_PLAIN_APOOLS = (redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool)


def fast_pool(client: Any) -> Any:
    """The client's connection pool when the lean path can use it, else None."""
    if (
        type(client) is redis.Redis
        and client.connection is None
        and type(client.connection_pool) in _PLAIN_POOLS
    ):
        return client.connection_pool
    return None


class SyncConnections:
    """Idle connections made like the pool's, kept here: taking one is a
    ``deque.pop`` (atomic, so thread-safe), not the pool's lock and bookkeeping.
    A forked child starts with none (a socket must not be shared across processes).
    """

    def __init__(self, pool: Any) -> None:
        self._options = dict(pool.connection_kwargs)
        # TLS: one SSL context for these connections, not one per connect (see _ssl)
        self._connection_class = sync_class(pool.connection_class, self._options)
        self._idle: deque[Any] = deque()
        self._pid = os.getpid()

    def get(self) -> Any:
        if self._pid != os.getpid():
            self._idle, self._pid = deque(), os.getpid()
        try:
            return self._idle.pop()
        except IndexError:
            return self._connection_class(**self._options)

    def release(self, conn: Any) -> None:
        if self._pid == os.getpid():
            self._idle.append(conn)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().disconnect()


def run_sync(conns: SyncConnections, trip: Trip) -> list[Any]:
    """Do ``trip`` in one round trip on one of ``conns``.

    Returns one reply per command, a ``ResponseError`` in place of a reply for a
    command that failed (the call's flow decides what to do with it).
    """
    conn = conns.get()
    try:
        if _lean_sync(conn):
            replies = _sync_round_trip(conn, trip)
        else:
            replies = _sync_round_trip_public(conn, trip)
    except BaseException:
        conn.disconnect()  # a reply may still be on its way: never reuse it
        raise
    conns.release(conn)
    return replies


def _sync_round_trip(conn: Any, trip: Trip) -> list[Any]:
    """One ``sendall`` on the connection's socket, then the replies read by its own
    parser (redis-py's ``send_packed_command`` and ``read_response`` without their
    per-call bookkeeping: a health check that is off, the host string of an error
    message formatted for every read). The parser returns an error reply as a
    ``ResponseError`` value; socket errors become redis-py's, as its methods raise them."""
    try:
        conn._sock.sendall(pack_trip(trip))
        parser = conn._parser
        return [parser.read_response() for _ in range(replies_expected(trip))]
    except TimeoutError as exc:  # socket.timeout
        raise RedisTimeoutError(f"Timeout reading from {_server(conn)}") from exc
    except OSError as exc:
        raise ConnectionError(f"Error while reading from {_server(conn)} : {exc.args}") from exc


def _sync_round_trip_public(conn: Any, trip: Trip) -> list[Any]:
    """The same through redis-py's public connection methods (which connect it)."""
    conn.send_packed_command([pack_trip(trip)])
    replies: list[Any] = []
    for _ in range(replies_expected(trip)):
        try:
            replies.append(conn.read_response())
        except ResponseError as exc:  # read in full: the connection stays usable
            replies.append(exc)
    return replies


#: redis-py's own sync send and read methods (see _lean_sync).
_OWN_SYNC_IO = (redis.Connection.send_packed_command, redis.Connection.read_response)


def _lean_sync(conn: Any) -> bool:
    """Whether a sync connection's socket and parser may be used directly: it is
    connected (``_sock``), redis-py's own methods would do nothing more (no health
    checks; not overridden by a subclass), and its private ``_sock`` and ``_parser``
    are what :func:`_sync_round_trip` uses (checked once per class, on a connected
    instance: a redis-py that changed them gets the public path, not AttributeError)."""
    if conn.health_check_interval or getattr(conn, "_sock", None) is None:
        return False
    lean = _LEAN_CLASSES.get(type(conn))
    if lean is None:
        lean = _LEAN_CLASSES[type(conn)] = _lean_sync_class(conn)
    return lean


def _lean_sync_class(conn: Any) -> bool:
    cls = type(conn)
    return (
        (getattr(cls, "send_packed_command", None), getattr(cls, "read_response", None))
        == _OWN_SYNC_IO
        and isinstance(conn._sock, socket.socket)
        and callable(getattr(getattr(conn, "_parser", None), "read_response", None))
    )


class AsyncConnections:
    """Idle connections of one ``redis.asyncio.Redis`` client, per event loop."""

    def __init__(self, client: Any) -> None:
        pool = client.connection_pool
        options = dict(pool.connection_kwargs)
        #: The whole round trip's deadline (redis-py would time each write and read).
        self._timeout: float | None = options.get("socket_timeout")
        if options.get("socket_connect_timeout") is None:
            options["socket_connect_timeout"] = self._timeout
        options["socket_timeout"] = None
        self._options = options
        self._connection_class = pool.connection_class
        self._share_ssl = SharedSSLContext().share  # TLS: one context, not one per connection
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Loop] = (
            weakref.WeakKeyDictionary()
        )
        # the last event loop's state, found without a weak-keyed lookup
        self._last: tuple[weakref.ReferenceType[Any], Loop] = (_DEAD, Loop())

    @property
    def timeout(self) -> float | None:
        """Seconds one round trip may take (connecting included), or None: no limit."""
        return self._timeout

    @staticmethod
    def usable(client: Any) -> bool:
        return (
            type(client) is redis.asyncio.Redis
            and not client.single_connection_client
            and type(client.connection_pool) in _PLAIN_APOOLS
        )

    def _loop_state(self, loop: asyncio.AbstractEventLoop) -> Loop:
        ref, state = self._last
        if ref() is not loop:
            state = self._loops.get(loop)  # type: ignore[assignment]
            if state is None:
                state = self._loops[loop] = Loop()
            self._last = (weakref.ref(loop), state)
        return state

    async def run(self, trip: Trip) -> list[Any]:
        loop = asyncio.get_running_loop()
        state = self._loop_state(loop)
        idle = state.idle
        conn = idle.pop() if idle else self._share_ssl(self._connection_class(**self._options))
        timeout = self._timeout
        if timeout is None:
            watch = None
        else:
            task = asyncio.current_task()
            if task is None:
                return await self._run_waiting(conn, idle, trip, timeout)
            watch = state.watch(loop, task, timeout)
        try:
            replies = await _connected_trip(conn, trip)
        except BaseException as exc:
            expired = watch is not None and watch.close(exc)
            await conn.disconnect()  # a reply may still be on its way
            if expired:
                raise TimeoutError from exc
            raise
        if watch is not None:
            watch.close(None)
        idle.append(conn)
        return replies

    async def _run_waiting(
        self, conn: Any, idle: deque[Any], trip: Trip, timeout: float
    ) -> list[Any]:
        """The same with ``asyncio.wait_for`` (outside a task)."""
        try:
            replies = await asyncio.wait_for(_connected_trip(conn, trip), timeout)
        except BaseException:
            await conn.disconnect()
            raise
        idle.append(conn)
        return replies

    async def aclose(self) -> None:
        """Close the idle connections (those of other event loops as far as possible)."""
        loop = asyncio.get_running_loop()
        for other, state in list(self._loops.items()):
            idle = state.idle
            while idle:
                conn = idle.pop()
                if other is loop:
                    await conn.disconnect()
                else:
                    _abandon(conn)


def _connected_trip(conn: Any, trip: Trip) -> Coroutine[Any, Any, list[Any]]:
    """The round trip for ``conn``: the lean one when it is connected and nothing of
    redis-py's would do more, else through its public methods (which connect it).
    Not itself a coroutine: no frame of its own to resume after every reply."""
    if conn.is_connected and _lean(conn):  # is_connected: its reader and writer are there
        return _round_trip(conn, trip)
    return _round_trip_public(conn, trip)


#: redis-py's own send and read methods: a connection class that overrides either
#: (to count, trace, or change them) is always driven through them.
_OWN_IO = (redis.asyncio.Connection.send_packed_command, redis.asyncio.Connection.read_response)


def _lean(conn: Any) -> bool:
    """Whether a connected connection's stream and parser may be used directly:
    redis-py's own methods would do nothing more (no health checks, which they
    schedule; not overridden by a subclass), and its private ``_writer`` and
    ``_parser`` are what :func:`_round_trip` uses (checked once per class: a
    redis-py that renamed or changed them gets the public path, not AttributeError)."""
    lean = _LEAN_CLASSES.get(type(conn))
    if lean is None:
        lean = _LEAN_CLASSES[type(conn)] = _lean_class(conn)
    return lean and not conn.health_check_interval


#: Per connection class: whether :func:`_lean_class` found the lean path usable.
_LEAN_CLASSES: dict[type, bool] = {}


def _lean_class(conn: Any) -> bool:
    """Judged on a connected instance (its ``_writer`` exists only once connected)."""
    cls = type(conn)
    return (
        (getattr(cls, "send_packed_command", None), getattr(cls, "read_response", None)) == _OWN_IO
        and isinstance(getattr(conn, "_writer", None), asyncio.StreamWriter)
        and inspect.iscoroutinefunction(
            getattr(getattr(conn, "_parser", None), "read_response", None)
        )
    )


async def _round_trip(conn: Any, trip: Trip) -> list[Any]:
    """One write to the connection's stream, then the replies read by its own parser
    (redis-py's ``send_packed_command`` and ``read_response`` without their per-call
    bookkeeping). The parser returns an error reply as a ``ResponseError`` value."""
    try:
        conn._writer.write(pack_trip(trip))
        parser = conn._parser
        replies = []
        for _ in range(replies_expected(trip)):  # a loop: no coroutine frame of its own
            replies.append(await parser.read_response())
    except OSError as exc:  # what redis-py's read_response raises for it
        raise ConnectionError(f"Error while reading from {_server(conn)} : {exc.args}") from exc
    return replies


async def _round_trip_public(conn: Any, trip: Trip) -> list[Any]:
    """The same through redis-py's public connection methods."""
    await conn.send_packed_command([pack_trip(trip)])
    replies: list[Any] = []
    for _ in range(replies_expected(trip)):
        try:
            replies.append(await conn.read_response())
        except ResponseError as exc:
            replies.append(exc)
    return replies


def _server(conn: Any) -> str:
    host, port = getattr(conn, "host", None), getattr(conn, "port", None)
    return f"{host}:{port}" if host else "redis"


def _abandon(conn: Any) -> None:
    """Close a connection of another (maybe closed) event loop, as far as possible."""
    writer = getattr(conn, "_writer", None)
    try:
        if writer is not None:
            writer.transport.abort()
    except Exception:  # its loop is gone: nothing more can be done
        pass

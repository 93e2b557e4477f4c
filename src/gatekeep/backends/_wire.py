"""The lean round trip under :class:`~gatekeep.backends.RedisBackend`.

A decision is one EVALSHA, made on every request: redis-py's general command
path (retry wrapper, response callbacks, per-command observability, and under
asyncio a task per socket write when a timeout is set) costs as much as the
script itself. For plain ``redis.Redis`` / ``redis.asyncio.Redis`` clients we
take a connection from the client's own pool (its settings, TLS and ACL user
included), send the packed scripts, and read their replies:

- a batch of scripts is one write and one round trip, whatever their number;
- a NOSCRIPT reply means that script did not run, so it alone is sent again
  as EVAL (the server's script cache is empty after a restart or a failover);
- nothing is retried blindly: a timeout after the server ran a script must not
  run it twice; any I/O error drops the connection (a reply may be in flight);
- asyncio: idle connections are kept per event loop (a connection belongs to
  the loop that opened it), and one round trip gets one timeout, the client's
  ``socket_timeout``.

Cluster clients and anything else go through redis-py's ``execute_command`` and
pipelines (see ``RedisBackend``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import NoScriptError, ResponseError

from ..scripts import Script

__all__ = ["AsyncConnections", "ScriptCall", "SyncConnections", "fast_pool", "pack",
           "run_sync"]

#: One script call: the script, its keys, its arguments.
ScriptCall = tuple[Script, Sequence[str], Sequence[Any]]

_timeout = getattr(asyncio, "timeout", None)  # Python >= 3.11

logger = logging.getLogger("gatekeep.redis")


def script_reloaded(script: Script, where: str) -> None:
    """One log line per NOSCRIPT: the server lost its script cache (a restart, a
    failover to a replica, SCRIPT FLUSH); the script is sent again as EVAL."""
    logger.info("gatekeep: %s had no script %s (restart or failover?); sent it again",
                where, script.name, extra={"gatekeep_event": "script_reloaded",
                                           "script": script.name, "sha": script.sha,
                                           "server": where})


def pack(args: Sequence[Any]) -> bytes:
    """One command in RESP, the Redis protocol: an array of bulk strings.

    Script arguments are ``str``, ``bytes`` and ``int`` only; packing them here
    costs a fraction of redis-py's general encoder.
    """
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if type(a) is bytes else str(a).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


def _packed(calls: Sequence[ScriptCall], read_only: bool) -> bytes:
    command = "EVALSHA_RO" if read_only else "EVALSHA"
    return b"".join(pack((command, s.sha, len(k), *k, *a)) for s, k, a in calls)


def _eval(call: ScriptCall, read_only: bool) -> bytes:
    s, k, a = call
    return pack(("EVAL_RO" if read_only else "EVAL", s.source, len(k), *k, *a))


#: Pools whose connections know their server from their own options. A Sentinel
#: pool's connections ask the pool for the primary: they must come from the pool.
_PLAIN_POOLS = (redis.ConnectionPool, redis.BlockingConnectionPool)
_PLAIN_APOOLS = (redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool)


def fast_pool(client: Any) -> Any:
    """The client's connection pool when the lean path can use it, else None."""
    if (type(client) is redis.Redis and client.connection is None
            and type(client.connection_pool) in _PLAIN_POOLS):
        return client.connection_pool
    return None


class SyncConnections:
    """Idle connections made like the pool's, kept here: taking one is a
    ``deque.pop`` (atomic, so thread-safe), not the pool's lock and bookkeeping.
    A forked child starts with none (a socket must not be shared across processes).
    """

    def __init__(self, pool: Any) -> None:
        self._options = dict(pool.connection_kwargs)
        self._connection_class = pool.connection_class
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


def run_sync(conns: SyncConnections, calls: Sequence[ScriptCall], read_only: bool = False
             ) -> list[Any]:
    """Run ``calls`` in one round trip on one of ``conns``.

    Returns one reply per call, a ``ResponseError`` in place of a reply for a
    script that failed (the caller decides what to raise).
    """
    conn = conns.get()
    try:
        conn.send_packed_command([_packed(calls, read_only)])
        replies: list[Any] = []
        for _ in calls:
            try:
                replies.append(conn.read_response())
            except ResponseError as exc:  # read in full: the connection stays usable
                replies.append(exc)
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):  # nothing ran for this call
                script_reloaded(calls[i][0], _server(conn))
                conn.send_packed_command([_eval(calls[i], read_only)])
                try:
                    replies[i] = conn.read_response()
                except ResponseError as exc:
                    replies[i] = exc
    except BaseException:
        conn.disconnect()  # a reply may still be on its way: never reuse it
        raise
    conns.release(conn)
    return replies


class AsyncConnections:
    """Idle connections of one ``redis.asyncio.Redis`` client, per event loop."""

    def __init__(self, client: Any) -> None:
        pool = client.connection_pool
        options = dict(pool.connection_kwargs)
        #: The whole round trip's deadline (redis-py would time each write and read).
        self.timeout: float | None = options.get("socket_timeout")
        if options.get("socket_connect_timeout") is None:
            options["socket_connect_timeout"] = self.timeout
        options["socket_timeout"] = None
        self._options = options
        self._connection_class = pool.connection_class
        self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, deque[Any]] = (
            weakref.WeakKeyDictionary())

    @staticmethod
    def usable(client: Any) -> bool:
        return (type(client) is redis.asyncio.Redis and not client.single_connection_client
                and type(client.connection_pool) in _PLAIN_APOOLS)

    async def run(self, calls: Sequence[ScriptCall], read_only: bool = False) -> list[Any]:
        loop = asyncio.get_running_loop()
        idle = self._idle.get(loop)
        if idle is None:
            idle = self._idle[loop] = deque()
        conn = idle.pop() if idle else self._connection_class(**self._options)
        try:
            if self.timeout is None:
                replies = await _round_trip(conn, calls, read_only)
            elif _timeout is not None:
                async with _timeout(self.timeout):
                    replies = await _round_trip(conn, calls, read_only)
            else:  # Python 3.10
                replies = await asyncio.wait_for(_round_trip(conn, calls, read_only),
                                                 self.timeout)
        except BaseException:
            await conn.disconnect()  # a reply may still be on its way
            raise
        idle.append(conn)
        return replies

    async def aclose(self) -> None:
        """Close the idle connections (those of other event loops as far as possible)."""
        loop = asyncio.get_running_loop()
        for other, idle in list(self._idle.items()):
            while idle:
                conn = idle.pop()
                if other is loop:
                    await conn.disconnect()
                else:
                    _abandon(conn)


async def _round_trip(conn: Any, calls: Sequence[ScriptCall], read_only: bool) -> list[Any]:
    await conn.send_packed_command([_packed(calls, read_only)])
    replies: list[Any] = []
    for _ in calls:
        try:
            replies.append(await conn.read_response())
        except ResponseError as exc:
            replies.append(exc)
    for i, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            script_reloaded(calls[i][0], _server(conn))
            await conn.send_packed_command([_eval(calls[i], read_only)])
            try:
                replies[i] = await conn.read_response()
            except ResponseError as exc:
                replies[i] = exc
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

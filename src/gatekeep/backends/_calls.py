"""The script call, written once: what every Redis call of gatekeep does, without I/O.

A call is a batch of scripts sent in one round trip (a :class:`Trip`). The flow
:func:`script_flow` yields the trips it needs and is sent their replies:

- scripts go by EVALSHA (EVALSHA_RO for read-only ones, to a replica);
- a NOSCRIPT reply means that script did not run: it alone goes again, as EVAL,
  in a second trip (the server's script cache is empty after a restart or a
  failover), so nothing is ever run twice;
- a server without EVALSHA_RO (Redis < 7) gets the batch again as EVALSHA;
- a durable write ends its trip with ``WAIT replicas ms`` and reports how many
  replicas acknowledged it.

Nothing is retried blindly: a timeout or a connection error is raised to the
caller, whose breaker judges it by :mod:`gatekeep.outage`. The trips are done by
:class:`~gatekeep.backends.RedisBackend`'s two drivers (sync and asyncio, each
with a lean path of its own for plain clients, see :mod:`._wire`, and redis-py's
pipelines for the others: Sentinel, Cluster, clients of other classes). Cluster
clients follow MOVED and ASK themselves; a call whose keys span several slots is
split before it gets here (:mod:`._split`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, NamedTuple, TypeVar

from redis.exceptions import NoScriptError, ResponseError

from ..flows import arun_flow, run_flow
from ..scripts import Script

__all__ = [
    "CallFlow",
    "Command",
    "Replies",
    "ScriptCall",
    "Trip",
    "answered",
    "call_async",
    "call_sync",
    "commands",
    "every_reply",
    "first",
    "raise_first",
    "script_flow",
    "script_reloaded",
    "settled",
]

#: One script call: the script, its keys, its arguments.
ScriptCall = tuple[Script, Sequence[str], Sequence[Any]]

logger = logging.getLogger("gatekeep.redis")


class Command(Script):
    """A plain Redis command in a trip, in place of a script: ``(Command.of("HGETALL"),
    keys, args)`` sends ``HGETALL *keys *args``, one command, one reply (never NOSCRIPT;
    the same command in a read-only trip). For a read that needs no script (no write
    to keep atomic): a few commands pipelined cost the server less than one script."""

    __slots__ = ()

    @classmethod
    def of(cls, name: str) -> Command:
        return cls(name, "", "")


class Trip(NamedTuple):
    """One round trip: ``calls`` by SHA (or by their source), then WAIT if asked."""

    calls: Sequence[ScriptCall]
    #: EVALSHA_RO / EVAL_RO, on a replica where there is one.
    read_only: bool = False
    #: EVAL with the script's source: the server did not know it.
    source: bool = False
    #: ``(replicas, milliseconds)``: end with WAIT; its reply comes last.
    wait: tuple[int, int] | None = None
    #: The trip in RESP, when the caller packed it once for many calls (see
    #: ``RedisBackend``); else None and the driver packs it.
    packed: bytes | None = None


class Replies(list[Any]):
    """One reply per call (a ``ResponseError`` in place of a failed script's reply);
    ``acked``: the replicas that acknowledged a durable call (-1: none asked)."""

    acked = -1


T = TypeVar("T")

#: The flow of one call: yields trips, is sent their replies, returns its result.
CallFlow = Generator[Trip, list[Any], T]


def script_reloaded(script: Script, where: str) -> None:
    """One log line per NOSCRIPT: the server lost its script cache (a restart, a
    failover to a replica, SCRIPT FLUSH); the script is sent again as EVAL."""
    logger.info(
        "gatekeep: %s had no script %s (restart or failover?); sent it again",
        where,
        script.name,
        extra={
            "gatekeep_event": "script_reloaded",
            "script": script.name,
            "sha": script.sha,
            "server": where,
        },
    )


def script_flow(
    calls: Sequence[ScriptCall],
    finish: Callable[[list[Any]], T],
    read_only: bool = False,
    wait: tuple[int, int] | None = None,
    where: str = "redis",
) -> CallFlow[T]:
    """Run ``calls`` in one round trip (two after the server lost its script cache);
    the result is ``finish(replies)``: one reply per call, a ``ResponseError`` in place
    of a failed script's (a :class:`Replies`, with ``acked``, when ``wait`` is given)."""
    trip = Trip(calls, read_only, False, wait)
    return (yield from answered(trip, (yield trip), finish, where))


def answered(
    trip: Trip, replies: list[Any], finish: Callable[[list[Any]], T], where: str
) -> CallFlow[T]:
    """The rest of a call once its first ``trip`` (by SHA) was answered ``replies``."""
    calls, read_only, wait = trip.calls, trip.read_only, trip.wait
    if wait is not None:
        replies = Replies(replies)
        replies.acked = _acked(replies)
    for reply in replies:
        if isinstance(reply, NoScriptError):
            replies = yield from _reload(calls, replies, read_only, wait, where)
            break
    if read_only:
        for reply in replies:
            if _unknown_command(reply):  # Redis < 7: no EVALSHA_RO
                return (yield from script_flow(calls, finish, False, wait, where))
    return finish(replies)


def settled(trip: Trip, replies: list[Any]) -> bool:
    """Whether :func:`answered` would only return ``finish(replies)``: no error reply
    (NOSCRIPT, no EVALSHA_RO, a script's error) and no WAIT reply to take off."""
    if trip.wait is not None:
        return False
    for reply in replies:  # noqa: SIM110  (a loop: all() would make a generator per call)
        if isinstance(reply, ResponseError):
            return False
    return True


def call_sync(
    trip: Trip, io: Callable[[Trip], list[Any]], finish: Callable[[list[Any]], T], where: str
) -> T:
    """Drive one script call whose first trip is ``trip`` (the sync driver): the usual
    answer straight to ``finish``, anything else through :func:`answered`. (The same as
    ``run_flow(script_flow(...), io)``, without stepping a generator per call.)"""
    replies = io(trip)
    if settled(trip, replies):
        return finish(replies)
    return run_flow(answered(trip, replies, finish, where), io)


async def call_async(
    trip: Trip,
    io: Callable[[Trip], Awaitable[list[Any]]],
    finish: Callable[[list[Any]], T],
    where: str,
) -> T:
    """The same, awaiting each trip (the async driver)."""
    replies = await io(trip)
    if settled(trip, replies):
        return finish(replies)
    return await arun_flow(answered(trip, replies, finish, where), io)


def _reload(
    calls: Sequence[ScriptCall],
    replies: list[Any],
    read_only: bool,
    wait: tuple[int, int] | None,
    where: str,
) -> CallFlow[list[Any]]:
    """Nothing ran for the calls answered NOSCRIPT: send them again, as EVAL."""
    missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
    for i in missing:
        script_reloaded(calls[i][0], where)
    more = yield Trip([calls[i] for i in missing], read_only, True, wait)
    if wait is not None:
        replies.acked = _acked(more)  # type: ignore[attr-defined]  # a Replies
    for i, reply in zip(missing, more, strict=True):
        replies[i] = reply
    return replies


def every_reply(replies: list[Any]) -> list[Any]:
    """``finish`` for a call that wants its replies as they are."""
    return replies


def commands(trip: Trip) -> list[tuple[Any, ...]]:
    """The trip as redis-py commands (for ``execute_command`` and pipelines)."""
    if trip.source:
        name = "EVAL_RO" if trip.read_only else "EVAL"
        out = [(name, s.source, len(k), *k, *a) for s, k, a in trip.calls]
    else:
        name = "EVALSHA_RO" if trip.read_only else "EVALSHA"
        out = [
            (s.name, *k, *a) if type(s) is Command else (name, s.sha, len(k), *k, *a)
            for s, k, a in trip.calls
        ]
    if trip.wait is not None:
        out.append(("WAIT", *trip.wait))
    return out


def replies_expected(trip: Trip) -> int:
    return len(trip.calls) + (trip.wait is not None)


def first(replies: list[Any]) -> Any:
    """The reply of a one-script call; the script's error raised."""
    reply = replies[0]
    if isinstance(reply, Exception):
        raise reply
    return reply


def raise_first(replies: list[Any]) -> list[Any]:
    """The replies; the first script error among them raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _acked(replies: list[Any]) -> int:
    acked = replies.pop()
    if isinstance(acked, Exception):
        raise acked
    return int(acked)


def _unknown_command(reply: Any) -> bool:
    return isinstance(reply, ResponseError) and "unknown command" in str(reply).lower()

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
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from ..scripts import Script

__all__ = ["CallFlow", "Replies", "ScriptCall", "Trip", "commands", "first", "raise_first",
           "script_flow", "script_reloaded"]

#: One script call: the script, its keys, its arguments.
ScriptCall = tuple[Script, Sequence[str], Sequence[Any]]

logger = logging.getLogger("gatekeep.redis")


@dataclass(frozen=True, slots=True)
class Trip:
    """One round trip: ``calls`` by SHA (or by their source), then WAIT if asked."""

    calls: Sequence[ScriptCall]
    #: EVALSHA_RO / EVAL_RO, on a replica where there is one.
    read_only: bool = False
    #: EVAL with the script's source: the server did not know it.
    source: bool = False
    #: ``(replicas, milliseconds)``: end with WAIT; its reply comes last.
    wait: tuple[int, int] | None = None


class Replies(list[Any]):
    """One reply per call (a ``ResponseError`` in place of a failed script's reply);
    ``acked``: the replicas that acknowledged a durable call (-1: none asked)."""

    acked = -1


#: The flow of one call: yields trips, is sent their replies, returns the replies.
CallFlow = Generator[Trip, list[Any], Replies]


def script_reloaded(script: Script, where: str) -> None:
    """One log line per NOSCRIPT: the server lost its script cache (a restart, a
    failover to a replica, SCRIPT FLUSH); the script is sent again as EVAL."""
    logger.info("gatekeep: %s had no script %s (restart or failover?); sent it again",
                where, script.name, extra={"gatekeep_event": "script_reloaded",
                                           "script": script.name, "sha": script.sha,
                                           "server": where})


def script_flow(calls: Sequence[ScriptCall], read_only: bool = False,
                wait: tuple[int, int] | None = None, where: str = "redis") -> CallFlow:
    """Run ``calls`` in one round trip (two after the server lost its script cache)."""
    replies = Replies((yield from _trip(Trip(calls, read_only, False, wait))))
    if wait is not None:
        replies.acked = _acked(replies)
    missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
    if missing:  # nothing ran for those: send them again, as EVAL
        for i in missing:
            script_reloaded(calls[i][0], where)
        more = yield from _trip(Trip([calls[i] for i in missing], read_only, True, wait))
        if wait is not None:
            replies.acked = _acked(more)
        for i, reply in zip(missing, more, strict=True):
            replies[i] = reply
    if read_only and any(_unknown_command(r) for r in replies):  # Redis < 7: no EVALSHA_RO
        return (yield from script_flow(calls, False, wait, where))
    return replies


def _trip(trip: Trip) -> Generator[Trip, list[Any], list[Any]]:
    """The replies of one trip. redis-py raises the error reply of a lone command
    (where no pipeline is used): it is that command's reply."""
    try:
        return (yield trip)
    except ResponseError as exc:
        if len(trip.calls) == 1 and trip.wait is None:
            return [exc]
        raise


def commands(trip: Trip) -> list[tuple[Any, ...]]:
    """The trip as redis-py commands (for ``execute_command`` and pipelines)."""
    if trip.source:
        name = "EVAL_RO" if trip.read_only else "EVAL"
        out = [(name, s.source, len(k), *k, *a) for s, k, a in trip.calls]
    else:
        name = "EVALSHA_RO" if trip.read_only else "EVALSHA"
        out = [(name, s.sha, len(k), *k, *a) for s, k, a in trip.calls]
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

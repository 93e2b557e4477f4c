"""What :class:`~gatekeep.backends.RedisBackend` asks of redis-py's own client API:
a trip through its commands and pipelines (for Sentinel, Cluster and clients of other
classes, where the lean round trip of :mod:`._wire` does not apply), the Sentinel
connections a client holds, and a URL fit for a log line."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any

from redis.exceptions import ResponseError

from ._calls import Trip, commands

__all__ = ["masked", "sentinels_of", "via_client"]


def masked(url: str) -> str:
    """``url`` without its password (``scheme://***@host...``)."""
    scheme, sep, rest = url.partition("://")
    _, at, tail = rest.rpartition("@")
    return f"{scheme}{sep}***@{tail}" if at else url


def sentinels_of(client: Any) -> list[Any]:
    """The Sentinel connections of a client made by ``Sentinel.master_for`` (or none)."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    return list(getattr(manager, "sentinels", ()))


def via_client(client: Any, trip: Trip) -> Any:
    """One trip through redis-py's own commands (Sentinel, Cluster, clients of other
    classes): the replies, or (an asyncio client) an awaitable of them, an error reply
    in place of its command's reply. One command goes alone (a cluster client retries
    TRYAGAIN quicker than its pipeline)."""
    todo = commands(trip)
    if len(todo) == 1:
        try:
            reply = client.execute_command(*todo[0])
        except ResponseError as exc:
            return [exc]
        return _alisted(reply) if inspect.isawaitable(reply) else [reply]
    pipe = client.pipeline(transaction=False)
    for command in todo:
        pipe.execute_command(*command)
    return pipe.execute(raise_on_error=False)


async def _alisted(reply: Awaitable[Any]) -> list[Any]:
    try:
        return [await reply]
    except ResponseError as exc:
        return [exc]

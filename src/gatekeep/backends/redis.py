"""The Redis backend: each decision is one EVALSHA (EVAL once after NOSCRIPT).

Works with a URL or with redis-py clients you pass: ``redis.Redis``,
``redis.asyncio.Redis``, a cluster client, or a Sentinel master.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import NoScriptError

from ..scripts import Script
from .base import Plan

__all__ = ["RedisBackend"]

_ASYNC_TYPES: tuple[type, ...] = (redis.asyncio.Redis, redis.asyncio.RedisCluster)


class RedisBackend:
    """Limiter state in Redis (or Valkey), shared by every process that uses it.

    >>> backend = RedisBackend("redis://localhost:6379/0")        # doctest: +SKIP
    >>> backend = RedisBackend(redis.Redis(), aclient=redis.asyncio.Redis())  # doctest: +SKIP

    With a URL, the sync and async clients are made on first use. With clients,
    pass the sync one, the async one (``aclient=``), or both. Scripts run by
    EVALSHA; after a restart or a failover the server's script cache is empty and
    the first call falls back to EVAL, which runs and caches the script at once
    (the NOSCRIPT reply means nothing ran, so this is not a retry of a write).
    """

    def __init__(
        self,
        client: redis.Redis | redis.asyncio.Redis | str | Any | None = None,
        *,
        aclient: redis.asyncio.Redis | Any | None = None,
        **client_options: Any,
    ) -> None:
        self.url: str | None = None
        self._client: Any = None
        self._aclient: Any = aclient
        self._options = client_options
        if isinstance(client, str):
            if not client.startswith(("redis://", "rediss://", "unix://", "valkey://",
                                      "valkeys://")):
                raise ValueError(
                    f"Redis URL {client!r} must start with redis://, rediss:// or unix://"
                )
            self.url = client
        elif client is None:
            if aclient is None:
                raise ValueError("RedisBackend needs a URL, a redis-py client, or aclient=")
        elif isinstance(client, _ASYNC_TYPES):
            if aclient is not None:
                raise ValueError("pass the sync client first and the async one as aclient=")
            self._aclient = client
        else:
            self._client = client
        if client_options and self.url is None:
            raise ValueError("client options apply only when RedisBackend builds its clients "
                             "from a URL")

    # -- clients ---------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.url is None:
                raise RuntimeError("this RedisBackend was given only an async client; "
                                   "use AsyncLimiter, or pass a sync client too")
            self._client = redis.Redis.from_url(_redis_url(self.url), **self._options)
        return self._client

    @property
    def aclient(self) -> Any:
        if self._aclient is None:
            if self.url is None:
                raise RuntimeError("this RedisBackend was given only a sync client; "
                                   "use Limiter, or pass aclient= too")
            self._aclient = redis.asyncio.Redis.from_url(_redis_url(self.url), **self._options)
        return self._aclient

    # -- generic scripts (limiters, sessions) -------------------------------------

    def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` in one round trip (two after the server lost its script cache)."""
        try:
            return self.client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return self.client.execute_command("EVAL", script.source, len(keys), *keys, *args)

    async def aeval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await self.aclient.execute_command(
                "EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.aclient.execute_command(
                "EVAL", script.source, len(keys), *keys, *args)

    def eval_many(self, script: Script, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
                  ) -> list[Any]:
        """Run ``script`` once per (keys, args) in one pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        replies = pipe.execute(raise_on_error=False)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            # Nothing ran for these: load the script once and run them again.
            self.client.execute_command("SCRIPT", "LOAD", script.source)
            pipe = self.client.pipeline(transaction=False)
            for i in missing:
                keys, args = calls[i]
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            for i, reply in zip(missing, pipe.execute(raise_on_error=False), strict=False):
                replies[i] = reply
        return _raise_first(replies)

    async def aeval_many(self, script: Script,
                         calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        pipe = self.aclient.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        replies = await pipe.execute(raise_on_error=False)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            await self.aclient.execute_command("SCRIPT", "LOAD", script.source)
            pipe = self.aclient.pipeline(transaction=False)
            for i in missing:
                keys, args = calls[i]
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            for i, reply in zip(missing, await pipe.execute(raise_on_error=False), strict=False):
                replies[i] = reply
        return _raise_first(replies)

    # -- limiter backend protocol ----------------------------------------------------

    def limit(self, plan: Plan, keys: list[str], now: int | None, mode: str, cost: int
              ) -> list[int]:
        return self.eval(plan.algorithm.script, keys, (_now(now), mode, cost, *plan.flat))  # type: ignore[no-any-return]

    def limit_many(self, plan: Plan, keys: Sequence[list[str]], now: int | None, mode: str,
                   cost: int) -> list[list[int]]:
        args = (_now(now), mode, cost, *plan.flat)
        return self.eval_many(plan.algorithm.script, [(k, args) for k in keys])

    def delete(self, keys: list[str]) -> None:
        if keys:
            self.client.delete(*keys)

    async def alimit(self, plan: Plan, keys: list[str], now: int | None, mode: str, cost: int
                     ) -> list[int]:
        return await self.aeval(plan.algorithm.script, keys,  # type: ignore[no-any-return]
                                (_now(now), mode, cost, *plan.flat))

    async def alimit_many(self, plan: Plan, keys: Sequence[list[str]], now: int | None,
                          mode: str, cost: int) -> list[list[int]]:
        args = (_now(now), mode, cost, *plan.flat)
        return await self.aeval_many(plan.algorithm.script, [(k, args) for k in keys])

    async def adelete(self, keys: list[str]) -> None:
        if keys:
            await self.aclient.delete(*keys)

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.aclose()

    def __repr__(self) -> str:
        where = self.url or type(self._client or self._aclient).__name__
        return f"RedisBackend({where!r})"


def _now(now: int | None) -> int | str:
    return "" if now is None else now


def _redis_url(url: str) -> str:
    # valkey:// is what Valkey's docs use; redis-py knows it as redis://.
    if url.startswith("valkey://"):
        return "redis://" + url[len("valkey://"):]
    if url.startswith("valkeys://"):
        return "rediss://" + url[len("valkeys://"):]
    return url


def _raise_first(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies

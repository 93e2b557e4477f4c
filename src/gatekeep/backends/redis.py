"""The Redis backend: each decision is one EVALSHA (EVAL once after NOSCRIPT).

Works with a URL (standalone, Sentinel or Cluster: see :mod:`.connect`) or with
redis-py clients you pass: ``redis.Redis``, ``redis.asyncio.Redis``, a cluster
client, or a Sentinel's ``master_for`` (:meth:`RedisBackend.from_sentinel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import NoScriptError, ResponseError

from ..scripts import Script
from .base import Plan
from .connect import ClientFactory

__all__ = ["RedisBackend"]

_ASYNC_TYPES: tuple[type, ...] = (redis.asyncio.Redis, redis.asyncio.RedisCluster)


class RedisBackend:
    """Limiter state in Redis (or Valkey), shared by every process that uses it.

    >>> backend = RedisBackend("redis://localhost:6379/0")        # doctest: +SKIP
    >>> backend = RedisBackend("redis+sentinel://s1:26379,s2:26379/mymaster")  # doctest: +SKIP
    >>> backend = RedisBackend(redis.Redis(), aclient=redis.asyncio.Redis())  # doctest: +SKIP

    With a URL, the sync and async clients are made on first use, and fail fast:
    ``timeout`` seconds (default 0.25) per connect and per reply, no retries (see
    :mod:`gatekeep.backends.connect`). With clients, pass the sync one, the async
    one (``aclient=``), or both, and optionally replica clients for read-only
    scripts (``replica=``, ``areplica=``). Scripts run by EVALSHA; after a restart
    or a failover the server's script cache is empty and the first call falls
    back to EVAL, which runs and caches the script at once (the NOSCRIPT reply
    means nothing ran, so this is not a retry of a write).
    """

    def __init__(
        self,
        client: redis.Redis | redis.asyncio.Redis | str | Any | None = None,
        *,
        aclient: redis.asyncio.Redis | Any | None = None,
        replica: Any | None = None,
        areplica: Any | None = None,
        **client_options: Any,
    ) -> None:
        self.url: str | None = None
        self._factory: ClientFactory | None = None
        self._client: Any = None
        self._aclient: Any = aclient
        self._replica: Any = replica
        self._areplica: Any = areplica
        #: "standalone", "sentinel", "cluster", or "client" (clients were passed).
        self.kind = "client"
        #: Seconds one call may take at most (socket timeouts), when we built the clients.
        self.timeout: float | None = None
        if isinstance(client, str):
            self._factory = ClientFactory(client, client_options)
            self.url = client
            self.kind = self._factory.kind
            self.timeout = self._factory.timeout
            if replica is not None or areplica is not None or aclient is not None:
                raise ValueError("pass a URL or clients, not both")
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

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        """The same as ``RedisBackend(url, **options)``."""
        return cls(url, **options)

    @classmethod
    def from_sentinel(cls, sentinel: Any = None, service_name: str = "mymaster", *,
                      asentinel: Any = None, **client_options: Any) -> RedisBackend:
        """A backend on the primary a ``redis.sentinel.Sentinel`` (and/or
        ``redis.asyncio.sentinel.Sentinel``) names, with its replicas for read-only
        scripts. ``client_options`` go to ``master_for`` / ``slave_for``."""
        if sentinel is None and asentinel is None:
            raise ValueError("pass a redis.sentinel.Sentinel, asentinel=, or both")
        return cls(
            sentinel.master_for(service_name, **client_options) if sentinel else None,
            aclient=asentinel.master_for(service_name, **client_options) if asentinel else None,
            replica=sentinel.slave_for(service_name, **client_options) if sentinel else None,
            areplica=(asentinel.slave_for(service_name, **client_options)
                      if asentinel else None),
        )

    # -- clients ---------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            if self._factory is None:
                raise RuntimeError("this RedisBackend was given only an async client; "
                                   "use AsyncLimiter, or pass a sync client too")
            self._client = self._factory.primary()
        return self._client

    @property
    def aclient(self) -> Any:
        if self._aclient is None:
            if self._factory is None:
                raise RuntimeError("this RedisBackend was given only a sync client; "
                                   "use Limiter, or pass aclient= too")
            self._aclient = self._factory.aprimary()
        return self._aclient

    @property
    def replica(self) -> Any:
        """The client for read-only scripts: a Sentinel replica, else the primary's."""
        if self._replica is None:
            if self._factory is not None and self._factory.kind == "sentinel":
                self._replica = self._factory.replica()
            else:
                return self.client
        return self._replica

    @property
    def areplica(self) -> Any:
        if self._areplica is None:
            if self._factory is not None and self._factory.kind == "sentinel":
                self._areplica = self._factory.areplica()
            else:
                return self.aclient
        return self._areplica

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

    def eval_ro(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a read-only ``script`` by EVALSHA_RO on a replica (the primary when
        there is none). The script must not write: replicas refuse it."""
        client = self.replica
        try:
            return client.execute_command("EVALSHA_RO", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.execute_command("EVAL_RO", script.source, len(keys), *keys, *args)
        except ResponseError as exc:
            if not _unknown_command(exc):
                raise
            return self.eval(script, keys, args)  # Redis < 7: no *_RO commands

    async def aeval_ro(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        client = self.areplica
        try:
            return await client.execute_command(
                "EVALSHA_RO", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.execute_command(
                "EVAL_RO", script.source, len(keys), *keys, *args)
        except ResponseError as exc:
            if not _unknown_command(exc):
                raise
            return await self.aeval(script, keys, args)

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
        for client in (self._client, self._replica):
            if client is not None:
                client.close()
                if self._factory is not None:  # and the Sentinel connections we made
                    for sentinel in _sentinels_of(client):
                        sentinel.close()

    async def aclose(self) -> None:
        for client in (self._aclient, self._areplica):
            if client is not None:
                await client.aclose()
                if self._factory is not None:
                    for sentinel in _sentinels_of(client):
                        await sentinel.aclose()

    def __repr__(self) -> str:
        where = _masked(self.url) if self.url else type(self._client or self._aclient).__name__
        return f"RedisBackend({where!r})"


def _now(now: int | None) -> int | str:
    return "" if now is None else now


def _masked(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    _, at, tail = rest.rpartition("@")
    return f"{scheme}{sep}***@{tail}" if at else url


def _sentinels_of(client: Any) -> list[Any]:
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    return list(getattr(manager, "sentinels", ()))


def _unknown_command(exc: ResponseError) -> bool:
    return "unknown command" in str(exc).lower()


def _raise_first(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies

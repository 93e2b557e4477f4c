"""The Redis backend: each decision is one EVALSHA (EVAL once after NOSCRIPT).

Works with a URL (standalone, Sentinel or Cluster: see :mod:`.connect`) or with
redis-py clients you pass: ``redis.Redis``, ``redis.asyncio.Redis``, a cluster
client, or a Sentinel's ``master_for`` (:meth:`RedisBackend.from_sentinel`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any

import redis
import redis.asyncio

from ..flows import arun_flow, run_flow
from ._calls import (
    Command,
    ScriptCall,
    Trip,
    call_async,
    call_sync,
    every_reply,
    first,
    raise_first,
)
from ._deadlines import Deadline
from ._eval import ScriptCalls
from ._redispy import masked, sentinels_of, via_client
from ._replica_io import ReplicaReads
from ._resp import pack_trip
from ._split import limit_flow, limit_many_flow, now_arg, slot_groups
from ._wire import AsyncConnections, SyncConnections, fast_pool, run_sync
from .base import Plan
from .connect import ClientFactory, after_timeout, end_probe

__all__ = ["RedisBackend"]

_ASYNC_TYPES: tuple[type, ...] = (redis.asyncio.Redis, redis.asyncio.RedisCluster)


class RedisBackend(ScriptCalls):
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
        # the lean round trip (see _wire): connections per client, sync and async
        self._conns: dict[int, SyncConnections | None] = {}
        self._aconns: dict[int, AsyncConnections] = {}
        self._is_cluster: bool | None = None
        self._areplica: Any = areplica
        self._replica_reads: ReplicaReads | None = None
        #: Limiter trips packed once, by (plan, mode, cost, *keys): see _limit_trip.
        self._trips: dict[tuple[Any, ...], Trip] = {}
        self._async_deadline: Any = _UNSET  # see times_out_async
        #: gatekeep's deadline on async calls through redis-py's client (see connect)
        self._deadline: Deadline | None = None
        #: How NOSCRIPT log lines name the server.
        self._where = "redis"
        #: "standalone", "sentinel", "cluster", or "client" (clients were passed).
        self.kind = "client"
        #: Seconds one call may take at most (socket timeouts), when we built the clients.
        self.timeout: float | None = None
        if isinstance(client, str):
            self._factory = ClientFactory(client, client_options)
            self.url = client
            self._where = masked(client)
            self.kind = self._factory.kind
            self.timeout = self._factory.timeout
            if self._factory.async_deadline is not None:
                self._deadline = Deadline(self._factory.async_deadline, after_timeout)
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
            raise ValueError(
                "client options apply only when RedisBackend builds its clients from a URL"
            )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        """The same as ``RedisBackend(url, **options)``."""
        return cls(url, **options)

    @classmethod
    def from_sentinel(
        cls,
        sentinel: Any = None,
        service_name: str = "mymaster",
        *,
        asentinel: Any = None,
        **client_options: Any,
    ) -> RedisBackend:
        """A backend on the primary a ``redis.sentinel.Sentinel`` (and/or
        ``redis.asyncio.sentinel.Sentinel``) names, with its replicas for read-only
        scripts. ``client_options`` go to ``master_for`` / ``slave_for``."""
        if sentinel is None and asentinel is None:
            raise ValueError("pass a redis.sentinel.Sentinel, asentinel=, or both")
        return cls(
            sentinel.master_for(service_name, **client_options) if sentinel else None,
            aclient=asentinel.master_for(service_name, **client_options) if asentinel else None,
            replica=sentinel.slave_for(service_name, **client_options) if sentinel else None,
            areplica=(asentinel.slave_for(service_name, **client_options) if asentinel else None),
        )

    # -- clients ---------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            if self._factory is None:
                raise RuntimeError(
                    "this RedisBackend was given only an async client; "
                    "use AsyncLimiter, or pass a sync client too"
                )
            self._client = self._factory.primary()
        return self._client

    @property
    def aclient(self) -> Any:
        if self._aclient is None:
            if self._factory is None:
                raise RuntimeError(
                    "this RedisBackend was given only a sync client; "
                    "use Limiter, or pass aclient= too"
                )
            self._aclient = self._factory.aprimary()
        return self._aclient

    def times_out_async(self, deadline: float) -> bool:
        """Whether the async round trip to the primary itself fails a call that takes
        longer than ``deadline`` seconds. The lean path's deadline discounts a stalled
        event loop (see ``_deadlines.Loop``), so a caller then needs no clock of its own
        around the call (its clock would count the stall). So does gatekeep's deadline on
        the async Sentinel and Cluster clients it builds (``_deadlines.Deadline``); clients
        you pass of another class have only redis-py's own timeouts."""
        wire = self._async_deadline
        if wire is _UNSET:
            wire = self._async_deadline = self._lean_async_timeout()
        return wire is not None and wire <= deadline

    def _lean_async_timeout(self) -> float | None:
        try:
            client = self.aclient
        except RuntimeError:  # only a sync client
            return None
        if not AsyncConnections.usable(client):
            return None if self._deadline is None else self._deadline.timeout
        timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        return float(timeout) if timeout is not None else None

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

    @property
    def replica_reads(self) -> ReplicaReads:
        """Reads from every replica of a key's shard (Sentinel, Cluster; see
        :mod:`.replicas`), shared by the session stores on this backend."""
        if self._replica_reads is None:
            self._replica_reads = ReplicaReads(self)
        return self._replica_reads

    # -- the script call: one flow (._calls), two drivers (eval ... over them: ._eval) ----

    def eval_batch(
        self,
        calls: Sequence[ScriptCall],
        *,
        read_only: bool = False,
        wait: tuple[int, int] | None = None,
    ) -> list[Any]:
        """Run several scripts in one round trip (a pipeline; on a cluster, one per node).

        Returns one reply per call, with a ``ResponseError`` in place of the reply
        of a script that failed; connection errors and timeouts raise.
        ``read_only`` sends EVALSHA_RO to a replica (Sentinel) or the primary.
        ``wait=(replicas, ms)`` ends the round trip with WAIT: the replies are then
        a :class:`~._calls.Replies`, whose ``acked`` says how many replicas
        acknowledged the writes.
        """
        return call_sync(Trip(calls, read_only, False, wait), self._trip, every_reply, self._where)

    def aeval_batch(
        self,
        calls: Sequence[ScriptCall],
        *,
        read_only: bool = False,
        wait: tuple[int, int] | None = None,
    ) -> Coroutine[Any, Any, list[Any]]:
        """The same, awaited."""
        trip = Trip(calls, read_only, False, wait)
        return call_async(trip, self._atrip, every_reply, self._where)

    def _trip(self, trip: Trip) -> list[Any]:
        """Do one round trip: the lean path for a plain client, else redis-py's pipeline."""
        client = self.replica if trip.read_only else self.client
        conns = self._conns.get(id(client), _UNSET)
        if conns is _UNSET:
            pool = fast_pool(client)
            conns = self._conns[id(client)] = None if pool is None else SyncConnections(pool)
        if conns is not None:
            return run_sync(conns, trip)
        return via_client(client, trip)  # type: ignore[no-any-return]

    def _atrip(self, trip: Trip) -> Awaitable[list[Any]]:
        client = self.areplica if trip.read_only else self.aclient
        conns = self._aconns.get(id(client))
        if conns is None and AsyncConnections.usable(client):
            conns = self._aconns[id(client)] = AsyncConnections(client)
        if conns is not None:
            return conns.run(trip)
        if self._deadline is not None:
            return self._deadline.run(via_client(client, trip), client)
        return via_client(client, trip)  # type: ignore[no-any-return]

    # -- limiter backend protocol ----------------------------------------------------

    @property
    def is_cluster(self) -> bool:
        """True on Redis Cluster, where one script may touch one slot only."""
        if self._is_cluster is None:
            self._is_cluster = self.kind == "cluster" or isinstance(
                self._client or self._aclient, (redis.RedisCluster, redis.asyncio.RedisCluster)
            )
        return self._is_cluster

    def shard(self, key: str, aio: bool = False) -> str | None:
        """The shard ``key`` lives on: on a cluster, the ``host:port`` of its primary as
        the (sync or async) client's slot map says, without I/O; None where there is one
        shard, or while the client has no map yet (see :mod:`gatekeep.shards`)."""
        if not self.is_cluster:
            return None
        locate = getattr(self._aclient if aio else self._client, "get_node_from_key", None)
        if locate is None:
            return None
        try:
            node = locate(key)
        except Exception:  # no slot map yet (SlotNotCoveredError)
            return None
        name = getattr(node, "name", None)
        return name if isinstance(name, str) else None

    def _limit_trip(
        self, plan: Plan, keys: list[str], now: int | None, mode: str, cost: int
    ) -> Trip | None:
        """The first trip of one limiter call; None when its keys span several cluster
        slots (see _split.limit_flow). On the server's clock (``now`` None) a call sends the same
        bytes for the same keys and arguments: they are packed once, and kept."""
        cache_key = (plan, mode, cost, *keys)  # the plan held here keeps its id unique
        if now is None:
            trip = self._trips.get(cache_key)
            if trip is not None:
                return trip
        if len(keys) > 1 and self.is_cluster and len(slot_groups(keys)) > 1:
            return None
        trip = Trip([(plan.algorithm.script, keys, (now_arg(now), mode, cost, *plan.flat))])
        if now is None:
            trip = trip._replace(packed=pack_trip(trip))
            if len(self._trips) >= _TRIP_CACHE:
                self._trips.clear()
            self._trips[cache_key] = trip
        return trip

    def limit(
        self, plan: Plan, keys: list[str], now: int | None, mode: str, cost: int
    ) -> list[int]:
        trip = self._limit_trip(plan, keys, now, mode, cost)
        if trip is None:  # split by slot
            flow = limit_flow(plan, keys, now, mode, cost, True, self._where)
            return run_flow(flow, self._trip)
        return call_sync(trip, self._trip, first, self._where)

    def alimit(
        self, plan: Plan, keys: list[str], now: int | None, mode: str, cost: int
    ) -> Coroutine[Any, Any, list[int]]:
        trip = self._limit_trip(plan, keys, now, mode, cost)
        if trip is None:
            flow = limit_flow(plan, keys, now, mode, cost, True, self._where)
            return arun_flow(flow, self._atrip)
        return call_async(trip, self._atrip, first, self._where)

    def limit_many(
        self, plan: Plan, keys: Sequence[list[str]], now: int | None, mode: str, cost: int
    ) -> list[list[int]]:
        flow = limit_many_flow(plan, keys, now, mode, cost, self.is_cluster, self._where)
        return run_flow(flow, self._trip)

    def alimit_many(
        self, plan: Plan, keys: Sequence[list[str]], now: int | None, mode: str, cost: int
    ) -> Coroutine[Any, Any, list[list[int]]]:
        flow = limit_many_flow(plan, keys, now, mode, cost, self.is_cluster, self._where)
        return arun_flow(flow, self._atrip)

    def delete(self, keys: list[str]) -> None:
        if keys:
            self.client.delete(*keys)

    async def adelete(self, keys: list[str]) -> None:
        if not keys:
            return
        if self.is_cluster:  # redis-py splits a DEL of keys in several slots
            call = self.aclient.delete(*keys)
            await (call if self._deadline is None else self._deadline.run(call, self.aclient))
            return
        # a trip like any other: the lean round trip's deadline (a stall is no timeout)
        raise_first(await self._atrip(Trip(((_DEL, keys, ()),), False)))

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        if self._replica_reads is not None:
            self._replica_reads.close()
        for conns in self._conns.values():
            if conns is not None:
                conns.close()
        self._conns.clear()
        for client in (self._client, self._replica):
            if client is not None:
                client.close()
                if self._factory is not None:  # and the Sentinel connections we made
                    for sentinel in sentinels_of(client):
                        sentinel.close()

    async def aclose(self) -> None:
        if self._replica_reads is not None:
            await self._replica_reads.aclose()
        for conns in self._aconns.values():
            await conns.aclose()
        self._aconns.clear()
        for client in (self._aclient, self._areplica):
            if client is not None:
                await end_probe(client)
                await client.aclose()
                if self._factory is not None:
                    for sentinel in sentinels_of(client):
                        await sentinel.aclose()

    def __repr__(self) -> str:
        where = masked(self.url) if self.url else type(self._client or self._aclient).__name__
        return f"RedisBackend({where!r})"


_UNSET: Any = object()
#: How many packed limiter trips a backend keeps (one per key and plan in use).
_TRIP_CACHE = 4096


_DEL = Command.of("DEL")

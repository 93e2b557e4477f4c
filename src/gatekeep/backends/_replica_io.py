"""The I/O of replica reads (:mod:`.replicas`): connections to one node by address,
the Sentinels asked, and the two drivers of :meth:`.replicas.Replicas.flow`.

A node's connections are made with the options of the client they stand in for
(``get_connection_kwargs()`` of the Sentinel replica client or of the cluster client:
timeouts, TLS, credentials), as plain ``redis.Connection`` / ``SSLConnection`` (their
asyncio twins for the async driver). On a cluster each connection sends ``READONLY``
once connected (``redis_connect_func``), or a replica answers MOVED.

Each attempt has its own timeout (a share of the read's deadline, see
:mod:`.replicas`): the sync driver waits for the reply with ``can_read(timeout)``,
and a new connection gets that timeout for its connect and handshake (a hung node
accepts the connection: the kernel does, but answers nothing); the async one runs
the round trip under a :class:`~._deadlines.Deadline` of that share.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..flows import arun_flow, run_flow
from ._calls import ScriptCall, Trip, replies_expected
from ._deadlines import Deadline
from ._resp import pack_trip
from ._wire import AsyncConnections, SyncConnections
from .replicas import Ask, Node, Replicas

__all__ = ["ReplicaReads"]

#: Connection options of the primary's client that a node's connection does not take.
_NOT_COPIED = frozenset({"host", "port", "connection_pool", "redis_connect_func", "path"})


class ReplicaReads:
    """Session reads from the replicas of a key's shard, for one ``RedisBackend``:
    :meth:`read` / :meth:`aread`; None of them when the deployment is neither
    Sentinel nor Cluster (:meth:`applies`)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self._drivers: dict[bool, _Driver | None] = {}
        self.core: Replicas | None = None

    def applies(self, sync: bool) -> bool:
        """Whether reads can go to the shard's replicas (Sentinel or Cluster)."""
        return self._driver(sync) is not None

    def _driver(self, sync: bool) -> _Driver | None:
        if sync in self._drivers:
            return self._drivers[sync]
        driver = None
        b = self.backend
        try:
            if b.is_cluster:
                client = b.client if sync else b.aclient
                if isinstance(client, (redis.RedisCluster, redis.asyncio.RedisCluster)):
                    driver = _Driver(client, sync, None)
            else:
                replica = b.replica if sync else b.areplica
                pool = getattr(replica, "connection_pool", None)
                if getattr(pool, "sentinel_manager", None) is not None:
                    driver = _Driver(replica, sync, pool)
        except RuntimeError:  # only a sync (or only an async) client was given
            driver = None
        if driver is not None and self.core is None:
            self.core = Replicas("cluster" if driver.pool is None else "sentinel")
        self._drivers[sync] = driver
        return driver

    @property
    def counters(self) -> dict[str, Any]:
        return self.core.counters if self.core is not None else {}

    def read(self, key: str, calls: list[ScriptCall], deadline: float) -> list[Any]:
        driver = self._driver(True)
        assert driver is not None and self.core is not None
        flow = self.core.flow(key, calls, deadline, driver.seeds(key))
        return run_flow(flow, driver.io)

    def aread(self, key: str, calls: list[ScriptCall], deadline: float) -> Awaitable[list[Any]]:
        driver = self._driver(False)
        assert driver is not None and self.core is not None
        flow = self.core.flow(key, calls, deadline, driver.seeds(key))
        return arun_flow(flow, driver.aio)

    def close(self) -> None:
        driver = self._drivers.get(True)
        if driver is not None:
            for conns in driver.nodes.values():
                conns.close()
            driver.nodes.clear()

    async def aclose(self) -> None:
        driver = self._drivers.get(False)
        if driver is not None:
            for conns in driver.nodes.values():
                await conns.aclose()
            driver.nodes.clear()


class _Driver:
    """One client's side (sync or async) of the replica reads."""

    def __init__(self, client: Any, sync: bool, pool: Any) -> None:
        self.client = client
        self.sync = sync
        #: The Sentinel connection pool (its ``sentinel_manager``), None on a cluster.
        self.pool = pool
        self.nodes: dict[str, Any] = {}
        self._options: tuple[type, dict[str, Any]] | None = None

    def seeds(self, key: str) -> list[Node]:
        """The cluster nodes the client knows (no I/O), to ask the topology: the key's
        primary (the one failing, likely) last."""
        if self.pool is not None:
            return []
        nodes = [Node(n.host, int(n.port)) for n in self.client.get_nodes()]
        try:
            failing = self.client.get_node_from_key(key)
        except Exception:  # no slot map yet
            return nodes
        return sorted(nodes, key=lambda n: (n.host, n.port) == (failing.host, failing.port))

    def _connections(self, node: Node) -> Any:
        conns = self.nodes.get(node.name)
        if conns is None:
            if self._options is None:
                self._options = node_options(self.client, self.sync, self.pool is None)
            cls, options = self._options
            if self.sync:
                pool = redis.ConnectionPool(
                    connection_class=cls, host=node.host, port=node.port, **options
                )
                conns = SyncConnections(pool)
            else:
                apool = redis.asyncio.ConnectionPool(
                    connection_class=cls, host=node.host, port=node.port, **options
                )
                conns = AsyncConnections(redis.asyncio.Redis(connection_pool=apool))
            self.nodes[node.name] = conns
        return conns

    def io(self, step: Any) -> Any:
        if type(step) is Ask:
            conns = self._connections(step.node)
            if step.fresh:
                conns.close()
            return sync_trip(conns, step.trip, step.timeout)
        manager, service = self.pool.sentinel_manager, self.pool.service_name
        try:
            primary = manager.discover_master(service)
        except redis.ConnectionError:  # MasterNotFoundError: the replicas alone
            primary = None
        return primary, manager.discover_slaves(service)

    def aio(self, step: Any) -> Awaitable[Any]:
        if type(step) is Ask:
            conns = self._connections(step.node)
            return Deadline(step.timeout).run(_afresh(conns, step.trip, step.fresh))
        return Deadline(step.timeout).run(self._asentinels())

    async def _asentinels(self) -> tuple[Any, list[Any]]:
        manager, service = self.pool.sentinel_manager, self.pool.service_name
        try:
            primary = await manager.discover_master(service)
        except redis.ConnectionError:
            primary = None
        return primary, await manager.discover_slaves(service)


async def _afresh(conns: AsyncConnections, trip: Trip, fresh: bool) -> list[Any]:
    if fresh:
        await conns.aclose()
    return await conns.run(trip)


def sync_trip(conns: SyncConnections, trip: Trip, timeout: float) -> list[Any]:
    """``trip`` on one of ``conns``, its first reply awaited at most ``timeout`` s
    (redis-py's public connection methods; an error reply in place of its reply)."""
    conn = conns.get()
    # a new connection's handshake (AUTH, READONLY...) gets the same share: a hung node
    # accepts connections (the kernel does) but answers nothing
    conn.socket_connect_timeout = conn.socket_timeout = timeout
    try:
        conn.send_packed_command([pack_trip(trip)])
        if not conn.can_read(timeout=timeout):
            raise RedisTimeoutError(f"no reply from {conn.host}:{conn.port} within {timeout:.3f} s")
        replies: list[Any] = []
        for _ in range(replies_expected(trip)):
            try:
                replies.append(conn.read_response())
            except ResponseError as exc:  # read in full: the connection stays usable
                replies.append(exc)
    except BaseException:
        conn.disconnect()  # a reply may still be on its way
        raise
    conns.release(conn)
    return replies


def node_options(client: Any, sync: bool, cluster: bool) -> tuple[type, dict[str, Any]]:
    """The connection class and options for one node, from ``client``'s (see the
    module doc)."""
    given = dict(client.get_connection_kwargs())
    cls = given.pop("connection_class", None) or getattr(
        getattr(client, "connection_pool", None), "connection_class", None
    )
    ssl = isinstance(cls, type) and issubclass(
        cls, (redis.SSLConnection, redis.asyncio.SSLConnection)
    )
    target: type
    if sync:
        target = redis.SSLConnection if ssl else redis.Connection
    else:
        target = redis.asyncio.SSLConnection if ssl else redis.asyncio.Connection
    accepted = _parameters(target)
    options = {k: v for k, v in given.items() if k in accepted and k not in _NOT_COPIED}
    if cluster:
        options["redis_connect_func"] = _readonly if sync else _areadonly
    return target, options


def _parameters(cls: type) -> set[str]:
    """The keyword arguments ``cls`` and its bases take by name."""
    names: set[str] = set()
    for base in cls.__mro__:
        init = base.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                names.add(p.name)
    return names


def _readonly(conn: Any) -> None:
    """A cluster node's connection, once connected: reads served by a replica."""
    conn.on_connect()
    conn.send_command("READONLY")
    conn.read_response()


async def _areadonly(conn: Any) -> None:
    await conn.on_connect()
    await conn.send_command("READONLY")
    await conn.read_response()

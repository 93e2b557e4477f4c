"""Building fail-fast redis-py clients from a URL: standalone, Sentinel, Cluster.

The URL itself is parsed by :mod:`._urls` (:func:`parse_url`, re-exported here).

>>> backend = connect("redis://localhost:6379/0")                                # doctest: +SKIP
>>> backend = connect("redis+sentinel://user:pw@s1:26379,s2:26379/mymaster/0")   # doctest: +SKIP
>>> backend = connect("rediss+cluster://user:pw@n1:6379,n2:6379", timeout=0.1)  # doctest: +SKIP

URL forms:

- ``redis://``, ``rediss://`` (TLS), ``unix://``, ``valkey://``, ``valkeys://``: one
  server, parsed by redis-py (its query options work too).
- ``redis+sentinel://[user:pass@]host:port[,host:port...]/service_name[/db]``
  (``rediss+sentinel://`` for TLS): the primary that the Sentinels name, found
  again after every failover; ``user:pass`` is for the data nodes, the Sentinels'
  own credentials go in ``?sentinel_username=&sentinel_password=``.
- ``redis+cluster://[user:pass@]host:port[,host:port...]`` (``rediss+cluster://``):
  Redis Cluster, any reachable nodes as seeds.

Every client built here **fails fast**: socket connect and read timeouts of
``timeout`` seconds (default :data:`DEFAULT_TIMEOUT`) and **no retries**.
redis-py's retry wraps sending *and* reading a command, so a timeout after the
server already ran a script would run it again (redis-py #3554); gatekeep's
scripts are not idempotent (a hit consumes), so a failed call is reported to
the caller (and to the circuit breaker of a ``FailoverBackend``) instead.
Pass ``retry=`` yourself to override, knowing this.

The async Sentinel and Cluster clients are the exception: redis-py times their reads
with ``asyncio.timeout``, which counts a stalled event loop (CPU-bound code in the
app) as Redis's lateness. Their calls get gatekeep's own deadline of ``timeout``
seconds, which does not (``_deadlines.Deadline``, applied by ``RedisBackend``), and
redis-py's timeouts on their data nodes are a far backstop (``_deadlines.backstop``:
2 s or 8 timeouts; the Sentinels keep ``timeout``); :func:`after_timeout` lets the
client learn from a call the deadline ended what redis-py would have.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.cluster
import redis.retry
import redis.sentinel
from redis.backoff import AbstractBackoff, NoBackoff

from ._deadlines import backstop
from ._ssl import SharedSSLContext, share_pool
from ._urls import STANDALONE, Endpoint, parse_url, redis_url, safe_url

if TYPE_CHECKING:
    from .redis import RedisBackend

__all__ = [
    "DEFAULT_TIMEOUT",
    "ClientFactory",
    "Endpoint",
    "after_timeout",
    "connect",
    "end_probe",
    "parse_url",
]

#: Seconds a connect or a reply may take before the call fails.
DEFAULT_TIMEOUT = 0.25

#: Redirections (MOVED, ASK) and TRYAGAIN replies followed per cluster call.
CLUSTER_REQUEST_TTL = 6

_SENTINEL_ONLY = (
    "sentinel_kwargs",
    "sentinel_username",
    "sentinel_password",
    "min_other_sentinels",
)


class ClientFactory:
    """Builds, on first use, the sync and async clients of one URL.

    ``primary()`` / ``aprimary()`` write; ``replica()`` / ``areplica()`` serve
    read-only scripts (a Sentinel replica; the primary elsewhere).
    """

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        options = dict(options or {})
        self.url = url
        if url.startswith(STANDALONE):
            self.kind = "standalone"
            self.endpoint: Endpoint | None = None
        else:
            self.endpoint = parse_url(url)
            self.kind = self.endpoint.kind
            options = {**self.endpoint.options, **options}
        if self.kind != "sentinel" and any(k in options for k in _SENTINEL_ONLY):
            raise ValueError(
                f"{', '.join(k for k in _SENTINEL_ONLY if k in options)} "
                "apply only to redis+sentinel:// URLs"
            )
        if "retry" in options and not isinstance(options["retry"], redis.retry.Retry):
            raise TypeError("retry= must be a redis.retry.Retry (the async clients get a copy)")
        timeout = options.pop("timeout", DEFAULT_TIMEOUT)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        options.setdefault("socket_timeout", timeout)
        options.setdefault("socket_connect_timeout", timeout)
        #: The read timeout of one call, in seconds: a FailoverBackend's default deadline.
        self.timeout = float(options["socket_timeout"])
        #: The deadline gatekeep itself enforces on each async call through redis-py's
        #: own client (Sentinel, Cluster), or None (standalone: the lean round trip has
        #: one, the client's socket timeout). See ``_deadlines.Deadline``.
        self.async_deadline = self.timeout if self.kind in ("sentinel", "cluster") else None
        self.options = options

    # -- the four clients ------------------------------------------------------------

    def primary(self) -> Any:
        return self._build(sync=True, replica=False)

    def aprimary(self) -> Any:
        return self._build(sync=False, replica=False)

    def replica(self) -> Any:
        return self._build(sync=True, replica=True)

    def areplica(self) -> Any:
        return self._build(sync=False, replica=True)

    def _build(self, *, sync: bool, replica: bool) -> Any:
        opts = dict(self.options)
        opts["retry"] = _no_retry(sync, opts.get("retry"))
        if self.endpoint is None:
            cls: Any = redis.Redis if sync else redis.asyncio.Redis
            return cls.from_url(redis_url(self.url), **opts)
        ep = self.endpoint
        if ep.username is not None:
            opts.setdefault("username", ep.username)
        if ep.password is not None:
            opts.setdefault("password", ep.password)
        if ep.ssl:
            opts.setdefault("ssl", True)
        if ep.kind == "cluster":
            if sync:
                node: Any = redis.cluster.ClusterNode
                nodes = [node(h, p) for h, p in ep.hosts]
                client: Any = redis.RedisCluster(startup_nodes=nodes, **opts)
            else:
                anodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in ep.hosts]
                client = redis.asyncio.RedisCluster(startup_nodes=anodes, **_backstopped(opts))
            # MOVED / ASK / TRYAGAIN are retried inside redis-py (nothing ran, so it is
            # safe), up to 16 times with 50 ms pauses after the 8th: 0.4 s of TRYAGAIN.
            # 6 tries still follow any redirection chain, and end within the deadline.
            client.RedisClusterRequestTTL = CLUSTER_REQUEST_TTL
            return client
        return self._sentinel_client(ep, opts, sync=sync, replica=replica)

    def _sentinel_client(
        self, ep: Endpoint, opts: dict[str, Any], *, sync: bool, replica: bool
    ) -> Any:
        skw = opts.pop("sentinel_kwargs", None)
        s_user = opts.pop("sentinel_username", None)
        s_pass = opts.pop("sentinel_password", None)
        min_other = opts.pop("min_other_sentinels", 0)
        if skw is None:
            # The Sentinels get the same deadline and TLS, not the data nodes' user.
            skw = {
                k: v for k, v in opts.items() if k.startswith(("socket_", "ssl")) or k == "retry"
            }
            if s_user is not None:
                skw["username"] = s_user
            if s_pass is not None:
                skw["password"] = s_pass
        else:
            skw = dict(skw)
            skw["retry"] = _no_retry(sync, skw.get("retry"))
        opts["db"] = ep.db
        if not sync:  # the data nodes; the Sentinels keep their timeouts (see after_timeout)
            opts = _backstopped(opts)
        module: Any = redis.sentinel if sync else redis.asyncio.sentinel
        sentinel = module.Sentinel(
            list(ep.hosts), min_other_sentinels=min_other, sentinel_kwargs=skw, **opts
        )
        client = sentinel.slave_for(ep.service) if replica else sentinel.master_for(ep.service)
        if sync:  # TLS: one SSL context for the data nodes, one for the Sentinels (see _ssl)
            share_pool(client.connection_pool)
            sentinels = SharedSSLContext()  # the same sentinel_kwargs
            for s in sentinel.sentinels:
                share_pool(s.connection_pool, sentinels)
        return client

    def __repr__(self) -> str:
        return f"ClientFactory({safe_url(self.url)!r}, kind={self.kind!r}, timeout={self.timeout})"


#: The probes of :func:`after_timeout` in flight, per client (a task must be referenced).
_PROBES: dict[int, asyncio.Task[None]] = {}


def after_timeout(client: Any) -> None:
    """A call through ``client`` was ended by gatekeep's deadline (``_deadlines.Deadline``):
    cancelled, so redis-py did not see it fail, and learnt nothing from it. What it would
    have learnt is learnt in the background, under redis-py's own timeouts, one probe per
    client at a time:

    - a cluster client refreshes its slot map only after a node failed *to it*: its
      primaries get a PING (a hung one times out at the backstop), and the client then
      follows a failover;
    - a Sentinel client finds the primary (or a replica) on each new connection, asking
      the Sentinels in turn; a hung one would hold every such call to its deadline, the
      next Sentinel never asked: the probe asks them in turn (each with its own timeout)
      and redis-py moves the first that answers to the front.
    """
    if id(client) in _PROBES:
        return
    if isinstance(client, redis.asyncio.RedisCluster):
        probe = _ping_primaries(client)
    elif isinstance(client.connection_pool, redis.asyncio.sentinel.SentinelConnectionPool):
        probe = _discover(client.connection_pool)
    else:
        return
    task = _PROBES[id(client)] = asyncio.ensure_future(probe)
    task.add_done_callback(lambda _: _PROBES.pop(id(client), None))


async def end_probe(client: Any) -> None:
    """Cancel ``client``'s probe (see :func:`after_timeout`), if one runs, and wait for
    it: before the client is closed (a probe started later would open a connection on
    the closed client, left open when its event loop ends)."""
    task = _PROBES.get(id(client))
    if task is not None:
        task.cancel()
        if task.get_loop() is asyncio.get_running_loop():
            await asyncio.wait([task])


async def _ping_primaries(client: Any) -> None:
    with contextlib.suppress(Exception):  # what it finds out, redis-py has seen
        await client.execute_command("PING", target_nodes=client.PRIMARIES)


async def _discover(pool: Any) -> None:
    with contextlib.suppress(Exception):  # MasterNotFoundError: none answered
        await pool.sentinel_manager.discover_master(pool.service_name)


def connect(url: str, **options: Any) -> RedisBackend:
    """A :class:`RedisBackend` for ``url`` with fail-fast clients (see the module doc).

    ``timeout`` (seconds, default 0.25) bounds each connect and each reply;
    other options go to redis-py (``username``, ``password``, ``ssl_*``,
    ``max_connections``, ...), plus ``sentinel_kwargs`` / ``sentinel_username`` /
    ``sentinel_password`` for Sentinel URLs.
    """
    from .redis import RedisBackend

    return RedisBackend(url, **options)


# -- helpers ---------------------------------------------------------------------------


def _no_retry(sync: bool, given: Any) -> Any:
    """No retries (a fresh object per client), unless the caller chose one."""
    if given is not None:
        if sync:
            return given
        # The async clients need an asyncio Retry like the one given. Its backoff and
        # errors are private attributes of redis-py's Retry: used only when they are
        # what they were; else the given number of retries with redis-py's defaults.
        backoff = getattr(given, "_backoff", None)
        errors = getattr(given, "_supported_errors", None)
        if isinstance(backoff, AbstractBackoff) and isinstance(errors, tuple):
            return redis.asyncio.retry.Retry(backoff, given.get_retries(), errors)
        return redis.asyncio.retry.Retry(NoBackoff(), given.get_retries())
    if sync:
        return redis.retry.Retry(NoBackoff(), 0)
    return redis.asyncio.retry.Retry(NoBackoff(), 0)


def _backstopped(opts: dict[str, Any]) -> dict[str, Any]:
    """``opts`` for an async client whose calls gatekeep times itself (``Deadline``):
    redis-py's asyncio timeouts fire on a stalled event loop, so they become a backstop."""
    far = backstop(opts["socket_timeout"])
    return {
        **opts,
        **{k: max(opts[k] or 0.0, far) for k in ("socket_timeout", "socket_connect_timeout")},
    }

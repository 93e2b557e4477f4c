"""Connecting the command line to a server named by a URL.

* ``redis://`` / ``rediss://`` (and ``valkey://``, ``unix://``): one server;
* ``redis+sentinel://host:port[,host:port]/service_name``: ask the Sentinels
  for the current primary of ``service_name``;
* Redis Cluster: with ``cluster=True``, or found out from ``INFO cluster``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import redis
import redis.cluster
import redis.sentinel

__all__ = ["Target", "connect", "parse_sentinel_url"]

TIMEOUTS: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 3.0}
_PLAIN = ("redis://", "rediss://", "unix://", "valkey://", "valkeys://")


@dataclass
class Target:
    """What a URL led to: a client, and how it was reached."""

    kind: str  # "standalone", "sentinel" or "cluster"
    #: ``redis.Redis`` (standalone, Sentinel primary) or ``redis.cluster.RedisCluster``.
    client: Any
    label: str
    notes: list[str] = field(default_factory=list)

    def nodes(self) -> list[tuple[str, Any]]:
        """``(host:port, redis.Redis)`` for every server to examine."""
        if self.kind == "cluster":
            return sorted((n.name, n.redis_connection) for n in self.client.get_nodes())
        kwargs = self.client.connection_pool.connection_kwargs
        where = (kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")
        return [(str(where), self.client)]

    def close(self) -> None:
        self.client.close()


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """``redis+sentinel://[user:password@]h1:p1,h2:p2/service[/db]`` to
    (sentinel addresses, service name, options for the primary's client)."""
    rest = url.split("://", 1)[1]
    netloc, _, path = rest.partition("/")
    options: dict[str, Any] = {}
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        if user:
            options["username"] = unquote(user)
        if password:
            options["password"] = unquote(password)
    hosts = []
    for part in netloc.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host:
            host, port = port, "26379"
        try:
            hosts.append((host.strip("[]"), int(port)))
        except ValueError:
            raise ValueError(f"bad Sentinel address {part!r} in {url!r}") from None
    segments = [s for s in path.split("?")[0].split("/") if s]
    if not segments or not hosts:
        raise ValueError(f"a Sentinel URL looks like redis+sentinel://host:26379[,host:port]"
                         f"/service_name, not {url!r}")
    if len(segments) > 1:
        options["db"] = int(segments[1])
    return hosts, unquote(segments[0]), options


def connect(url: str, *, cluster: bool = False, detect_cluster: bool = True) -> Target:
    """A client for ``url``; raises ``ValueError`` for a URL it cannot use and
    ``redis.RedisError`` when the server cannot be reached."""
    if url.startswith(("redis+sentinel://", "rediss+sentinel://")):
        hosts, service, options = parse_sentinel_url(url)
        if url.startswith("rediss"):
            options["ssl"] = True
        sentinel: Any = redis.sentinel.Sentinel(hosts, sentinel_kwargs=dict(TIMEOUTS),  # type: ignore[no-untyped-call]
                                                **TIMEOUTS)
        host, port = sentinel.discover_master(service)
        client = redis.Redis(host=host, port=port, **options, **TIMEOUTS)
        client.ping()
        note = (f"Sentinel(s) {', '.join(f'{h}:{p}' for h, p in hosts)} name {host}:{port} "
                f"as the primary of {service!r}")
        return Target("sentinel", client, f"{service} via Sentinel", [note])
    if url.startswith("valkey"):
        url = "redis" + url[len("valkey"):]
    if not url.startswith(_PLAIN):
        raise ValueError(f"cannot use {url!r}: give redis://host:port, rediss://..., "
                         "unix:///path or redis+sentinel://host:port/service_name")
    if cluster:
        return Target("cluster", _cluster(url), url)
    client = redis.Redis.from_url(url, **TIMEOUTS)
    if detect_cluster and _cluster_enabled(client):
        client.close()
        return Target("cluster", _cluster(url), url, ["the server reports cluster_enabled: 1"])
    return Target("standalone", client, url)


def _cluster(url: str) -> Any:
    # Not require_full_coverage: a cluster with uncovered slots is what the doctor
    # must be able to look at and report.
    return redis.cluster.RedisCluster.from_url(url, require_full_coverage=False, **TIMEOUTS)


def _cluster_enabled(client: Any) -> bool:
    return bool(int(client.info("cluster").get("cluster_enabled", 0)))

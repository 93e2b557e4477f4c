"""Connecting the command line to a server named by a URL.

* ``redis://`` / ``rediss://`` (and ``valkey://``, ``unix://``): one server;
* ``redis+sentinel://host:port[,host:port]/service_name``: ask the Sentinels
  for the current primary of ``service_name``;
* Redis Cluster: ``redis+cluster://host:port[,host:port]``, or a plain URL with
  ``cluster=True``, or found out from ``INFO cluster``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.cluster
import redis.sentinel

from ..backends.connect import Endpoint, parse_url

__all__ = ["Target", "connect", "redact"]

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
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return [(str(where), self.client)]

    def close(self) -> None:
        self.client.close()


def connect(url: str, *, cluster: bool = False, detect_cluster: bool = True) -> Target:
    """A client for ``url``; raises ``ValueError`` for a URL it cannot use and
    ``redis.RedisError`` when the server cannot be reached.

    URLs are parsed as :func:`gatekeep.backends.connect.parse_url` parses them for
    the library; the clients differ: generous timeouts (a diagnosis, not a request
    path), and Sentinel's answer kept, so the report can name the primary.
    """
    scheme = url.partition("://")[0].lower()
    if "+" in scheme:
        ep = parse_url(url)
        if ep.kind == "sentinel":
            return _sentinel(ep)
        return Target("cluster", _cluster(ep), redact(url))
    if url.startswith("valkey"):
        url = "redis" + url[len("valkey") :]
    if not url.startswith(_PLAIN):
        raise ValueError(
            f"cannot use {redact(url)!r}: give redis://host:port, rediss://..., "
            "unix:///path, redis+sentinel://host:port/service_name or "
            "redis+cluster://host:port"
        )
    if cluster:
        return Target("cluster", _cluster_from_url(url), redact(url))
    client = redis.Redis.from_url(url, **TIMEOUTS)
    if detect_cluster and _cluster_enabled(client):
        client.close()
        return Target(
            "cluster",
            _cluster_from_url(url),
            redact(url),
            ["the server reports cluster_enabled: 1"],
        )
    return Target("standalone", client, redact(url))


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, for printing."""
    return re.sub(r"(://[^:@/]*:)[^@/]*@", r"\1***@", url)


def _auth(ep: Endpoint) -> dict[str, Any]:
    opts: dict[str, Any] = {
        k: v for k, v in ep.options.items() if not k.startswith("sentinel_") and k != "timeout"
    }
    if ep.username is not None:
        opts["username"] = ep.username
    if ep.password is not None:
        opts["password"] = ep.password
    if ep.ssl:
        opts["ssl"] = True
    if "timeout" in ep.options:
        opts.setdefault("socket_timeout", ep.options["timeout"])
        opts.setdefault("socket_connect_timeout", ep.options["timeout"])
    return {**TIMEOUTS, **opts}


def _sentinel(ep: Endpoint) -> Target:
    assert ep.service is not None
    opts = _auth(ep)
    skw: dict[str, Any] = {k: v for k, v in opts.items() if k.startswith(("socket_", "ssl"))}
    for key in ("username", "password"):
        if f"sentinel_{key}" in ep.options:
            skw[key] = ep.options[f"sentinel_{key}"]
    sentinel: Any = redis.sentinel.Sentinel(
        list(ep.hosts),  # type: ignore[no-untyped-call]
        sentinel_kwargs=skw,
    )
    host, port = sentinel.discover_master(ep.service)
    client = redis.Redis(host=host, port=port, db=ep.db, **opts)
    client.ping()
    note = (
        f"Sentinel(s) {', '.join(f'{h}:{p}' for h, p in ep.hosts)} name {host}:{port} "
        f"as the primary of {ep.service!r}"
    )
    return Target("sentinel", client, f"{ep.service} via Sentinel", [note])


# Not require_full_coverage: a cluster with uncovered slots is what the doctor
# must be able to look at and report.


def _cluster_from_url(url: str) -> Any:
    return redis.cluster.RedisCluster.from_url(url, require_full_coverage=False, **TIMEOUTS)


def _cluster(ep: Endpoint) -> Any:
    node: Any = redis.cluster.ClusterNode
    nodes = [node(h, p) for h, p in ep.hosts]
    return redis.cluster.RedisCluster(startup_nodes=nodes, require_full_coverage=False, **_auth(ep))


def _cluster_enabled(client: Any) -> bool:
    return bool(int(client.info("cluster").get("cluster_enabled", 0)))

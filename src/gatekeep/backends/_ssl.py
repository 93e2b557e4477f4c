"""One SSL context per client for TLS connections, not one per connection.

redis-py builds an ``ssl.SSLContext`` per connection with
``ssl.create_default_context()``, which loads the system's CA store: 50-65 ms of CPU
per new connection on an idle machine, 270 ms under load (Debian, OpenSSL 3.0; the
handshake itself is ~3 ms on loopback). asyncio: once per connection object. Sync: at
every connect. What that cost, measured (``tests/ha/test_tls.py``):

- 8 concurrent async calls on a fresh ``rediss://`` backend (timeout 0.25 s): 4
  connects timed out; 4 threads opened a ``FailoverBackend``'s breaker (0.27-0.32 s);
- a Sentinel failover over TLS: the probe that finds the new primary reconnected to
  two Sentinels, building two contexts; the slowest decision took 0.66-1.87 s.

The connections of one pool are made alike, so they can share the context the first
one built:

- asyncio, the lean path's connections (``_wire.AsyncConnections``): the first
  connection's ``RedisSSLContext`` (its public ``ssl_context`` attribute) is given to
  the next ones, when it is exactly a ``RedisSSLContext``;
- sync, the lean path's connections and a Sentinel client's pools (the Sentinels' and
  the data nodes'; ``share_pool``): connections of ``redis.SSLConnection`` or
  ``SentinelManagedSSLConnection`` (exactly those) are made as their subclass here,
  which overrides redis-py's private ``_wrap_socket_with_ssl(sock)``, when that is
  there with that signature (:data:`SYNC_SHARING`; else nothing changes). The first
  connect builds the context as redis-py does; the SSL socket's public ``context`` is
  kept for the pool's next connects. OCSP validation (done after the wrap) always
  takes redis-py's own path.

A Cluster client's pools are made by redis-py per node, as plain ``SSLConnection``
ones: not shared (see the README's TLS paragraph).
"""

from __future__ import annotations

import inspect
from typing import Any

import redis
import redis.sentinel

try:
    from redis.asyncio.connection import RedisSSLContext
except ImportError:  # pragma: no cover - a redis-py without it: nothing is shared
    RedisSSLContext = None  # type: ignore[assignment,misc]

__all__ = [
    "SYNC_SHARING",
    "SharedContextSSLConnection",
    "SharedContextSentinelSSLConnection",
    "SharedSSLContext",
    "share_pool",
    "sync_class",
]


def _overridable() -> bool:
    wrap = getattr(redis.SSLConnection, "_wrap_socket_with_ssl", None)
    try:
        return wrap is not None and list(inspect.signature(wrap).parameters) == ["self", "sock"]
    except (TypeError, ValueError):  # pragma: no cover - not a plain function
        return False


#: Whether sync TLS connections can share a context (see the module doc).
SYNC_SHARING = _overridable()


class SharedSSLContext:
    """The context the first TLS connection of a pool built, for the next ones."""

    def __init__(self) -> None:
        #: asyncio: a ``RedisSSLContext``; sync: an ``ssl.SSLContext``.
        self.context: Any = None

    def share(self, conn: Any) -> Any:
        """An asyncio connection, set to share this context when it is a TLS one."""
        own = getattr(conn, "ssl_context", None)
        if RedisSSLContext is None or type(own) is not RedisSSLContext:
            return conn
        if self.context is None:
            self.context = own
        else:
            conn.ssl_context = self.context
        return conn


class _SharesContext:
    """Mixin of a redis-py sync TLS connection class: ``shared_ssl=`` (a
    :class:`SharedSSLContext`, in the pool's connection options) holds the context."""

    def __init__(self, *args: Any, shared_ssl: SharedSSLContext | None = None, **kwargs: Any):
        self.shared_ssl = shared_ssl
        super().__init__(*args, **kwargs)

    def _wrap_socket_with_ssl(self, sock: Any) -> Any:
        conn: Any = self
        shared = self.shared_ssl
        context = None if shared is None else shared.context
        ocsp = conn.ssl_validate_ocsp or conn.ssl_validate_ocsp_stapled
        if context is None or ocsp:
            sslsock = super()._wrap_socket_with_ssl(sock)  # type: ignore[misc]
            if shared is not None and not ocsp:
                shared.context = sslsock.context
            return sslsock
        return context.wrap_socket(sock, server_hostname=conn.host)


class SharedContextSSLConnection(_SharesContext, redis.SSLConnection):
    """``redis.SSLConnection`` sharing its pool's SSL context."""


class SharedContextSentinelSSLConnection(
    _SharesContext, redis.sentinel.SentinelManagedSSLConnection
):
    """``SentinelManagedSSLConnection`` sharing its pool's SSL context."""


_SHARING: dict[type, type] = {
    redis.SSLConnection: SharedContextSSLConnection,
    redis.sentinel.SentinelManagedSSLConnection: SharedContextSentinelSSLConnection,
}


def sync_class(
    connection_class: type, options: dict[str, Any], shared: SharedSSLContext | None = None
) -> type:
    """The class to make a sync pool's connections with; when it is a sharing one,
    ``options`` (the connections' keyword arguments) get the ``shared_ssl`` holder
    (``shared``, for pools whose TLS options are the same, else a new one)."""
    sharing = _SHARING.get(connection_class) if SYNC_SHARING else None
    if sharing is None:
        return connection_class
    options["shared_ssl"] = shared or SharedSSLContext()
    return sharing


def share_pool(pool: Any, shared: SharedSSLContext | None = None) -> None:
    """Make a redis-py sync pool's TLS connections, yet to be made, share a context
    (``connection_class`` and ``connection_kwargs`` are its public attributes)."""
    options = getattr(pool, "connection_kwargs", None)
    if isinstance(options, dict):
        pool.connection_class = sync_class(pool.connection_class, options, shared)

"""One SSL context per client for the lean round trip's TLS connections.

redis-py builds an ``ssl.SSLContext`` per connection with
``ssl.create_default_context()``, which loads the system's CA store: 50-65 ms of CPU
per new connection (Debian, OpenSSL 3.0; the handshake itself is ~3 ms on loopback).
asyncio: on the event loop, once per connection object. Sync: at every connect. A
burst of concurrent calls on a cold client paid it per new connection, in turn:
8 concurrent async calls on a fresh ``rediss://`` backend (timeout 0.25 s) had 4
connects time out; 4 threads opened a ``FailoverBackend``'s breaker (answers after
0.37 s). The lean path's connections of one client are made alike (the pool's
options), so they share the context the first one built.

- asyncio: the first connection's ``RedisSSLContext`` (its public ``ssl_context``
  attribute) is given to the next ones, when it is exactly a ``RedisSSLContext``.
- sync: :class:`SharedContextSSLConnection` replaces ``redis.SSLConnection`` (exactly
  that class, nothing derived from it) when redis-py's private
  ``_wrap_socket_with_ssl(sock)`` is there to override (:data:`SYNC_SHARING`); the
  first connect builds the context as redis-py does, and the SSL socket's public
  ``context`` is kept for the next connects. OCSP validation (done after the wrap)
  always takes redis-py's own path. Without the private method, nothing changes.
"""

from __future__ import annotations

import inspect
from typing import Any

import redis

try:
    from redis.asyncio.connection import RedisSSLContext
except ImportError:  # pragma: no cover - a redis-py without it: nothing is shared
    RedisSSLContext = None  # type: ignore[assignment,misc]

__all__ = ["SYNC_SHARING", "SharedContextSSLConnection", "SharedSSLContext", "sync_class"]


def _overridable() -> bool:
    wrap = getattr(redis.SSLConnection, "_wrap_socket_with_ssl", None)
    try:
        return wrap is not None and list(inspect.signature(wrap).parameters) == ["self", "sock"]
    except (TypeError, ValueError):  # pragma: no cover - not a plain function
        return False


#: Whether sync TLS connections can share a context (see the module doc).
SYNC_SHARING = _overridable()


class SharedSSLContext:
    """The context the first TLS connection of a client built, given to the next ones."""

    def __init__(self) -> None:
        #: asyncio: a ``RedisSSLContext``; sync: an ``ssl.SSLContext``.
        self.context: Any = None

    def share(self, conn: Any) -> Any:
        """``conn``, set to share this context when it is a TLS connection it knows."""
        if type(conn) is SharedContextSSLConnection:
            conn.shared_ssl = self
            return conn
        own = getattr(conn, "ssl_context", None)
        if RedisSSLContext is None or type(own) is not RedisSSLContext:
            return conn
        if self.context is None:
            self.context = own
        else:
            conn.ssl_context = self.context
        return conn


class SharedContextSSLConnection(redis.SSLConnection):
    """``redis.SSLConnection`` whose connects reuse the ``ssl.SSLContext`` of its
    :class:`SharedSSLContext` (set by ``share``), once the first one built it."""

    shared_ssl: SharedSSLContext | None = None

    def _wrap_socket_with_ssl(self, sock: Any) -> Any:
        shared = self.shared_ssl
        context = None if shared is None else shared.context
        if context is None or self.ssl_validate_ocsp or self.ssl_validate_ocsp_stapled:
            sslsock = super()._wrap_socket_with_ssl(sock)  # type: ignore[no-untyped-call]
            if shared is not None and not (
                self.ssl_validate_ocsp or self.ssl_validate_ocsp_stapled
            ):
                shared.context = sslsock.context
            return sslsock
        return context.wrap_socket(sock, server_hostname=self.host)


def sync_class(connection_class: type) -> type:
    """The class the lean path makes a sync pool's connections with."""
    if connection_class is redis.SSLConnection and SYNC_SHARING:
        return SharedContextSSLConnection
    return connection_class

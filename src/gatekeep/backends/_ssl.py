"""One SSL context per client for the lean round trip's asyncio TLS connections.

redis-py's asyncio ``SSLConnection`` builds its ``ssl.SSLContext`` on its first
connect (``RedisSSLContext.get``) with ``ssl.create_default_context()``, which loads
the system's CA store: 50-65 ms of CPU on the event loop per new connection (Debian,
OpenSSL 3.0; the handshake itself is ~3 ms on loopback). Under a burst of concurrent
calls on a cold client each new connection paid it in turn, and the connects queued
behind them timed out: 8 concurrent calls on a fresh ``rediss://`` backend, 4
``TimeoutError`` (``tests/ha/test_tls.py``). The lean path's connections of one client
are made alike (the pool's options), so they share the first one's context: built once,
each later connection costs its handshake only.

``ssl_context`` is a public attribute of redis-py's ``SSLConnection``; a connection
whose ``ssl_context`` is not a ``RedisSSLContext`` (another redis-py, a subclass) keeps
its own.
"""

from __future__ import annotations

from typing import Any

try:
    from redis.asyncio.connection import RedisSSLContext
except ImportError:  # pragma: no cover - a redis-py without it: nothing is shared
    RedisSSLContext = None  # type: ignore[assignment,misc]

__all__ = ["SharedSSLContext"]


class SharedSSLContext:
    """The first TLS connection's ``RedisSSLContext``, given to the next ones."""

    def __init__(self) -> None:
        self.context: Any = None

    def share(self, conn: Any) -> Any:
        """``conn``, with the shared context when it is a TLS connection like the first."""
        own = getattr(conn, "ssl_context", None)
        if RedisSSLContext is None or type(own) is not RedisSSLContext:
            return conn
        if self.context is None:
            self.context = own
        else:
            conn.ssl_context = self.context
        return conn

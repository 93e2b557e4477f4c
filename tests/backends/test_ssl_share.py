"""The lean path's asyncio TLS connections of one client share one SSL context
(``backends._ssl``); on real TLS servers in ``tests/ha/test_tls.py``."""

from __future__ import annotations

import redis
import redis.asyncio
from redis.asyncio.connection import RedisSSLContext

from gatekeep.backends._ssl import SharedSSLContext


def test_tls_connections_share_the_first_ones_context():
    share = SharedSSLContext().share
    first = share(redis.asyncio.SSLConnection(host="127.0.0.1", ssl_ca_certs="ca.pem"))
    second = redis.asyncio.SSLConnection(host="127.0.0.1", ssl_ca_certs="ca.pem")
    assert share(second) is second
    assert second.ssl_context is first.ssl_context
    assert second.ssl_context.ca_certs == "ca.pem"


class OwnContext(RedisSSLContext):
    pass


def test_other_connections_keep_their_own():
    share = SharedSSLContext().share
    plain = redis.asyncio.Connection()
    assert share(plain) is plain and not hasattr(plain, "ssl_context")
    share(redis.asyncio.SSLConnection(host="127.0.0.1"))
    custom = redis.asyncio.SSLConnection(host="127.0.0.1")
    custom.ssl_context = own = OwnContext(ca_certs="other.pem")
    assert share(custom).ssl_context is own


def test_sync_tls_connections_get_the_sharing_class():
    from gatekeep.backends import _ssl

    assert _ssl.SYNC_SHARING  # this redis-py has _wrap_socket_with_ssl(self, sock)
    assert _ssl.sync_class(redis.SSLConnection) is _ssl.SharedContextSSLConnection
    assert _ssl.sync_class(redis.Connection) is redis.Connection

    class Derived(redis.SSLConnection):
        pass

    assert _ssl.sync_class(Derived) is Derived  # it may wrap the socket its own way
    conn = SharedSSLContext().share(_ssl.SharedContextSSLConnection(host="127.0.0.1"))
    assert isinstance(conn.shared_ssl, SharedSSLContext)


def test_sync_sharing_needs_the_private_method_as_it_was(monkeypatch):
    from gatekeep.backends import _ssl

    monkeypatch.setattr(redis.SSLConnection, "_wrap_socket_with_ssl", lambda self, sock, x: sock)
    assert not _ssl._overridable()
    monkeypatch.delattr(redis.SSLConnection, "_wrap_socket_with_ssl")
    assert not _ssl._overridable()
    monkeypatch.setattr(_ssl, "SYNC_SHARING", False)
    assert _ssl.sync_class(redis.SSLConnection) is redis.SSLConnection

"""The lean path's asyncio TLS connections of one client share one SSL context
(``backends._ssl``); on real TLS servers in ``tests/ha/test_tls.py``."""

from __future__ import annotations

import redis
import redis.asyncio
import redis.sentinel
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
    options: dict = {}
    assert _ssl.sync_class(redis.SSLConnection, options) is _ssl.SharedContextSSLConnection
    assert isinstance(options["shared_ssl"], SharedSSLContext)
    conn = _ssl.SharedContextSSLConnection(host="127.0.0.1", **options)
    assert conn.shared_ssl is options["shared_ssl"]
    plain: dict = {}
    assert _ssl.sync_class(redis.Connection, plain) is redis.Connection and not plain

    class Derived(redis.SSLConnection):
        pass

    assert _ssl.sync_class(Derived, plain) is Derived and not plain  # its own wrap, maybe


def test_a_sentinel_clients_pools_share(monkeypatch):
    from redis.sentinel import SentinelManagedConnection

    from gatekeep.backends import _ssl
    from gatekeep.backends.connect import ClientFactory

    def pools(url):
        client = ClientFactory(url).primary()
        sentinels = client.connection_pool.sentinel_manager.sentinels
        return [client.connection_pool] + [s.connection_pool for s in sentinels]

    data, *sentinels = pools("rediss+sentinel://s1,s2/svc?ssl_ca_certs=ca.pem")
    assert data.connection_class is _ssl.SharedContextSentinelSSLConnection
    assert isinstance(data.connection_kwargs["shared_ssl"], SharedSSLContext)
    assert data.connection_kwargs["ssl_ca_certs"] == "ca.pem"
    for pool in sentinels:
        assert pool.connection_class is _ssl.SharedContextSSLConnection
        assert pool.connection_kwargs["ssl_ca_certs"] == "ca.pem"
    # one context for the Sentinels (their options are the same), another for the nodes
    [shared] = {id(p.connection_kwargs["shared_ssl"]) for p in sentinels}
    assert shared != id(data.connection_kwargs["shared_ssl"])
    data, *sentinels = pools("redis+sentinel://s1/svc")
    assert data.connection_class is SentinelManagedConnection
    assert [p.connection_class for p in sentinels] == [redis.Connection]
    monkeypatch.setattr(_ssl, "SYNC_SHARING", False)
    data, *sentinels = pools("rediss+sentinel://s1/svc")
    assert data.connection_class is redis.sentinel.SentinelManagedSSLConnection
    assert "shared_ssl" not in data.connection_kwargs


def test_sync_sharing_needs_the_private_method_as_it_was(monkeypatch):
    from gatekeep.backends import _ssl

    monkeypatch.setattr(redis.SSLConnection, "_wrap_socket_with_ssl", lambda self, sock, x: sock)
    assert not _ssl._overridable()
    monkeypatch.delattr(redis.SSLConnection, "_wrap_socket_with_ssl")
    assert not _ssl._overridable()
    monkeypatch.setattr(_ssl, "SYNC_SHARING", False)
    assert _ssl.sync_class(redis.SSLConnection, {}) is redis.SSLConnection

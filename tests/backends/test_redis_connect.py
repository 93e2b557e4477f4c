"""URLs and client objects: what gatekeep builds, and that it fails fast."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from gatekeep.backends._deadlines import BACKSTOP, backstop
from gatekeep.backends.connect import ClientFactory, Endpoint, connect, parse_url
from gatekeep.backends.redis import RedisBackend


def test_parse_sentinel_url():
    ep = parse_url(
        "redis+sentinel://app:s%40cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/3"
        "?timeout=0.1&sentinel_password=sp"
    )
    assert ep == Endpoint(
        "sentinel",
        (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)),
        "mymaster",
        3,
        "app",
        "s@cret",
        False,
        {"timeout": 0.1, "sentinel_password": "sp"},
    )
    assert parse_url("rediss+sentinel://h:1/svc").ssl


def test_parse_cluster_url():
    ep = parse_url("rediss+cluster://:pw@n1:7000,n2:7001?ssl_cert_reqs=none")
    assert ep.kind == "cluster" and ep.ssl and ep.password == "pw" and ep.username is None
    assert ep.hosts == (("n1", 7000), ("n2", 7001))
    assert ep.options == {"ssl_cert_reqs": "none"}


def test_ssl_check_hostname_in_the_url():
    """As redis-py reads it in a rediss:// URL; it reaches the Sentinels and the nodes."""
    from gatekeep.backends.connect import ClientFactory

    ep = parse_url("rediss+cluster://n1:7000?ssl_check_hostname=false")
    assert ep.options == {"ssl_check_hostname": False}
    assert parse_url("rediss+cluster://n1?ssl_check_hostname=True").options == {
        "ssl_check_hostname": True
    }
    client = ClientFactory("rediss+sentinel://s1/svc?ssl_check_hostname=no").primary()
    assert client.connection_pool.connection_kwargs["ssl_check_hostname"] is False
    [sentinel] = client.connection_pool.sentinel_manager.sentinels
    assert sentinel.connection_pool.connection_kwargs["ssl_check_hostname"] is False


@pytest.mark.parametrize(
    "url, match",
    [
        ("redis+sentinel://h:26379", "service_name"),
        ("redis+sentinel://h:26379/a/b/c", "service_name"),
        ("redis+sentinel://h:26379/svc/x", "db must be an integer"),
        ("redis+sentinel://h:99999/svc", "out of range"),
        ("redis+cluster://h:7000/0", "no path"),
        ("redis+cluster://h:7000?sentinel_password=x", "unknown option"),
        ("redis+sentinel://u:secret@h/svc?bogus=1", "unknown option"),
        ("redis+sentinel://h/svc?timeout=-1", "seconds > 0"),
        ("rediss+cluster://h?ssl_check_hostname=maybe", "true or false"),
        ("localhost:6379", "redis://"),
        ("http://h", "redis://"),
    ],
)
def test_bad_urls_fail_at_configuration_time(url, match):
    with pytest.raises(ValueError, match=match) as info:
        RedisBackend(url)
    assert "secret" not in str(info.value)


def test_options_are_checked():
    with pytest.raises(ValueError, match="timeout"):
        connect("redis://h", timeout=0)
    with pytest.raises(ValueError, match="sentinel"):
        connect("redis://h", sentinel_password="x")
    with pytest.raises(ValueError, match="URL or clients"):
        RedisBackend("redis://h", aclient=redis.asyncio.Redis())


def _kwargs(client) -> dict:
    return client.connection_pool.connection_kwargs


def test_standalone_clients_fail_fast_with_no_retries():
    backend = connect("rediss://user:pw@example.invalid:6380/2", timeout=0.1, ssl_cert_reqs="none")
    assert backend.kind == "standalone" and backend.timeout == 0.1
    for client in (backend.client, backend.aclient):
        kw = _kwargs(client)
        assert kw["socket_timeout"] == 0.1 and kw["socket_connect_timeout"] == 0.1
        assert kw["retry"].get_retries() == 0
        assert kw["username"] == "user" and kw["password"] == "pw" and kw["db"] == 2
        assert "SSL" in client.connection_pool.connection_class.__name__
    assert backend.replica is backend.client  # no replicas: read-only scripts go to the primary
    assert "pw" not in repr(backend)
    # the URL's own options win over the defaults, as in redis-py
    assert _kwargs(connect("redis://h/0?socket_timeout=2").client)["socket_timeout"] == 2.0


def test_default_timeout_and_from_url():
    backend = RedisBackend.from_url("valkey://h:1")
    assert backend.timeout == 0.25
    assert _kwargs(backend.client)["socket_timeout"] == 0.25
    assert _kwargs(backend.client)["host"] == "h"


def test_sentinel_url_builds_sentinel_clients():
    backend = connect(
        "redis+sentinel://app:pw@127.0.0.1:1,127.0.0.1:2/mymaster/1"
        "?sentinel_username=s&sentinel_password=spw",
        timeout=0.2,
    )
    assert backend.kind == "sentinel"
    client, aclient = backend.client, backend.aclient
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool) and pool.is_master
    assert isinstance(aclient.connection_pool, redis.asyncio.sentinel.SentinelConnectionPool)
    kw = _kwargs(client)
    assert (kw["username"], kw["password"], kw["db"], kw["socket_timeout"]) == ("app", "pw", 1, 0.2)
    assert kw["retry"].get_retries() == 0
    manager = pool.sentinel_manager
    skw = _kwargs(manager.sentinels[0])
    assert (skw["username"], skw["password"], skw["socket_timeout"]) == ("s", "spw", 0.2)
    assert skw["retry"].get_retries() == 0
    replica = backend.replica
    assert replica is not client and not replica.connection_pool.is_master
    assert not backend.areplica.connection_pool.is_master
    # async: gatekeep's own deadline (it discounts a stalled event loop), redis-py's
    # asyncio timeouts (which do not) only a backstop; the Sentinels keep theirs
    far = backstop(0.2)
    assert far == BACKSTOP
    for aclient in (backend.aclient, backend.areplica):
        akw = _kwargs(aclient)
        assert (akw["socket_timeout"], akw["socket_connect_timeout"]) == (far, far)
        asentinel = aclient.connection_pool.sentinel_manager.sentinels[0]
        assert _kwargs(asentinel)["socket_timeout"] == 0.2
    assert backend.times_out_async(0.2) and not backend.times_out_async(0.1)


def test_client_objects_pass_through():
    sentinel = redis.sentinel.Sentinel([("127.0.0.1", 1)], socket_timeout=0.1)
    asentinel = redis.asyncio.sentinel.Sentinel([("127.0.0.1", 1)], socket_timeout=0.1)
    backend = RedisBackend.from_sentinel(sentinel, "svc", asentinel=asentinel)
    assert backend.client.connection_pool.service_name == "svc"
    assert backend.aclient.connection_pool.service_name == "svc"
    assert not backend.replica.connection_pool.is_master
    plain = redis.Redis()
    assert RedisBackend(plain).client is plain and RedisBackend(plain).timeout is None
    with pytest.raises(ValueError, match="Sentinel"):
        RedisBackend.from_sentinel()


def test_cluster_factory_is_lazy_and_configures_no_retries():
    factory = ClientFactory("redis+cluster://127.0.0.1:1,127.0.0.1:2", {"timeout": 0.05})
    assert factory.kind == "cluster" and factory.timeout == 0.05
    acluster = factory.aprimary()  # the async cluster client connects on first command
    assert isinstance(acluster, redis.asyncio.RedisCluster)
    assert acluster.retry.get_retries() == 0
    assert factory.async_deadline == 0.05
    akw = acluster.get_connection_kwargs()
    assert (akw["socket_timeout"], akw["socket_connect_timeout"]) == (BACKSTOP, BACKSTOP)
    with pytest.raises(redis.exceptions.RedisClusterException):
        factory.primary()  # the sync one connects at once: nothing listens there


def test_a_given_retry_is_carried_to_the_async_clients():
    from redis.backoff import ConstantBackoff
    from redis.retry import Retry

    given = Retry(ConstantBackoff(0.01), 2, supported_errors=(redis.ConnectionError,))
    backend = connect("redis://h:1/0", retry=given)
    assert _kwargs(backend.client)["retry"] is given
    aretry = _kwargs(backend.aclient)["retry"]
    assert isinstance(aretry, redis.asyncio.retry.Retry)
    assert aretry.get_retries() == 2 and aretry._backoff is given._backoff
    assert aretry._supported_errors == given._supported_errors


def test_a_retry_without_redis_pys_private_fields_falls_back_to_its_count():
    from redis.backoff import ConstantBackoff
    from redis.retry import Retry

    given = Retry(ConstantBackoff(0.01), 3)
    del given._backoff  # redis-py's Retry, were its private fields renamed
    backend = connect("redis://h:1/0", retry=given)
    aretry = _kwargs(backend.aclient)["retry"]
    assert isinstance(aretry, redis.asyncio.retry.Retry) and aretry.get_retries() == 3

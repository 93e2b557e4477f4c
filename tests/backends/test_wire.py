"""The lean round trip is used only where its connections know their server."""

from __future__ import annotations

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from gatekeep.backends._wire import AsyncConnections, fast_pool, pack


def test_pack_is_resp():
    assert pack(("EVALSHA", "ab", 1, "k", b"\xff")) == (
        b"*5\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$1\r\nk\r\n$1\r\n\xff\r\n"
    )


def test_plain_clients_take_the_lean_path():
    client = redis.Redis(port=1)
    assert fast_pool(client) is client.connection_pool
    assert AsyncConnections.usable(redis.asyncio.Redis(port=1))


def test_sentinel_and_single_connection_clients_do_not():
    # A Sentinel pool's connections ask the pool where the primary is; made
    # outside the pool they would connect to localhost:6379, someone else's Redis.
    assert fast_pool(redis.sentinel.Sentinel([("127.0.0.1", 1)]).master_for("m")) is None
    asentinel = redis.asyncio.sentinel.Sentinel([("127.0.0.1", 1)])
    assert not AsyncConnections.usable(asentinel.master_for("m"))
    assert not AsyncConnections.usable(redis.asyncio.Redis(port=1, single_connection_client=True))


def test_sync_connections_are_reused_and_not_shared_after_fork(monkeypatch):
    from gatekeep.backends._wire import SyncConnections

    conns = SyncConnections(redis.Redis(port=1).connection_pool)
    first = conns.get()
    conns.release(first)
    assert conns.get() is first  # reused, without the pool
    conns.release(first)
    monkeypatch.setattr("os.getpid", lambda: -1)  # as in a forked child
    assert conns.get() is not first

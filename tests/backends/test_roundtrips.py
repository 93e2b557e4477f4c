"""One decision = one round trip, counted on the client and on the server."""

from __future__ import annotations

import pytest
import redis
from redis.connection import Connection

from gatekeep import ALGORITHMS, Limiter, RedisBackend


def _commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}


class CountingConnection(Connection):
    sent = 0

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        CountingConnection.sent += 1
        return super().send_packed_command(command, check_health)


@pytest.mark.redis
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_a_hit_is_one_round_trip(server_factory, algorithm):
    server = server_factory("redis")
    admin = redis.Redis(port=server.port)
    pool = redis.ConnectionPool(port=server.port, connection_class=CountingConnection)
    limiter = Limiter(
        ["10/s", "100/min", "1000/h"],
        algorithm=algorithm,
        backend=RedisBackend(redis.Redis(connection_pool=pool)),
    )
    limiter.hit("warm-up")  # loads the script (NOSCRIPT, then EVAL) and opens the connection

    before, CountingConnection.sent = _commandstats(admin), 0
    for _ in range(5):
        limiter.hit("k")
    after = _commandstats(admin)

    assert CountingConnection.sent == 5
    assert after["evalsha"] - before["evalsha"] == 5
    # nothing else reached the server from the client but the five scripts (and our INFO)
    top_level = {"evalsha", "eval", "info"}
    outside = {
        c: n - before.get(c, 0)
        for c, n in after.items()
        if c not in top_level and n != before.get(c, 0)
    }
    script_inner = {"get", "set", "llen", "lindex", "lpush", "ltrim", "pexpire", "time", "del"}
    assert set(outside) <= script_inner, outside
    admin.close()


@pytest.mark.redis
def test_hit_many_is_one_round_trip(server_factory):
    server = server_factory("redis")
    pool = redis.ConnectionPool(port=server.port, connection_class=CountingConnection)
    limiter = Limiter("10/s", backend=RedisBackend(redis.Redis(connection_pool=pool)))
    limiter.hit("warm-up")
    CountingConnection.sent = 0
    decisions = limiter.hit_many([f"k{i}" for i in range(100)])
    assert len(decisions) == 100 and all(d.allowed for d in decisions)
    assert CountingConnection.sent == 1


@pytest.mark.redis
def test_script_cache_flush_is_transparent(server):
    """After SCRIPT FLUSH (as after a restart or failover) the next call reloads it."""
    backend = RedisBackend(server.url)
    limiter = Limiter("3/min", backend=backend)
    assert limiter.hit("flush").remaining == 2
    backend.client.script_flush()
    assert limiter.hit("flush").remaining == 1
    backend.client.script_flush()
    assert [d.allowed for d in limiter.hit_many(["flush", "flush"])] == [True, False]
    backend.close()


def test_all_keys_of_a_call_share_one_cluster_slot():
    from redis.crc import key_slot

    limiter = Limiter(algorithm="sliding_log", prefix="app")
    for key in ["user:1", "{odd}", "}{", "x}y{z", "%7B", "ünïcode"]:
        plan = limiter.plan(["1/s", "10/min", "100/h"])
        slots = {key_slot(k.encode()) for k in limiter.keys(key, plan)}
        assert len(slots) == 1, key


@pytest.mark.redis
def test_a_reload_is_logged_once(server, caplog):
    backend = RedisBackend(server.url)
    limiter = Limiter("3/min", backend=backend)
    limiter.hit("log")
    backend.client.script_flush()
    with caplog.at_level("INFO", logger="gatekeep.redis"):
        for _ in range(3):
            limiter.hit("log")
    reloads = [r for r in caplog.records if getattr(r, "gatekeep_event", "") == "script_reloaded"]
    assert len(reloads) == 1 and reloads[0].script == "token_bucket"
    backend.close()

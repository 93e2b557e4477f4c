"""``gatekeep inspect``: decoding limiter keys, and reading their state without changing it."""

from __future__ import annotations

import io
import json
import re

import pytest
import redis

from gatekeep import ALGORITHMS, Limiter, RedisBackend
from gatekeep.cli import main
from gatekeep.cli.inspect_cmd import describe, parse_key
from gatekeep.rates import parse_rate


def inspect(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    rc = main(["inspect", *argv], out=out)
    return rc, out.getvalue()


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("app", ["", "shop", "a.b:c-d_e"])
@pytest.mark.parametrize("key", ["user:42", "{x}", "a}b{", "100%", "%7B", "ünï cødé", "k:tb:5/1"])
def test_parse_key_round_trips_every_key_the_limiter_makes(algorithm, app, key):
    rate = "7/2s burst 9" if algorithm in ("token_bucket", "gcra") else "7/2s"
    limiter = Limiter(rate, algorithm=algorithm, prefix=app)
    [redis_key] = limiter.keys(key, limiter.plan(None))
    lk = parse_key(redis_key)
    assert lk is not None
    assert (lk.name, lk.app, lk.algorithm.name, lk.rate) == (key, app, algorithm, parse_rate(rate))


def test_parse_key_burst_and_rejects():
    lk = parse_key("gk:{k}:tb:10/1000000b20")
    assert lk is not None and str(lk.rate) == "10/1s burst 20"
    for bad in (
        "gk:{k}:xx:10/1000000",
        "gk:{k}:tb:10/5",
        "gk:{k}:tb:0/1000000",
        "other:{k}:tb:10/1000000",
        "gk:{k}:tb:10/1000000:extra",
        "gk:k:tb:1/1000000",
        "gk:s:{abcd}" + "x" * 43,
    ):
        assert parse_key(bad) is None, bad


def test_inspect_needs_a_url_and_a_key(monkeypatch):
    monkeypatch.delenv("GATEKEEP_REDIS_URL", raising=False)
    assert inspect("gk:{k}:tb:10/1000000")[0] == 2
    assert inspect("--url", "redis://127.0.0.1:1/0")[0] == 2  # neither KEY nor --pattern


@pytest.mark.redis
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_inspect_each_algorithm_without_changing_anything(server, prefix, algorithm):
    backend = RedisBackend(server.url)
    limiter = Limiter("5/minute", backend=backend, algorithm=algorithm, prefix=prefix)
    for _ in range(3):
        assert limiter.hit("user:42").allowed
    [key] = limiter.keys("user:42", limiter.plan(None))
    client = redis.Redis.from_url(server.url)
    dump_before, ttl_before = client.dump(key), client.pttl(key)

    rc, text = inspect(key, "--url", server.url, "--json")
    assert rc == 0
    info = json.loads(text)
    lim = info["limiter"]
    assert (lim["algorithm"], lim["rate"], lim["app_prefix"], lim["key"]) == (
        algorithm,
        "5/1m",
        prefix,
        "user:42",
    )
    assert (lim["limit"], lim["remaining"], lim["next_request"]) == (5, 2, "allowed")
    assert 0 < lim["reset_after"] <= 120  # the sliding window counter: up to 2 windows
    assert info["exists"] and 0 < info["ttl_ms"] <= 120_000

    # read-only: the stored value is byte for byte the same, the TTL only ran down
    assert client.dump(key) == dump_before
    assert client.pttl(key) <= ttl_before
    # and the next hit sees exactly what inspect said
    assert limiter.hit("user:42").remaining == 1

    rc, text = inspect(key, "--url", server.url)
    assert rc == 0
    assert re.search(rf"^algorithm +{algorithm}$", text, re.M)
    assert re.search(r"^remaining +1 of 5$", text, re.M)
    backend.close()


@pytest.mark.redis
def test_inspect_denied_missing_and_foreign_keys(server, prefix):
    backend = RedisBackend(server.url)
    limiter = Limiter("2/minute burst 3", backend=backend, algorithm="gcra", prefix=prefix)
    for _ in range(4):
        limiter.hit("ip:10.0.0.1")
    [key] = limiter.keys("ip:10.0.0.1", limiter.plan(None))
    lim = json.loads(inspect(key, "--url", server.url, "--json")[1])["limiter"]
    assert (lim["rate"], lim["limit"], lim["remaining"], lim["next_request"]) == (
        "2/1m burst 3",
        3,
        0,
        "denied",
    )
    assert lim["retry_after"] > 0

    # a key that was never hit (or expired): full capacity, nothing stored
    rc, text = inspect(key.replace("ip:10.0.0.1", "ip:10.0.0.2"), "--url", server.url)
    assert rc == 0
    assert re.search(r"^remaining +3 of 3$", text, re.M)
    assert "nothing (never hit, or expired)" in text

    client = redis.Redis.from_url(server.url)
    client.set(f"{prefix}:plain", "hello", ex=60)
    rc, text = inspect(f"{prefix}:plain", "--url", server.url)
    assert rc == 1
    assert "not a limiter key" in text and "'hello'" in text

    session_key = f"gk:{prefix}:s:{{abcd}}" + "x" * 43
    client.hset(session_key, mapping={"d:secret": "do-not-show"})
    client.expire(session_key, 60)
    rc, text = inspect(session_key, "--url", server.url)
    assert rc == 1
    assert "a gatekeep session key" in text and "do-not-show" not in text
    client.delete(f"{prefix}:plain", session_key)
    backend.close()


@pytest.mark.redis
def test_inspect_pattern_lists_keys_bounded(server, prefix):
    backend = RedisBackend(server.url)
    limiter = Limiter("10/minute", backend=backend, algorithm="sliding_log", prefix=prefix)
    for i in range(12):
        limiter.hit(f"client-{i}", cost=2)
    rc, text = inspect("--pattern", f"gk:{prefix}:*", "--url", server.url)
    assert rc == 0
    assert text.count("sliding_log 10/1m: 8/10 left") == 12
    assert f"12 key(s) matching 'gk:{prefix}:*'" in text
    rc, text = inspect("--pattern", f"gk:{prefix}:*", "--url", server.url, "--limit", "5", "--json")
    listing = json.loads(text)
    assert len(listing["keys"]) == 5 and listing["truncated"] is True
    backend.close()


@pytest.mark.redis
def test_inspect_unreachable_server():
    from gatekeep.testing import free_port

    rc, text = inspect("gk:{k}:tb:10/1000000", "--url", f"redis://127.0.0.1:{free_port()}/0")
    assert rc == 1
    assert "error reading" in text or "cannot connect" in text


@pytest.mark.redis
@pytest.mark.parametrize("algorithm", ["token_bucket", "gcra", "fixed_window"])
def test_inspect_shows_a_settled_debt(server, prefix, algorithm):
    backend = RedisBackend(server.url)
    limiter = Limiter("10/minute", backend=backend, algorithm=algorithm, prefix=prefix)
    limiter.reserve("llm", cost=4).settle(13)  # 3 beyond the limit
    [key] = limiter.keys("llm", limiter.plan(None))
    lim = json.loads(inspect(key, "--url", server.url, "--json")[1])["limiter"]
    assert (lim["remaining"], lim["debt"], lim["next_request"]) == (0, 3, "denied")
    rc, text = inspect(key, "--url", server.url)
    assert rc == 0
    assert re.search(r"^debt +3 beyond the limit", text, re.M)
    backend.close()


def test_inspect_shows_a_penalty_block(server, prefix):
    """A limiter key shows its block (and a blocked next request); the block key reads
    on its own: until when, and the breaches counted."""
    limiter = Limiter("2/minute", backend=RedisBackend(server.url), block=[60, 600], prefix=prefix)
    for _ in range(3):
        limiter.hit("user:1")
    limit_key, block_key = limiter.keys("user:1", limiter.default_plan)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        lim = describe(client, limit_key)["limiter"]
        assert lim["next_request"] == "denied (blocked)" and 59 < lim["retry_after"] <= 60
        assert lim["block"]["blocked"] and lim["block"]["breaches"] == 1
        info = describe(client, block_key)
        assert info["limiter"] is None and info["block"]["blocked"]
        assert 59 < info["block"]["ends_in"] <= 60 and 659_000 < info["ttl_ms"] <= 660_000
        limiter.reset("user:1")
        assert "block" not in describe(client, limit_key)["limiter"]
    finally:
        client.close()

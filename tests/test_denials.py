"""The local cache of denied keys (issue 14 item 5): a key Redis denies until T is
answered in process until T, with no round trip, and never allowed by it.

The flood test reads Redis MONITOR: after the first denial, a flood of hits for that
key sends no command at all (a marker command, sent afterwards from another client,
ends the read: no sleep, no polling).
"""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest
import redis

from gatekeep import AsyncLimiter, FailoverBackend, Limiter, MemoryBackend, RedisBackend
from gatekeep.denials import DenialCache
from gatekeep.exporters import samples
from gatekeep.metrics import Metrics
from gatekeep.testing import free_port

pytestmark = pytest.mark.redis


@pytest.fixture
def url(server):
    return server.url


def monitored(url: str, action) -> list[str]:
    """The commands the server received while ``action()`` ran (MONITOR)."""
    watcher = redis.Redis.from_url(url)
    marker = f"end-{uuid.uuid4().hex}"
    with watcher.monitor() as m:
        action()
        redis.Redis.from_url(url).echo(marker)
        seen = []
        while True:
            info = m.next_command()
            command = info["command"]
            if marker in command:
                break
            if info.get("client_type") != "lua" and not command.startswith(("HELLO", "CLIENT")):
                seen.append(command)  # not a script's own command, not a connection's set-up
    watcher.close()
    return seen


def test_a_flood_of_denied_hits_sends_nothing_after_the_first(url):
    metrics = Metrics()
    limiter = Limiter(
        "2/minute", block=60, backend=RedisBackend(url), prefix=uuid.uuid4().hex, metrics=metrics
    )
    limiter.hit("attacker")
    limiter.hit("attacker")

    def flood() -> None:
        first = limiter.hit("attacker")  # the breach: Redis blocks the key for 60 s
        assert not first and first.retry_after == 60
        for _ in range(1000):
            d = limiter.hit("attacker")
            assert not d and 59 < d.retry_after <= 60 and d.remaining == 0

    seen = monitored(url, flood)
    assert len(seen) == 1 and "EVALSHA" in seen[0]
    assert limiter.hit("someone-else")  # other keys still ask Redis, and pass
    stats = metrics.stats()
    assert stats["decisions"]["default"]["denied"] == 1001
    assert stats["watched"]["default:denials"]["local_denials"] == 1000
    exported = {(n, tuple(labels.values())): v for n, _, labels, v in samples(stats)}
    assert exported["gatekeep_local_denials", ("default:denials",)] == 1000


def test_async_flood_is_answered_locally_too(url):
    backend = RedisBackend(url)
    limiter = AsyncLimiter("1/minute", block=30, backend=backend, prefix=uuid.uuid4().hex)

    async def run() -> None:
        await limiter.hit("k")
        assert not await limiter.hit("k")
        for _ in range(200):
            assert (await limiter.hit("k")).retry_after > 29
        await backend.aclose()

    seen = monitored(url, lambda: asyncio.run(run()))
    assert sum("EVALSHA" in c for c in seen) == 2


def test_a_denial_without_block_is_held_for_its_cost_until_it_fits(url):
    limiter = Limiter("5/minute", backend=RedisBackend(url), prefix=uuid.uuid4().hex)
    limiter.hit("k", cost=3)
    d = limiter.hit("k", cost=4)  # 2 left: 4 fits in 24 s
    assert not d and 23 < d.retry_after <= 24

    def more() -> None:
        assert not limiter.hit("k", cost=4)  # held: same cost
        assert not limiter.hit("k", cost=5)  # held: a larger cost needs as long at least
        assert limiter.hit("k", cost=2)  # a smaller cost asks Redis, and fits

    seen = monitored(url, more)
    assert sum("EVALSHA" in c for c in seen) == 1


def test_reset_and_refund_here_forget_the_entry_another_process_keeps_it(url):
    prefix = uuid.uuid4().hex
    here = Limiter("1/minute", block=60, backend=RedisBackend(url), prefix=prefix)
    other = Limiter("1/minute", block=60, backend=RedisBackend(url), prefix=prefix)
    for limiter in (here, other):
        limiter.hit("k")
        assert not limiter.hit("k") and not limiter.hit("k")
    here.reset("k")  # the block is gone in Redis and in here's cache ...
    assert here.hit("k")
    assert not other.hit("k")  # ... not in other's: held until T (documented)
    assert len(other.denials) == 1

    assert not here.hit("k")  # 1/minute spent: a breach, blocked again, held here
    assert len(here.denials) == 1
    here.refund("k")  # forgets the entry, not the block: Redis still denies
    assert len(here.denials) == 0
    assert not here.hit("k") and len(here.denials) == 1


def test_the_cache_is_bounded_and_entries_end(monkeypatch):
    clock = [10**12]
    monkeypatch.setattr("gatekeep.denials.monotonic_ns", lambda: clock[0])
    limiter = Limiter("1/minute", backend=MemoryBackend(), denial_cache=3, metrics=None)
    plan = limiter.default_plan
    cache = limiter.denials
    assert isinstance(cache, DenialCache) and cache.max_keys == 3
    denied = limiter.peek("x", cost=2)  # cost 2 > burst 1: never fits, never held
    cache.remember(plan, ["x"], 2, denied, clock[0])
    assert len(cache) == 0
    limiter.hit("a", now=1_790_000_000)
    denial = limiter.peek("a", now=1_790_000_000)
    assert not denial and denial.retry_after == 60
    for key in ("a", "b", "c", "d"):
        cache.remember(plan, [key], 1, denial, clock[0])
    assert len(cache) == 3 and cache.evictions == 1
    assert cache.check(plan, ["a"], 1) is None  # the oldest went first
    clock[0] += 59_999_999_999
    held = cache.check(plan, ["b"], 1)
    assert held is not None and math.isclose(held.retry_after, 1e-9, abs_tol=1e-9)
    clock[0] += 1
    assert cache.check(plan, ["b"], 1) is None and len(cache) == 2  # ended at T


def test_on_by_default_for_redis_and_failover_off_in_process(url):
    assert Limiter("1/second").denials is None
    assert Limiter("1/second", backend=RedisBackend(url)).denials is not None
    assert Limiter("1/second", backend=FailoverBackend(RedisBackend(url))).denials is not None
    assert Limiter("1/second", backend=RedisBackend(url), denial_cache=False).denials is None
    with pytest.raises(ValueError, match="max_keys"):
        Limiter("1/second", backend=RedisBackend(url), denial_cache=0)


def test_an_explicit_clock_is_never_cached(url):
    limiter = Limiter("1/minute", backend=RedisBackend(url), prefix=uuid.uuid4().hex)
    limiter.hit("k", now=1_790_000_000)
    assert not limiter.hit("k", now=1_790_000_000)
    assert len(limiter.denials) == 0
    assert limiter.hit("k", now=1_790_000_060)


def test_blocks_in_the_failover_fallback():
    """Redis away: the fallback twin enforces this instance's share, with its blocks."""
    dead = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    backend = FailoverBackend(dead, instances=2, metrics=None)
    limiter = Limiter("4/minute", backend=backend, block=60, metrics=None)
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]  # 2 of 4
    d = limiter.hit("k")
    assert not d and 59 < d.retry_after <= 60
    assert backend.fallback_calls == 3  # the 4th was held here
    limiter.reset("k")
    assert limiter.hit("k")

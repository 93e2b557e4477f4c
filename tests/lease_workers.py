"""The processes of tests/test_concurrency_limiter.py: a module of their own, so that a
spawned child imports gatekeep and no more (8 of them at once, on a busy CI machine)."""

from __future__ import annotations

import time

from gatekeep import ConcurrencyLimiter, RedisBackend

PROCESSES = 8
LIMIT = 3
ROUNDS = 8


def worker(url, prefix, start, inside, peak, done) -> None:  # pragma: no cover
    limiter = ConcurrencyLimiter(LIMIT, backend=RedisBackend(url), prefix=prefix, metrics=None)
    limiter.peek("shared")
    start.wait(60)
    for _ in range(ROUNDS):
        while not (slot := limiter.acquire("shared")).acquired:
            time.sleep(0.005)
        with slot:
            with inside.get_lock():
                inside.value += 1
                peak.value = max(peak.value, inside.value)
            time.sleep(0.002)
            with inside.get_lock():
                inside.value -= 1
        with done.get_lock():
            done.value += 1


TTL = 0.5


def holder(url, prefix, held) -> None:  # pragma: no cover
    limiter = ConcurrencyLimiter(1, backend=RedisBackend(url), prefix=prefix, ttl=TTL)
    limiter.acquire("k")
    held.set()
    time.sleep(60)

"""Where should a session load go? Measured on loopback: ``python tests/ha/bench_sessions.py``.

Starts a primary and a replica (throwaway, free ports), then times, per call
(median and p99 of N, sync, the lean round trip):

- load on the primary, touching the idle deadline (what gatekeep does): 1 round trip;
- load read-only on the replica (EVALSHA_RO), no touch;
- load read-only on the replica + a separate touch on the primary: 2 round trips;
- save, and save followed by ``WAIT 1`` in the same pipeline (durable writes);

and counts how often a replica read made right after a save returns the value
from before it (read-your-writes broken by replication lag).
"""

from __future__ import annotations

import statistics
import sys
import time

import redis

from gatekeep import RedisBackend
from gatekeep.sessions import SessionStore
from gatekeep.sessions._engine import Call
from gatekeep.testing import ServerProcess, find_server

N = 3000


def timed(fn, n: int = N) -> tuple[float, float]:
    for _ in range(100):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return statistics.median(times) * 1e6, times[int(len(times) * 0.99)] * 1e6


def main() -> None:
    binary = find_server("redis")
    primary = ServerProcess.start(binary, args=("--repl-diskless-sync-delay", "0"))
    replica = ServerProcess.start(
        binary,
        args=("--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", str(primary.port)),
    )
    try:
        rc = redis.Redis(port=replica.port)
        while rc.info("replication").get("master_link_status") != "up":
            time.sleep(0.05)
        backend = RedisBackend(
            redis.Redis(port=primary.port), replica=redis.Redis(port=replica.port)
        )
        store = SessionStore(backend, prefix="bench", metrics=None)
        durable = SessionStore(
            backend, prefix="bench", metrics=None, wait_replicas=1, wait_timeout=0.1
        )
        session = store.create({"cart": ["apple", "pear"], "theme": "dark", "n": 0})
        sid = session.id
        assert sid is not None
        time.sleep(0.2)
        touch = store.load_call(sid)
        peek = touch.fallback
        assert isinstance(peek, Call)
        ex = store.executor

        results = {
            "store.load(): primary, with touch (gatekeep)": timed(lambda: store.load(sid)),
            "load script on the primary, with touch": timed(
                lambda: ex.backend.eval_batch([_sc(touch)])
            ),  # type: ignore[attr-defined]
            "load script on the primary, read-only": timed(
                lambda: ex.backend.eval_batch([_sc(peek)])
            ),  # type: ignore[attr-defined]
            "load script on the replica, read-only": timed(
                lambda: ex.backend.eval_batch([_sc(peek)], read_only=True)
            ),  # type: ignore[attr-defined]
            "replica read-only + touch on the primary": timed(
                lambda: (
                    ex.backend.eval_batch([_sc(peek)], read_only=True),  # type: ignore[attr-defined]
                    ex.backend.eval_batch([_sc(touch)]),
                )
            ),  # type: ignore[attr-defined]
        }
        counter = iter(range(10**9))

        def save(s: SessionStore) -> None:
            session["n"] = next(counter)
            s.save(session)

        results["save"] = timed(lambda: save(store))
        results["save + WAIT 1 (same pipeline)"] = timed(lambda: save(durable))
        stale = 0
        for _ in range(N):
            session["n"] = value = next(counter)
            store.save(session)
            reply = ex.backend.eval_batch([_sc(peek)], read_only=True)[0]  # type: ignore[attr-defined]
            pairs = dict(zip(reply[:-1:2], reply[1:-1:2], strict=True))  # the hash, then now
            if pairs[b"d:n"] != str(value).encode():
                stale += 1
        width = max(map(len, results))
        print(
            f"redis-server {redis.Redis(port=primary.port).info()['redis_version']}, "
            f"N={N}, Python {sys.version.split()[0]}"
        )
        for name, (median, p99) in results.items():
            print(f"{name:<{width}}  median {median:6.0f} µs   p99 {p99:6.0f} µs")
        print(
            f"replica reads right after a save that missed it: {stale} of {N} "
            f"({100 * stale / N:.1f} %)"
        )
    finally:
        primary.stop()
        replica.stop()


def _sc(call: Call):
    from gatekeep.sessions._engine import session_script

    return (session_script(call.script), call.keys, ("", *call.args))


if __name__ == "__main__":
    main()

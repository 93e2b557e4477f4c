"""Penalty blocks and the local cache of denied keys (issue 14 items 4-6), on a throwaway
redis-server (or valkey-server) this script starts on a free port.

1. Per operation, through ``Limiter.hit`` on a ``RedisBackend``: client wall µs, round
   trips, and the server's µs (``INFO commandstats``, each µs counted once: see
   ``_common``), for the plain hit beside a hit with ``block`` (allowed: the block
   driver's cost), a blocked key's denial without the local cache (what Redis pays per
   denied request), and with it (what a flood costs once the key is held).
2. A local denial's latency: ``Limiter.hit`` on a held key, best of ``--repeat``.
3. A simulated attack: one key, ``--rps`` requests per second, paced, for
   ``--seconds``; the share of denials answered locally, and the EVALSHA calls Redis
   saw, with a block and without (the held wait is then the next token's).

    python benchmarks/bench_blocks.py [--rounds 5] [--ops 2000] [--rps 10000] [--seconds 1]
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).parent))

from _common import Op, median, run_rounds, table

from gatekeep import Limiter, RedisBackend
from gatekeep.testing import ServerProcess, find_server

#: Calls per timing of a local denial.
N = 20_000


def cases(url: str, keys: int) -> dict[str, tuple[Op, Limiter]]:
    """name -> (op(n): n hits, its limiter)."""
    backend = RedisBackend(url)
    plain = Limiter("1000000/minute", backend=backend, prefix="plain")
    block = Limiter("1000000/minute", backend=backend, prefix="block", block=[60, 600])
    blocked = Limiter("1/hour", backend=backend, prefix="denied", block=3600, denial_cache=False)
    held = Limiter("1/hour", backend=backend, prefix="held", block=3600)
    names = [f"user{i}" for i in range(keys)]
    for limiter in (blocked, held):  # the attacker's key: blocked for an hour
        limiter.hit("attacker")
        limiter.hit("attacker")

    def cycling(limiter: Limiter) -> Op:
        def op(n: int) -> None:
            hit = limiter.hit
            for i in range(n):
                hit(names[i % keys])

        return op

    def attacker(limiter: Limiter) -> Op:
        def op(n: int) -> None:
            hit = limiter.hit
            for _ in range(n):
                hit("attacker")

        return op

    return {
        "plain hit (allowed)": (cycling(plain), plain),
        "hit with block=[60, 600] (allowed)": (cycling(block), block),
        "blocked key, no local cache (denied)": (attacker(blocked), blocked),
        "blocked key, held locally (denied)": (attacker(held), held),
    }


def attack(url: str, limits: str, block: int | None, rps: int, seconds: float) -> list[object]:
    """One key at ``rps`` requests per second: denials held locally, EVALSHA calls."""
    probe = redis.Redis.from_url(url)
    limiter = Limiter(limits, backend=RedisBackend(url), prefix=f"attack{block}", block=block)
    probe.config_resetstat()
    total = int(rps * seconds)
    allowed = 0
    start = time.perf_counter()
    for i in range(total):
        while time.perf_counter() - start < i / rps:  # paced: the i-th at i / rps
            pass
        allowed += bool(limiter.hit("attacker"))
    took = time.perf_counter() - start
    evalsha = int(probe.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    assert limiter.denials is not None
    local = limiter.denials.local_denials
    denied = total - allowed
    probe.close()
    return [
        f"{limits}" + (f" block {block}" if block else ""),
        total,
        f"{total / took:.0f}",
        allowed,
        denied,
        local,
        f"{local / denied:.4f}" if denied else "-",
        evalsha,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ops", type=int, default=2000, help="calls per case per round")
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5, help="local denial timings (best of)")
    ap.add_argument("--rps", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--server", choices=("redis", "valkey"), default="redis")
    args = ap.parse_args()

    server = ServerProcess.start(find_server(args.server))
    try:
        probe = redis.Redis(port=server.port)
        version = probe.info("server")["redis_version"]
        made = cases(server.url, args.keys)
        ops = {name: (op, args.ops) for name, (op, _) in made.items()}
        samples, mixes = run_rounds(probe, ops, args.rounds)
        held = made["blocked key, held locally (denied)"][1]
        memory = Limiter("1000000/minute", metrics=None)  # the in-process hit, for scale
        per_call = {  # wall, and this process's CPU (the same on a quiet machine)
            (name, clock): min(timeit.Timer(fn, timer=f).repeat(args.repeat, N)) / N
            for name, fn in (
                ("held", lambda: held.hit("attacker")),
                ("memory", lambda: memory.hit("someone")),
            )
            for clock, f in (("wall", time.perf_counter), ("cpu", time.process_time))
        }
        attacks = [
            attack(server.url, "100/second", None, args.rps, args.seconds),
            attack(server.url, "100/second", 60, args.rps, args.seconds),
        ]
    finally:
        server.stop()

    print(
        f"# penalty blocks and the denied-key cache: {Path(server.binary).name} {version}, "
        f"{args.rounds} rounds x {args.ops} sequential Limiter.hit, medians"
    )
    print()
    rows = []
    for name in ops:
        s = median(samples[name])
        rows.append(
            [
                name,
                f"{s.wall_us:.2f}",
                f"{s.cpu_us:.2f}",
                f"{mixes[name].round_trips:.3f}",
                f"{s.server_us:.2f}",
                f"{s.server_scripts_us:.2f}",
            ]
        )
    header = ["operation", "wall µs", "client cpu µs", "round trips", "server µs", "evalsha µs"]
    print(table(header, rows))
    print()
    for name, what in (
        ("held", "a local denial (Limiter.hit on a held key)"),
        ("memory", "for scale, an allowed hit on MemoryBackend (the fused in-process path)"),
    ):
        print(
            f"{what}, best of {args.repeat} x {N}: {per_call[name, 'wall'] * 1e6:.2f} µs wall, "
            f"{per_call[name, 'cpu'] * 1e6:.2f} µs CPU per call"
        )
    print()
    header = ["attack", "requests", "req/s", "allowed", "denied", "held", "hit rate", "EVALSHA"]
    print(table(header, attacks))


if __name__ == "__main__":
    main()

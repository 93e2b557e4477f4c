"""The lean benchmark's measuring machinery (``benchmarks/_common.py``) on two tiny cases:
what it reports must be what the server did."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import redis

# loaded from its file: benchmarks/ is not a package, and stays off sys.path
_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "_common.py"
_SPEC = importlib.util.spec_from_file_location("gatekeep_bench_common", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
bench = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = bench  # dataclasses look their module up
_SPEC.loader.exec_module(bench)

pytestmark = pytest.mark.redis


def test_quick_rounds_count_round_trips_inner_commands_and_server_time(server_factory):
    server = server_factory("redis")
    probe = redis.Redis(port=server.port)
    client = redis.Redis(port=server.port)
    sha = client.script_load("redis.call('SET', KEYS[1], 'x'); return redis.call('GET', KEYS[1])")
    ping = bench.SyncPing(server.port)
    try:
        ops = {
            "ping": (lambda n: [ping() for _ in range(n)], 50),
            "script": (lambda n: [client.evalsha(sha, 1, "k") for _ in range(n)], 50),
        }
        samples, mixes = bench.run_rounds(probe, ops, rounds=3, mix_n=5)
    finally:
        ping.close()
    assert (mixes["ping"].sent, mixes["ping"].inner) == ({"ping": 1.0}, {})
    assert mixes["script"].sent == {"evalsha": 1.0}
    assert mixes["script"].inner == {"set": 1.0, "get": 1.0}
    assert (mixes["script"].round_trips, mixes["script"].commands) == (1.0, 3.0)
    assert [len(s) for s in samples.values()] == [3, 3]
    med = {name: bench.median(s) for name, s in samples.items()}
    script = med["script"]
    # counted once, the script's line is all its time; summed over every line, its SET
    # and GET count twice
    assert script.server_us == script.server_scripts_us > 0
    assert script.server_all_lines_us > script.server_us
    assert med["ping"].server_scripts_us == 0  # (a PING may take < 1 µs: no lower bound)
    for sample in med.values():
        assert sample.wall_us > 0 and sample.cpu_us > 0
    # the median of the rounds' ratios, not the ratio of medians
    rounds = [x.cpu_us / y.cpu_us for x, y in zip(samples["script"], samples["ping"], strict=True)]
    assert bench.ratio(samples, "script", "ping", "cpu_us") == sorted(rounds)[1]

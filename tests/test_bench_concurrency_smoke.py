"""benchmarks/bench_concurrency.py's operations run (a few of each), so it does not rot."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from gatekeep import RedisBackend

pytestmark = pytest.mark.redis

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_every_operation_runs(server, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_concurrency

    loop = asyncio.new_event_loop()
    backend = RedisBackend(server.url)
    try:
        for name, op in bench_concurrency.ops(backend, loop).items():
            op(3)
            assert name
        assert bench_concurrency.AFTER_BODY  # the ASGI release was timed
    finally:
        backend.close()
        loop.run_until_complete(backend.aclose())
        loop.close()
        sys.modules.pop("bench_concurrency", None)

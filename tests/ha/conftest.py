"""Fixtures for the fault-injection suite: real processes on loopback only."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from gatekeep.testing import ServerNotFound, find_server

from .topology import ClusterTopology, SentinelTopology

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and the HA suite cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_binary() -> str:
    try:
        return find_server("redis")  # Sentinel mode: redis-server
    except ServerNotFound as exc:
        _missing(str(exc))
        raise


@pytest.fixture
def sentinel_topology(redis_binary: str) -> Iterator[SentinelTopology]:
    """A primary, its replica and three Sentinels (down-after 1000 ms), per test."""
    topo = SentinelTopology.start(redis_binary)
    yield topo
    topo.stop()


@pytest.fixture(scope="module")
def cluster(redis_binary: str) -> Iterator[ClusterTopology]:
    """Three masters with a replica each (node timeout 1000 ms), per module."""
    cli = shutil.which("redis-cli")
    if cli is None:
        _missing("redis-cli is needed to create a cluster")
    topo = ClusterTopology.start(redis_binary, cli)  # type: ignore[arg-type]
    yield topo
    topo.stop()

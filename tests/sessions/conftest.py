"""Session fixtures: a store on each backend, and raw ASGI / WSGI calls (no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gatekeep import RedisBackend
from gatekeep.sessions import SessionStore

#: The session stores: the in-process twin and the real servers.
STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("valkey", id="valkey", marks=pytest.mark.redis),
]

SECRET = "test-secret-key"


@pytest.fixture(params=STORES)
async def store_backend(request: pytest.FixtureRequest, servers: Any) -> AsyncIterator[Any]:
    # async: the teardown runs in the test's event loop, so the idle async
    # connections are closed there, not left to be collected after it is closed
    if request.param == "memory":
        yield None
        return
    backend = RedisBackend(servers.get(request.param).url)
    yield backend
    await backend.aclose()
    backend.close()


@pytest.fixture
def make_store(store_backend: Any, prefix: str):
    def make(**options: Any) -> SessionStore:
        options.setdefault("idle_timeout", 100)
        options.setdefault("absolute_timeout", 1000)
        return SessionStore(store_backend, prefix=prefix, **options)

    return make


@pytest.fixture
def store(make_store) -> SessionStore:
    return make_store()

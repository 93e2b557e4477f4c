"""One ``RedisBackend`` per shared server kind for a test module (the Lua-vs-twin and key
lifetime tests run many hypothesis examples: a client per example would reconnect)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gatekeep import RedisBackend


@pytest.fixture(scope="module")
def server_backend(servers) -> Iterator[Callable[[str], RedisBackend]]:
    """``server_backend("redis")`` / ``("valkey")``: a backend on that shared server."""
    clients: dict[str, RedisBackend] = {}

    def get(kind: str) -> RedisBackend:
        server = servers.get(kind)
        if server.url not in clients:
            clients[server.url] = RedisBackend(server.url)
        return clients[server.url]

    yield get
    for backend in clients.values():
        backend.close()

"""Round trips, counted by the server (INFO commandstats) on a private Redis:
a read-only request costs one (no script: TIME and HGETALL pipelined), a modifying
one two, an untouched one none."""

from __future__ import annotations

import redis

from gatekeep import RedisBackend
from gatekeep.sessions import SessionStore

from .apps import starlette_app, wsgi_app
from .helpers import asgi_call, wsgi_call

#: What a client can send; the commands the scripts call (HGETALL, HSET, ...) are
#: counted by commandstats too, but they run inside the one EVALSHA.
CLIENT_SENT = (
    "evalsha",
    "eval",
    "script",
    "client",
    "hello",
    "ping",
    "select",
    "auth",
    "get",
    "set",
    "multi",
    "exec",
)


def commands(client: redis.Redis) -> int:
    """Commands clients sent so far (INFO itself not counted), the peek's plain reads
    (TIME, HGETALL: see plain_reads) left out."""
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in CLIENT_SENT)


def plain_reads(client: redis.Redis) -> tuple[int, int]:
    """TIME and HGETALL run so far, by clients or by scripts."""
    stats = client.info("commandstats")
    return tuple(stats.get(f"cmdstat_{n}", {}).get("calls", 0) for n in ("time", "hgetall"))  # type: ignore[return-value]


class Batches:
    def __init__(self, inner):
        self.inner, self.count = inner, 0

    def run(self, calls, now):
        self.count += 1
        return self.inner.run(calls, now)

    async def arun(self, calls, now):
        self.count += 1
        return await self.inner.arun(calls, now)

    async def aclose(self):
        await self.inner.aclose()


async def test_asgi_round_trips(server_factory):
    server = server_factory("redis")
    probe = redis.Redis(port=server.port)
    store = SessionStore(RedisBackend(server.url))
    store.executor = batches = Batches(store.executor)
    app = starlette_app(store=store)
    try:
        first = await asgi_call(app, "/inc")  # warms the connection and the script
        cookie = f"session={first.cookie()}"
        await asgi_call(app, "/", cookie)
        other = await asgi_call(app, "/inc")
        await asgi_call(app, "/login", f"session={other.cookie()}")  # loads session_index

        def cost() -> tuple[int, int]:
            return commands(probe), batches.count

        async def measure(path: str, with_cookie: bool = True) -> tuple[int, int]:
            c0, b0 = cost()
            await asgi_call(app, path, cookie if with_cookie else None)
            c1, b1 = cost()
            return c1 - c0, b1 - b0

        # read only: one round trip, no script: the peek's TIME and HGETALL
        t0, h0 = plain_reads(probe)
        assert await measure("/") == (0, 1)
        t1, h1 = plain_reads(probe)
        assert (t1 - t0, h1 - h0) == (1, 1)
        assert await measure("/inc") == (1, 2)  # read and write: the peek + the save
        assert await measure("/nothing", False) == (0, 0)
        assert await measure("/", False) == (0, 0)  # no cookie: nothing to load
        assert await measure("/inc", False) == (1, 1)  # a new session: one save
        # Log in: the peek, then save + the user index pipelined (2 scripts, 2 round trips).
        assert await measure("/login") == (2, 2)
        new = await asgi_call(app, "/", cookie)
        assert new.body == b"{}"  # the old id is gone
    finally:
        await store.aclose()
        store.backend.close()  # type: ignore[union-attr]
        probe.close()


def test_wsgi_round_trips(server_factory):
    server = server_factory("redis")
    probe = redis.Redis(port=server.port)
    backend = RedisBackend(server.url)
    from gatekeep.sessions.wsgi import SessionMiddleware

    app = SessionMiddleware(wsgi_app, "test-secret-key", store=SessionStore(backend))
    try:
        cookie = f"session={wsgi_call(app, '/inc').cookie()}"
        wsgi_call(app, "/", cookie)
        c0, p0 = commands(probe), plain_reads(probe)
        wsgi_call(app, "/", cookie)  # the plain read alone (no touch: not due)
        c1, p1 = commands(probe), plain_reads(probe)
        wsgi_call(app, "/inc", cookie)  # the plain read, the save
        c2 = commands(probe)
        wsgi_call(app, "/nothing", cookie)
        c3 = commands(probe)
        assert (c1 - c0, c2 - c1, c3 - c2) == (0, 1, 0)
        assert (p1[0] - p0[0], p1[1] - p0[1]) == (1, 1)
    finally:
        backend.close()
        probe.close()

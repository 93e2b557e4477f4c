"""A stalled server and a lost script cache: requests go on, without a 500."""

from __future__ import annotations

import json
import signal
import time

import redis

from gatekeep import RedisBackend
from gatekeep.sessions import SessionStore

from .apps import starlette_app
from .helpers import asgi_call


async def test_a_stalled_server_costs_one_timeout_not_a_500(server_factory):
    server = server_factory("redis")
    backend = RedisBackend(server.url, socket_timeout=0.3, socket_connect_timeout=0.3)
    store = SessionStore(backend)
    app = starlette_app(store=store)
    try:
        cookie = f"session={(await asgi_call(app, '/inc')).cookie()}"
        server.signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            r = await asgi_call(app, "/inc", cookie)
            elapsed = time.monotonic() - start
        finally:
            server.signal(signal.SIGCONT)
        # the load timed out: the change made to an empty session cannot be saved, said so
        assert r.status == 503 and r.set_cookies == [] and r.header("retry-after") == "1"
        assert elapsed < 1.0  # one read timeout, no retries
        r = await asgi_call(app, "/", cookie)  # and it recovers on its own
        assert json.loads(r.body) == {"n": 1}
    finally:
        await store.aclose()
        await backend.aclose()
        backend.close()


async def test_script_cache_flushed(server_factory):
    server = server_factory("valkey")
    probe = redis.Redis(port=server.port)
    backend = RedisBackend(server.url)
    store = SessionStore(backend)
    app = starlette_app(store=store)
    try:
        cookie = f"session={(await asgi_call(app, '/inc')).cookie()}"
        probe.script_flush()
        assert json.loads((await asgi_call(app, "/inc", cookie)).body) == {"n": 2}
        probe.script_flush()
        assert store.load(cookie.split("=")[1].split(".")[0])["n"] == 2  # sync path too
        probe.script_flush()
        assert len(store.sessions_of("nobody")) == 0
    finally:
        await store.aclose()
        backend.close()
        probe.close()

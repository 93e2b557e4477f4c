"""The peek without a script: TIME and HGETALL pipelined, on every client path.

The read of a read-only request goes as two plain commands (see
``sessions/_redis.py``); redis-py's pipelines (Sentinel, clients of other classes)
hand their replies over parsed (HGETALL as a dict, TIME as a tuple), the lean path
raw: each must read the same session, and the server's clock must judge its expiry.
"""

from __future__ import annotations

import uuid

import pytest
import redis
import redis.asyncio

from gatekeep import RedisBackend
from gatekeep.sessions import SessionStore
from gatekeep.sessions._engine import Call, session_script
from gatekeep.sessions._redis import RedisExecutor


class OtherRedis(redis.Redis):
    """A client of another class: the backend sends its trips through redis-py."""


class OtherAsyncRedis(redis.asyncio.Redis):
    pass


def backends(url: str) -> dict[str, RedisBackend]:
    return {
        "lean": RedisBackend(url),
        "redis-py": RedisBackend(OtherRedis.from_url(url), aclient=OtherAsyncRedis.from_url(url)),
        "decoded": RedisBackend(
            OtherRedis.from_url(url, decode_responses=True),
            aclient=OtherAsyncRedis.from_url(url, decode_responses=True),
        ),
    }


@pytest.mark.redis
async def test_peek_reads_alike_on_every_client_path(server):
    prefix = f"gk:pk{uuid.uuid4().hex[:8]}:"
    made = backends(server.url)
    try:
        writer = SessionStore(made["lean"], prefix=prefix, idle_timeout=100)
        s = writer.create({"k": [1, "ü"], "n": None}, user_id="u1")
        for name, backend in made.items():
            store = SessionStore(backend, prefix=prefix, idle_timeout=100)
            for peeked in (
                store.run(store.peek_flow(s.id or "")),
                await store.arun(store.peek_flow(s.id or "")),
            ):
                assert peeked is not None, name
                assert dict(peeked) == {"k": [1, "ü"], "n": None}, name
                assert peeked.user_id == "u1" and peeked.created_us == s.created_us, name
            # the server's clock judges it: idle for longer than the timeout by its TIME
            seen = int(backend.client.hget(writer.key(s.id or ""), "a"))
            backend.client.hset(writer.key(s.id or ""), "a", seen - 101_000_000)
            assert store.run(store.peek_flow(s.id or "")) is None, name
            assert await store.arun(store.peek_flow(s.id or "")) is None, name
            backend.client.hset(writer.key(s.id or ""), "a", seen)
            assert store.run(store.peek_flow("x" * 47)) is None, name
    finally:
        for backend in made.values():
            await backend.aclose()
            backend.close()


@pytest.mark.redis
def test_plain_peek_gives_the_scripts_reply(server):
    """The two commands' reply, joined, is the peek script's, with or without now."""
    prefix = f"gk:pk{uuid.uuid4().hex[:8]}:"
    backend = RedisBackend(server.url)
    try:
        store = SessionStore(backend, prefix=prefix)
        s = store.create({"a": 1, "b": "two"})
        key = store.key(s.id or "")
        executor = RedisExecutor(backend)
        now = 1_700_000_000_000_000
        [plain] = executor.run([Call("session_peek", (key,), (), read_only=True)], now)
        script = backend.eval(session_script("session_peek"), (key,), (now,))
        assert plain[-1] == now
        assert plain == [x.decode() if isinstance(x, bytes) else x for x in script]
        # the server's clock: TIME's seconds and microseconds as one number
        [plain] = executor.run([Call("session_peek", (key,), (), read_only=True)], None)
        script = backend.eval(session_script("session_peek"), (key,), ("",))
        assert plain[:-1] == [x.decode() for x in script[:-1]]
        assert 0 <= script[-1] - plain[-1] < 5_000_000
        assert plain[-1] > s.last_seen_us - 1  # type: ignore[operator]
    finally:
        backend.close()

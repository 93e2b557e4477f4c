"""Session metrics, read-only metadata (``meta``), key <-> id, and logs without ids."""

from __future__ import annotations

import logging

import pytest
import redis

from gatekeep.metrics import Metrics
from gatekeep.sessions import SessionStore, id_hash, split_key
from gatekeep.sessions.asgi import SessionMiddleware
from gatekeep.sessions.logs import log_id, scrub

from .helpers import asgi_call

T = 1_700_000_000.0


def test_metrics_count_every_operation(make_store):
    metrics = Metrics()
    store = make_store(metrics=metrics)
    a = store.create({"n": 1}, now=T)  # save 1
    b = store.create({"n": 2}, user_id="u", now=T)  # save 2
    for _ in range(3):
        assert store.load(a.id, now=T + 1) is not None  # 3 hits
    assert store.load(a.id[:4] + "y" * 43, now=T + 1) is None  # a miss
    s = store.load(b.id, now=T + 1)  # hit 4
    s.set_user("v")  # regenerates
    assert store.save(s, now=T + 2)  # save 3, regeneration 1
    assert store.regenerate(s, now=T + 3)  # save 4, regeneration 2
    assert store.load(b.id, now=T + 3) is None  # miss 2 (regenerated away)
    assert store.destroy(s, now=T + 4)  # destroy 1
    assert not store.destroy(s.id or b.id, now=T + 4)  # nothing there: not counted
    store.create({"x": 1}, user_id="w", now=T + 5)
    store.create({"x": 2}, user_id="w", now=T + 5)
    assert store.destroy_all("w", now=T + 6) == 2  # destroys 2, 3
    # not loads: metadata reads
    store.exists(a.id, now=T + 6)
    store.meta(a.id, now=T + 6)
    got = metrics.stats()["sessions"]
    assert got == {
        "loads": 6,
        "hits": 4,
        "misses": 2,
        "saves": 6,
        "regenerations": 2,
        "destroys": 3,
        "hit_rate": 4 / 6,
    }, got


def test_metrics_eviction_per_user_and_off(make_store):
    metrics = Metrics()
    store = make_store(metrics=metrics, max_sessions_per_user=2)
    for i in range(3):
        store.create({"i": i}, user_id="u", now=T + i)
    assert metrics.sessions.destroys == 1 and metrics.sessions.saves == 3
    off = make_store(metrics=None)
    off.load(off.create({"n": 1}, now=T).id, now=T)
    assert off.metrics is None and metrics.sessions.loads == 0


async def test_middleware_hit_rate(make_store):
    from .apps import starlette_app

    metrics = Metrics()
    store = make_store(metrics=metrics)
    app = starlette_app(store=store)
    cookie = f"session={(await asgi_call(app, '/inc')).cookie()}"
    for _ in range(4):
        await asgi_call(app, "/inc", cookie)
    await asgi_call(app, "/", "session=" + cookie.split("=", 1)[1][:-2] + "xx")  # bad signature
    await store.aclose()
    got = metrics.stats()["sessions"]
    assert (got["loads"], got["hits"], got["saves"], got["hit_rate"]) == (4, 4, 5, 1.0)


def test_meta_is_read_only(make_store, store_backend):
    store = make_store()
    s = store.create({"secret": "s3cr3t"}, user_id="alice", now=T)
    store.load(s.id, now=T + 10)
    raw = None
    if store_backend is not None:
        client = redis.Redis.from_url(store_backend.url)
        raw = (client.dump(store.key(s.id)), client.hget(store.key(s.id), "a"))
    for at in (T + 20, T + 30):
        meta = store.meta(s.id, now=at)
        assert meta is not None
        assert meta.last_seen_at.timestamp() == T + 10  # never moved by meta
        assert meta.created_at.timestamp() == T
        assert meta.expires_at.timestamp() == T + 10 + 100  # idle 100 s
        assert meta.absolute_expires_at.timestamp() == T + 1000
        assert meta.ttl == pytest.approx(T + 110 - at)
        assert meta.user_id_hash == id_hash("alice") and meta.id_hash == id_hash(s.id)
        assert "s3cr3t" not in repr(meta)
    if raw is not None:
        assert (client.dump(store.key(s.id)), client.hget(store.key(s.id), "a")) == raw
        client.close()
    assert store.meta(s.id, now=T + 200) is None  # idle past: gone
    assert store.meta("nonsense") is None


async def test_ameta(make_store):
    store = make_store()
    s = await store.acreate({"n": 1}, now=T)
    meta = await store.ameta(s.id, now=T + 1)
    await store.aclose()
    assert meta is not None and meta.user_id_hash is None and meta.ttl == pytest.approx(99)


def test_keys_back_to_ids(make_store):
    store = make_store()
    s = store.create({"n": 1})
    key = store.key(s.id)
    assert store.session_id(key) == s.id
    assert split_key(key) == (store.prefix[3:-1], s.id)
    assert split_key(SessionStore().key(s.id)) == ("", s.id)
    other = SessionStore(prefix="other")
    assert other.session_id(key) is None and store.session_id(store.user_key("u")) is None
    for bad in (
        "gk:s:{abc}" + "x" * 44,
        "gk:s:{abcd}" + "x" * 42,
        "xx:s:{abcd}" + "x" * 43,
        key + "x",
    ):
        assert split_key(bad) is None, bad


def test_scrub_and_log_id():
    sid = "AbC_" + "x-" * 21 + "z"
    assert len(sid) == 47
    text = f"error on gk:app:s:{{{sid[:4]}}}{sid[4:]} and {sid}."
    clean = scrub(text)
    assert sid not in clean and sid[4:] not in clean
    assert clean.count(f"<session:{log_id(sid)}>") == 2
    assert log_id(sid) != log_id(sid[:-1] + "y") and len(log_id(sid)) == 12


async def test_no_log_record_holds_a_session_id(make_store, caplog):
    """Everything a store and the middleware log, at every level, never names an id."""
    caplog.set_level(logging.DEBUG)
    store = make_store(max_sessions_per_user=1)
    ids = []
    for i in range(3):  # the per-user limit destroys older sessions (a debug line)
        s = store.create({"i": i}, user_id="alice")
        ids.append(s.id)
        assert store.regenerate(s)
        ids.append(s.id)
    store.destroy(ids[-1])
    ids.append(store.create({"n": 1}).id)

    async def app(scope, receive, send):
        scope["session"]["n"] = 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    from gatekeep import RedisBackend
    from gatekeep.testing import free_port

    dead = SessionStore(RedisBackend(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2))
    live = SessionMiddleware(app, secret_key="k", store=store)
    cookie = (await asgi_call(live, "/")).cookie()
    ids.append(cookie.split(".")[0])
    r = await asgi_call(
        SessionMiddleware(app, secret_key="k", store=dead), "/", f"session={cookie}"
    )
    await dead.aclose()
    await store.aclose()
    assert r.status == 503
    records = caplog.records
    assert any(r.name == "gatekeep.sessions" for r in records)
    for record in records:
        text = " ".join([record.getMessage(), repr(record.__dict__)])
        for sid in ids:
            assert sid not in text and sid[4:] not in text, (sid, text)

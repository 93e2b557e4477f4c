"""Redis Cluster: every session call stays in one slot, and the store works on a
real 3-master cluster (sync and async, regenerate and the per-user index included)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from gatekeep.backends.connect import connect
from gatekeep.sessions import SessionStore, new_id
from gatekeep.sessions.session import Session

T = 1_000_000.0


def calls_of(flow, replies):
    """The batches a flow sends, answering each with the given replies."""
    batches = []
    try:
        batch = next(flow)
        while True:
            batches.append(batch)
            batch = flow.send(replies(batch))
    except StopIteration:
        pass
    return batches


def test_every_call_touches_one_slot():
    store = SessionStore(prefix="app")
    s = Session(id=new_id(), state="loaded")
    s.created_us = 1
    s._user_saved = "a{b}"
    s.set_user("c}d")  # user change + regenerate
    s["k"] = 1
    ok = [1, 1, 1, 1, 1]
    batches = calls_of(store.save_flow(s), lambda b: [ok] + [[]] * (len(b) - 1))
    calls = [c for b in batches for c in b]
    assert [c.script for c in calls] == ["session_save", "session_index", "session_index"]
    assert len(calls[0].keys) == 2  # the old and the new id
    for call in calls:
        assert len({key_slot(k.encode()) for k in call.keys}) == 1, call.keys


@pytest.mark.redis
@pytest.mark.slow
async def test_store_on_a_real_cluster(prefix, redis_binary):
    from ha.topology import ClusterTopology  # the HA suite's cluster, started here

    topo = ClusterTopology.start(redis_binary)
    try:
        backend = connect(topo.url, timeout=1.0)
        store = SessionStore(backend, prefix=prefix)
        s = store.create({"a": 1}, user_id="alice", now=T)
        old = s.id
        s["b"] = 2
        assert store.regenerate(s, now=T + 1) and store.load(old, now=T + 2) is None
        assert dict(store.load(s.id, now=T + 2)) == {"a": 1, "b": 2}
        other = await store.acreate({"c": 3}, user_id="alice", now=T + 3)
        assert len(await store.asessions_of("alice", now=T + 4)) == 2
        assert await store.adestroy_all("alice", now=T + 5) == 2
        assert store.load(s.id, now=T + 6) is None and not store.exists(other.id, now=T + 6)
        await store.aclose()
        await backend.aclose()
        backend.close()
    finally:
        topo.stop()

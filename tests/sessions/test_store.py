"""The store on every backend: load / save / destroy / regenerate, expiry, strictness,
the per-user index, JSON and size limits, sync and async."""

from __future__ import annotations

import pytest

from gatekeep.sessions import Session, SessionTooLarge, id_hash, is_session_id

T = 1_000_000.0  # a controllable clock, in seconds


def test_create_load_save_roundtrip(store):
    s = store.create({"a": 1, "nested": {"list": [1, 2]}}, now=T)
    assert is_session_id(s.id) and len(s.id) == 47
    assert s.created_at.timestamp() == T
    loaded = store.load(s.id, now=T + 1)
    assert dict(loaded) == {"a": 1, "nested": {"list": [1, 2]}}
    assert not loaded.modified
    loaded["nested"]["list"].append(3)  # in place, nested
    assert loaded.modified
    assert loaded.changes().set == {"nested": '{"list":[1,2,3]}'}
    assert store.save(loaded, now=T + 2)
    del loaded["a"]
    assert loaded.changes().delete == ["a"]
    assert store.save(loaded, now=T + 3)
    assert dict(store.load(s.id, now=T + 4)) == {"nested": {"list": [1, 2, 3]}}


def test_unknown_and_malformed_ids(store):
    assert store.load("x" * 47, now=T) is None
    assert store.load("not an id", now=T) is None
    assert not store.exists("../../etc", now=T)
    assert not store.destroy("{bad}", now=T)


def test_idle_timeout_is_extended_by_each_load(store):
    s = store.create({"k": 1}, now=T)  # idle 100 s, absolute 1000 s
    for step in range(1, 8):  # used every 90 s: stays alive
        assert store.load(s.id, now=T + 90 * step) is not None
    assert store.load(s.id, now=T + 90 * 7 + 100) is None  # then 100 s idle: gone
    assert store.load(s.id, now=T + 90 * 7 + 1) is None  # and stays gone


def test_exists_does_not_extend_the_idle_deadline(store):
    s = store.create({"k": 1}, now=T)
    assert store.exists(s.id, now=T + 60)
    assert not store.exists(s.id, now=T + 100)


def test_absolute_timeout_wins_over_activity(store):
    s = store.create({"k": 1}, now=T)
    t = T
    while t + 50 < T + 1000:
        t += 50
        loaded = store.load(s.id, now=t)
        assert loaded is not None
        assert loaded.absolute_expires_at.timestamp() == T + 1000
        assert loaded.expires_at.timestamp() == min(t + 100, T + 1000)
    assert store.load(s.id, now=T + 1000) is None


def test_save_is_refused_after_expiry(store):
    s = store.create({"k": 1}, now=T)
    loaded = store.load(s.id, now=T + 1)
    loaded["k"] = 2
    assert not store.save(loaded, now=T + 200)  # idle-expired meanwhile
    assert store.load(s.id, now=T + 201) is None


def test_destroy(store):
    s = store.create({"k": 1}, now=T)
    assert store.destroy(s.id, now=T + 1)
    assert store.load(s.id, now=T + 2) is None
    assert not store.destroy(s.id, now=T + 3)


def test_regenerate_moves_the_data_and_kills_the_old_id(store):
    s = store.create({"k": 1}, now=T)
    old = s.id
    s["k"] = 2
    assert store.regenerate(s, now=T + 1)
    assert s.id != old and s.id[:4] == old[:4]  # same slot tag, 256 new bits
    assert store.load(old, now=T + 2) is None
    again = store.load(s.id, now=T + 2)
    assert dict(again) == {"k": 2}
    assert again.created_at.timestamp() == T  # the absolute lifetime counts from creation


def test_in_flight_save_after_destroy_is_refused(store):
    s = store.create({"k": 1}, now=T)
    in_flight = store.load(s.id, now=T + 1)
    store.destroy(store.load(s.id, now=T + 1), now=T + 2)  # log out
    in_flight["k"] = 2
    assert not store.save(in_flight, now=T + 3)
    assert store.load(s.id, now=T + 4) is None


def test_in_flight_save_after_regenerate_does_not_resurrect(store):
    s = store.create({"k": 1}, now=T)
    in_flight = store.load(s.id, now=T + 1)
    fresh = store.load(s.id, now=T + 1)
    store.regenerate(fresh, now=T + 2)
    in_flight["other"] = True
    assert not store.save(in_flight, now=T + 3)
    assert store.load(s.id, now=T + 4) is None
    assert dict(store.load(fresh.id, now=T + 4)) == {"k": 1}


def test_clear_removes_keys_added_by_others(store):
    s = store.create({"a": 1}, now=T)
    one, two = store.load(s.id, now=T + 1), store.load(s.id, now=T + 1)
    one["b"] = 2
    store.save(one, now=T + 2)
    two.clear()
    two["c"] = 3
    store.save(two, now=T + 3)
    assert dict(store.load(s.id, now=T + 4)) == {"c": 3}


def test_a_save_of_more_keys_than_one_command_takes(store):
    """The save writes its keys with as few HSET / HDEL calls as Lua's unpack() allows
    (4,000 values a call): 4,500 keys set (9,000 values: more than one unpack() takes),
    then removed."""
    keys = [f"k{i}" for i in range(4500)]
    s = store.create({"keep": 0}, now=T)
    loaded = store.load(s.id, now=T + 1)
    for i, k in enumerate(keys):
        loaded[k] = i
    assert store.save(loaded, now=T + 2)
    again = store.load(s.id, now=T + 3)
    assert dict(again) == {"keep": 0, **{k: i for i, k in enumerate(keys)}}
    for k in keys:
        del again[k]
    assert store.save(again, now=T + 4)
    assert dict(store.load(s.id, now=T + 5)) == {"keep": 0}
    full = store.load(s.id, now=T + 6)
    full.update({k: 1 for k in keys})
    assert store.save(full, now=T + 7)
    full.clear()
    full["only"] = 1
    assert store.save(full, now=T + 8)
    assert dict(store.load(s.id, now=T + 9)) == {"only": 1}


def test_non_json_value_raises_a_clear_type_error(store):
    s = store.new()
    with pytest.raises(TypeError, match=r"session\['when'\] cannot be saved.*JSON"):
        s["when"] = object()  # refused when set, where the view is
    with pytest.raises(TypeError, match="JSON"):
        s["when"] = float("nan")
    assert "when" not in s
    with pytest.raises(TypeError, match="keys must be str"):
        s[1] = "x"  # type: ignore[index]
    s["when"] = []
    s["when"].append(object())  # in place: found at save time
    with pytest.raises(TypeError, match=r"session\['when'\] cannot be saved.*JSON"):
        store.save(s, now=T)


def test_too_large_raises_at_save(make_store):
    store = make_store(max_size=1000)
    s = store.new({"blob": []})
    s["blob"].append("x" * 1000)  # in place: measured at save time
    with pytest.raises(SessionTooLarge, match="max_size=1000"):
        store.save(s, now=T)
    s["blob"] = "x" * 900
    assert store.save(s, now=T)


def test_strict_store_never_adopts(store):
    pending = store.open("A" * 47, signed_at=T)
    store.load_into(pending, now=T + 1)
    assert pending.state == "new" and pending.id is None


def test_non_strict_store_adopts_but_never_a_destroyed_id(make_store):
    store = make_store(strict=False)
    sid = "B" * 47
    pending = store.open(sid, signed_at=T)
    store.load_into(pending, now=T + 1)
    assert pending.state == "adopted" and pending.id == sid
    pending["k"] = 1
    assert store.save(pending, now=T + 2)
    assert dict(store.load(sid, now=T + 3)) == {"k": 1}
    assert store.load(sid, now=T + 3).absolute_expires_at.timestamp() == T + 1000
    store.destroy(sid, now=T + 4)
    again = store.open(sid, signed_at=T)
    store.load_into(again, now=T + 5)
    assert again.state == "new" and again.id is None  # the tombstone refuses it


def test_user_index_lists_and_logs_out_everywhere(store):
    a = store.create({"n": 1}, user_id="alice", now=T)
    b = store.create({"n": 2}, user_id="alice", now=T + 1)
    c = store.create({"n": 3}, user_id="bob", now=T + 2)
    listed = store.sessions_of("alice", now=T + 3)
    assert [x.id_hash for x in listed] == [id_hash(a.id), id_hash(b.id)]
    assert listed[0].created_at.timestamp() == T
    store.load(b.id, now=T + 50)
    assert store.sessions_of("alice", now=T + 51)[1].last_seen_at.timestamp() == T + 50
    assert store.destroy_all("alice", now=T + 52) == 2
    assert store.load(a.id, now=T + 53) is None and store.load(b.id, now=T + 53) is None
    assert store.load(c.id, now=T + 53) is not None
    assert store.sessions_of("alice", now=T + 54) == []


def test_user_index_follows_regenerate_and_user_change(store):
    s = store.create({"n": 1}, now=T)
    s.set_user("alice")  # log in: regenerates
    old = s.id
    assert store.save(s, now=T + 1) and s.id != old
    assert [x.id_hash for x in store.sessions_of("alice", now=T + 2)] == [id_hash(s.id)]
    s.set_user("bob", regenerate=False)
    store.save(s, now=T + 3)
    assert store.sessions_of("alice", now=T + 4) == []
    assert len(store.sessions_of("bob", now=T + 4)) == 1
    store.destroy(s, now=T + 5)
    assert store.sessions_of("bob", now=T + 6) == []


def test_user_index_is_bounded(make_store):
    store = make_store(max_sessions_per_user=3)
    ids = [store.create({"i": i}, user_id="u", now=T + i).id for i in range(5)]
    assert len(store.sessions_of("u", now=T + 10)) == 3
    assert store.load(ids[0], now=T + 10) is None and store.load(ids[1], now=T + 10) is None
    assert store.load(ids[4], now=T + 10) is not None


def test_destroy_one_device(store):
    a = store.create({}, user_id="u", now=T)
    b = store.create({}, user_id="u", now=T)
    assert store.destroy_user_session("u", id_hash(a.id), now=T + 1)
    assert not store.destroy_user_session("u", "0" * 16, now=T + 1)
    assert [x.id_hash for x in store.sessions_of("u", now=T + 2)] == [id_hash(b.id)]


def test_index_entries_expire_with_the_sessions(store):
    store.create({}, user_id="u", now=T)
    assert len(store.sessions_of("u", now=T + 50)) == 1
    assert store.sessions_of("u", now=T + 1000) == []


async def test_async_api(store):
    try:
        await _async_api(store)
    finally:
        await store.aclose()


async def _async_api(store):
    s = await store.acreate({"a": [1]}, user_id="u", now=T)
    loaded = await store.aload(s.id, now=T + 1)
    loaded["a"].append(2)
    assert await store.asave(loaded, now=T + 2)
    assert await store.aexists(s.id, now=T + 3)
    assert await store.aregenerate(loaded, now=T + 4)
    assert len(await store.asessions_of("u", now=T + 5)) == 1
    assert dict(await store.aload(loaded.id, now=T + 6)) == {"a": [1, 2]}
    assert await store.adestroy_all("u", now=T + 7) == 1
    assert await store.aload(loaded.id, now=T + 8) is None


def test_session_object_flags():
    assert Session({"a": 1}).modified is False  # not accessed yet
    s = Session(id="x" * 47, state="pending")
    s.fill([1, 0, 0, 0, 0, "", "a", '{"b":1}'])  # as a load reply gives it
    assert not s.accessed
    _ = s.get("a")
    assert s.accessed
    assert not s.modified
    s["a"]["b"] = 2
    assert s.modified
    with pytest.raises(TypeError, match="set is not JSON-serializable"):
        Session({"x": {1, 2}}).changes()


def test_server_clock_when_no_now_is_given(store):
    s = store.create({"k": 1})
    loaded = store.load(s.id)
    assert loaded is not None and loaded.created_at is not None
    assert loaded.expires_at > loaded.last_seen_at


def test_every_key_has_a_ttl(make_store, store_backend):
    if store_backend is None:
        return  # the in-process store's keys all carry an expiry by construction
    store = make_store(strict=False)  # tombstones too
    a = store.create({"k": 1}, user_id="u", now=T)
    store.regenerate(a, now=T + 1)
    b = store.create({"k": 2}, user_id="u", now=T + 2)
    store.destroy(b, now=T + 3)
    client = store_backend.client
    keys = list(client.scan_iter(match=store.prefix + "*"))
    assert len(keys) >= 4  # session, 2 tombstones, user index
    for key in keys:
        assert client.pttl(key) > 0, key


def test_peek_touch_and_another_idle_timeout(store):
    s = store.create({"k": 1}, now=T)  # idle 100 s
    peeked = store.run(store.peek_flow(s.id), now=T + 60)
    assert dict(peeked) == {"k": 1}
    assert store.run(store.peek_flow(s.id), now=T + 100) is None  # the peek moved nothing
    s = store.create({"k": 2}, now=T)
    assert store.run(store.touch_flow(s.id), now=T + 60)  # deadline: T + 160
    assert store.exists(s.id, now=T + 150)
    longer = store.with_idle_timeout(300)
    assert longer.idle_us == 300_000_000 and store.idle_us == 100_000_000
    assert store.with_idle_timeout(100) is store
    assert longer.run(longer.touch_flow(s.id), now=T + 150)  # deadline: T + 450
    assert longer.exists(s.id, now=T + 440)
    assert not store.run(store.touch_flow("x" * 47), now=T)

"""A save's touch is lazy, as a read's: within a tenth of the idle timeout of the last
touch, a save writes the data but leaves the last-seen time and the TTL (no PEXPIRE).

The idle deadline a client is shown after any save is never earlier than a tenth of the
idle timeout before now + idle, and the server's key lives exactly that long; a save
with another idle timeout than the key's TTL was set with always touches."""

from __future__ import annotations

T = 1_000_000.0  # seconds; the store: idle 100 s, absolute 1000 s
S = 1_000_000


def test_a_save_within_a_tenth_keeps_the_deadline(store):
    s = store.create({"n": 0}, now=T)
    for dt in (1, 5, 9.99):  # within a tenth of the 100 s idle timeout: no touch
        s["n"] += 1
        assert store.save(s, now=T + dt)
        assert s.last_seen_us == T * S and s.expires_us == (T + 100) * S
    assert store.load(s.id, now=T + 99.9) is not None  # (this load touches: T + 199.9)
    assert store.load(s.id, now=T + 199.8)["n"] == 3  # the data was saved each time
    s = store.load(s.id, now=T + 200)  # touched: last seen T + 200
    assert s is not None
    s["n"] = 10
    assert store.save(s, now=T + 209)  # 9 s: not touched
    assert s.last_seen_us == (T + 200) * S and s.expires_us == (T + 300) * S
    s["n"] = 11
    assert store.save(s, now=T + 210)  # a tenth: touched
    assert s.last_seen_us == (T + 210) * S and s.expires_us == (T + 310) * S
    assert store.load(s.id, now=T + 309)["n"] == 11


def test_untouched_save_expires_at_the_last_touch(store):
    s = store.create({"n": 0}, now=T)
    s["n"] = 1
    assert store.save(s, now=T + 9)  # deadline stays T + 100, within 0.9 idle of T + 9
    assert not store.exists(s.id, now=T + 100)
    assert store.load(s.id, now=T + 100) is None


def test_another_idle_timeout_always_touches(make_store, store_backend):
    store = make_store()
    longer = store.with_idle_timeout(500)
    s = store.create({"n": 0}, now=T)  # TTL for idle 100 s
    s["n"] = 1
    assert longer.save(s, now=T + 1)  # 1 s < a tenth of 500 s, but the TTL was for 100
    assert s.expires_us == (T + 501) * S
    assert longer.load(s.id, now=T + 400) is not None  # (touched again: T + 900)
    s = longer.load(s.id, now=T + 401)
    assert s is not None
    s["n"] = 2
    assert store.save(s, now=T + 402)  # back to 100 s: the key's TTL was for 500
    assert s.expires_us == (T + 502) * S
    assert not store.exists(s.id, now=T + 502)
    if store_backend is not None:  # the server's TTL follows: ms(100 s), less the call
        pttl = store_backend.client.pttl(store.key(s.id))
        assert 99_000 < pttl <= 100_000, pttl

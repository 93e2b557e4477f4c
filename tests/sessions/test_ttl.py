"""Every session key lives exactly as long as its state matters.

A session hash matters until its idle or absolute deadline, ``min(a + idle, x)``; a
tombstone (``t``) until ``t``; a user's index until its latest entry's expiry (its
score). Hypothesis drives a store (in-process twin, Redis, Valkey) through creates,
loads, saves, regenerations and logouts on one explicit clock, and after each call
compares each key's remaining lifetime with that deadline, read from the key's own
fields:

- the twin: the deadline rounded up to a whole ms from the call that set it, so
  ``0 <= TTL - (deadline - now) < 1 ms`` (exactly ``ms(deadline - now)`` just after);
- Redis and Valkey, for the keys the call wrote: ``ms(deadline - now) - slack <= PTTL
  <= ms(deadline - now)``, slack being the wall-clock ms of the call and the PTTL reads;
  a key whose deadline the call left where it was may instead keep its TTL, counting
  down by no more than that slack (a save's lazy touch, a read).

Halving any TTL the session scripts or their twin write fails here.
"""

from __future__ import annotations

import math
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeep.sessions import SessionStore

S = 1_000_000
T0 = 1_790_000_000
IDLE, LIFE = 100, 300  # seconds

op = st.one_of(
    st.tuples(st.just("create"), st.sampled_from([None, "alice", "bob"])),
    st.tuples(st.just("load"), st.integers(0, 5)),
    st.tuples(st.just("save"), st.integers(0, 5)),
    st.tuples(st.just("regenerate"), st.integers(0, 5)),
    st.tuples(st.just("destroy"), st.integers(0, 5)),
    st.tuples(st.just("destroy_all"), st.sampled_from(["alice", "bob"])),
)
#: (seconds to advance: whole, or with µs for the twin, the call)
steps = st.lists(
    st.tuples(
        st.integers(0, 150) | st.sampled_from([0, 99, 100, 299, 300]), st.integers(0, S - 1), op
    ),
    min_size=1,
    max_size=25,
)


def ms(us: int) -> int:
    return max(1, -(-us // 1000))


def deadline(fields: dict[str, str] | dict[str, int], index: bool) -> int | None:
    """When the state at a key stops mattering (µs), from its own fields."""
    if not fields:
        return None
    if index:
        return max(int(v) for v in fields.values())
    if "t" in fields:
        return int(fields["t"])
    return min(int(fields["a"]) + IDLE * S, int(fields["x"]))


def apply(store: SessionStore, o: tuple, sessions: list, now: float) -> set[str]:
    """Make the call; returns the keys it may have written."""
    kind = o[0]
    if kind == "create":
        s = store.create({"n": 0}, user_id=o[1], now=now)
        sessions.append(s)
        return {store.key(s.id)} | ({store.user_key(o[1])} if o[1] else set())
    if kind == "destroy_all":
        store.destroy_all(o[1], now=now)
        return set()  # the ids it destroyed are checked as every key is
    if not sessions:
        return set()
    s = sessions[o[1] % len(sessions)]
    key, user = store.key(s.id), s.user_id
    if kind == "load":
        store.load(s.id, now=now)
        return {key}
    if kind == "save":
        s["n"] = s.get("n", 0) + 1
        store.save(s, now=now)
        return {key}
    if kind == "regenerate":
        store.regenerate(s, now=now)
        return {key, store.key(s.id)} | ({store.user_key(user)} if user else set())
    store.destroy(s, now=now)
    return {key} | ({store.user_key(user)} if user else set())


def user_keys(store: SessionStore) -> set[str]:
    return {store.user_key(u) for u in ("alice", "bob")}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=steps)
def test_twin_session_ttl_is_the_time_its_state_matters(ops):
    store = SessionStore(
        None, prefix="ttl", idle_timeout=IDLE, absolute_timeout=LIFE, strict=False
    )  # not strict: destroyed ids leave tombstones
    memory = store.executor.store  # the twin's MemoryStore
    sessions: list = []
    seen: dict[str, bool] = {}
    now = T0 * S
    for i, (advance, micro, o) in enumerate(ops):
        now += advance * S + micro
        written = apply(store, o, sessions, now / S) | {store.key(s.id) for s in sessions}
        seen |= {k: k in user_keys(store) for k in written}
        for key, index in seen.items():
            item = memory.data.get(key)
            live = item is not None and item[1] > now
            end = deadline(item[0], index) if live else None
            ttl = memory.ttl_us(key, now)
            what = (
                f"step {i} {o}: {key} lives {ttl} µs, its state matters until now + "
                f"{None if end is None else end - now} µs"
            )
            if end is None or end <= now:
                assert ttl is None or ttl <= 1000, what  # gone, or the 1 ms minimum
            else:
                assert ttl is not None and 0 <= ttl - (end - now) < 1000, what


def read(client, key: str, index: bool) -> dict:
    if index:
        return {m.decode(): int(sc) for m, sc in client.zrange(key, 0, -1, withscores=True)}
    return {f.decode(): v.decode() for f, v in client.hgetall(key).items()}


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["redis", "valkey"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=steps)
def test_lua_session_ttl_is_the_time_its_state_matters(servers, kind, ops):
    from gatekeep import RedisBackend

    backend = RedisBackend(servers.get(kind).url)
    store = SessionStore(
        backend,
        prefix=uuid.uuid4().hex[:12],
        idle_timeout=IDLE,
        absolute_timeout=LIFE,
        strict=False,
        metrics=None,
    )
    client = backend.client
    sessions: list = []
    now = T0 * S
    try:
        for i, (advance, _micro, o) in enumerate(ops):
            now += advance * S  # whole seconds: no key dies on the server's clock first
            keys = {k for s in sessions for k in (store.key(s.id),)} | user_keys(store)
            t0 = time.monotonic()
            before = {k: (read(client, k, k in user_keys(store)), client.pttl(k)) for k in keys}
            keys |= apply(store, o, sessions, now / S)
            pttls = {k: client.pttl(k) for k in keys}
            slack = math.ceil((time.monotonic() - t0) * 1000) + 1
            for key, pttl in pttls.items():
                index = key in user_keys(store)
                raw = read(client, key, index)
                old = before.get(key)
                end = deadline(raw, index)
                if (
                    old is not None
                    and raw
                    and deadline(old[0], index) == end
                    and pttl >= 0
                    and old[1] - slack <= pttl <= old[1]
                ):
                    # its deadline did not move and the call left its TTL (a save within
                    # a tenth of the idle timeout of the last touch): it only counts down
                    continue
                what = (
                    f"step {i} {o}: {key} has PTTL {pttl} ms, its state matters until "
                    f"now + {None if end is None else end - now} µs (slack {slack} ms)"
                )
                if end is None:  # gone, or PEXPIRE's 1 ms minimum (an entry scored now)
                    assert pttl == -2 or 0 <= pttl <= 1, what
                else:
                    assert ms(end - now) - slack <= pttl <= ms(end - now), what
    finally:
        backend.close()

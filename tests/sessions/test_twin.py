"""Each session script and its Python twin, driven by one clock, give the same replies."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis.exceptions import ResponseError

from gatekeep import RedisBackend
from gatekeep.sessions._engine import (
    CLOCK_ONLY,
    Call,
    MemoryExecutor,
    normalize,
    session_script,
)
from gatekeep.sessions._loaded import loaded
from gatekeep.sessions._redis import RedisExecutor

T0 = 1_700_000_000_000_000
IDLE, LIFE = 100_000_000, 300_000_000
TAG = "abcd"
IDS = [TAG + c * 43 for c in "xyz"]
USERS = ["alice", "b{o}b"]
KEYS = ["a", "b", "ü"]

step = st.integers(0, 150_000_000)
op = st.one_of(
    st.tuples(st.just("load"), st.integers(0, 2), st.sampled_from(["touch", "peek", "meta"])),
    st.tuples(
        st.just("save"),
        st.integers(0, 2),
        st.sampled_from(["new", "update", "adopt"]),
        st.booleans(),  # use the created time we saw
        st.sampled_from([None, 0, 1, 2]),  # regenerate to IDS[i]
        st.booleans(),  # clear
        st.sampled_from(["", "-", "+alice", "+b{o}b"]),
        st.dictionaries(st.sampled_from(KEYS), st.sampled_from(["1", '"x"', "[1,{}]"]), max_size=2),
        st.lists(st.sampled_from(KEYS), max_size=2, unique=True),
        st.sampled_from([0, LIFE]),
    ),  # tombstone lifetime
    st.tuples(st.just("destroy"), st.integers(0, 2), st.sampled_from([0, LIFE])),
    st.tuples(
        st.just("index"),
        st.sampled_from(USERS),
        st.sampled_from(["add", "remove", "list", "pop"]),
        st.integers(0, 2),
        st.integers(1, 3),
        st.booleans(),
    ),
)


def canonical(o, reply):
    """Load replies ('touch', 'peek') are the hash in its order, then now, and the hash
    of an expired session may still be there on a real server (its PEXPIRE runs on the
    wall clock, the test's clock is another): compare what the client reads from them,
    data pairs sorted."""
    if o[0] == "load" and o[2] != "meta":
        reply = loaded(reply, IDLE)
        if reply[0] == 1:
            pairs = sorted(zip(reply[6::2], reply[7::2], strict=True))
            return reply[:6] + [x for p in pairs for x in p]
    return reply


def to_call(o, prefix, created):
    key = lambda i: f"{prefix}s:{{{TAG}}}{IDS[i][4:]}"  # noqa: E731
    if o[0] == "load":
        if o[2] == "peek":
            return Call("session_peek", (key(o[1]),), ())
        return Call("session_load", (key(o[1]),), (IDLE, o[2]))
    if o[0] == "destroy":
        return Call("session_destroy", (key(o[1]),), (IDLE, o[2]))
    if o[0] == "index":
        _, user, kind, i, limit, with_expiry = o
        ukey = f"{prefix}u:{{{user}}}"
        if kind == "add":
            expiry = created.get(i, T0) + LIFE if with_expiry else ""
            return Call("session_index", (ukey,), ("add", limit, IDS[i], expiry, "", LIFE))
        if kind == "remove":
            return Call("session_index", (ukey,), ("remove", IDS[i]))
        return Call("session_index", (ukey,), (kind,))
    _, i, mode, seen, regen, clear, user, sets, deletes, tomb = o
    keys = (key(i),) if regen is None or regen == i else (key(i), key(regen))
    made = created.get(i, T0) if seen else T0 - 5
    pairs = [x for kv in sets.items() for x in kv]
    return Call(
        "session_save",
        keys,
        (IDLE, LIFE, mode, made, "1" if clear else "0", user, tomb, len(sets), *pairs, *deletes),
    )


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(st.tuples(step, op), min_size=1, max_size=25))
# a peek right at the idle expiry: the real server still has the hash, the twin does not
@example(ops=[(0, ("save", 0, "new", False, 1, False, "", {}, [], 0)), (IDLE, ("load", 1, "peek"))])
def test_lua_and_twin_agree(server, ops):
    backend = RedisBackend(server.url)
    redis_side = RedisExecutor(backend)
    twin_side = MemoryExecutor()
    prefix = f"gk:tw{uuid.uuid4().hex[:8]}:"
    created: dict[int, int] = {}
    now = T0
    try:
        for dt, o in ops:
            now += dt
            call = to_call(o, prefix, created)
            [got] = redis_side.run([call], now)
            [want] = twin_side.run([call], now)
            assert canonical(o, got) == canonical(o, want), (o, now - T0)
            if o[0] == "load" and o[2] == "peek":  # the executor sends plain commands:
                # the script (a cluster's peek) must read alike too
                script = backend.eval(session_script("session_peek"), call.keys, (now,))
                assert canonical(o, normalize(script)) == canonical(o, want), (o, now - T0)
            if o[0] == "load" and o[2] != "meta":
                got = canonical(o, got)
            if o[0] in ("load", "save") and isinstance(got, list) and got and got[0] == 1:
                target = o[1] if o[0] == "load" or o[4] is None else o[4]
                created[target] = got[1]
    finally:
        backend.close()


def test_scripts_are_clock_prelude_and_operation():
    for name in (
        "session_load",
        "session_peek",
        "session_save",
        "session_destroy",
        "session_index",
    ):
        script = session_script(name)
        assert script.source.startswith("-- gatekeep: sessions, the clock")
        assert ("-- gatekeep: sessions, shared prelude" in script.source) == (
            name not in CLOCK_ONLY
        )
        assert len(script.sha) == 40
    assert {"session_peek"} == CLOCK_ONLY


def test_the_load_script_refuses_an_unknown_mode(server):
    """'peek' is a script of its own now: the load script would touch, so it refuses."""
    backend = RedisBackend(server.url)
    try:
        call = Call("session_load", ("gk:tw:s:{abcd}x",), (IDLE, "peek"))
        with pytest.raises(ResponseError, match="session_load mode peek"):
            RedisExecutor(backend).run([call], T0)
        with pytest.raises(ValueError, match="session_load mode peek"):
            MemoryExecutor().run([call], T0)
    finally:
        backend.close()

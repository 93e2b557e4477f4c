"""The lean wire under the session store: a batch of script calls packs (the scripts'
SHA and key count from a cache) into exactly the bytes ``pack`` gives for each EVALSHA /
EVALSHA_RO, and connections are written and read directly only where redis-py's own
methods would do nothing more."""

from __future__ import annotations

import redis.asyncio
from hypothesis import given
from hypothesis import strategies as st

from gatekeep import RedisBackend
from gatekeep.backends._calls import Trip, commands
from gatekeep.backends._wire import _lean, pack, pack_trip
from gatekeep.scripts import Script
from gatekeep.sessions import SessionStore

SCRIPTS = [Script.from_source(f"s{i}", f"return {i}") for i in range(3)]
arg = st.one_of(st.text(max_size=8), st.binary(max_size=8), st.integers())
call = st.tuples(
    st.sampled_from(SCRIPTS), st.lists(st.text(max_size=8), max_size=3), st.lists(arg, max_size=5)
)


@given(
    st.lists(call, min_size=1, max_size=3),
    st.booleans(),
    st.booleans(),
    st.none() | st.tuples(st.integers(0, 3), st.integers(1, 1000)),
)
def test_packed_is_pack_per_call(calls, read_only, source, wait):
    command = (
        ("EVAL_RO" if read_only else "EVAL")
        if source
        else ("EVALSHA_RO" if read_only else "EVALSHA")
    )
    want = b"".join(
        pack((command, s.source if source else s.sha, len(k), *k, *a)) for s, k, a in calls
    )
    if wait is not None:
        want += pack(("WAIT", *wait))
    trip = Trip(calls, read_only, source, wait)
    assert pack_trip(trip) == want
    assert pack_trip(trip) == want  # and again, from the cache
    # the lean path sends exactly what redis-py's pipeline would
    assert b"".join(pack(c) for c in commands(trip)) == want


class CountingConnection(redis.asyncio.Connection):
    sent = 0

    async def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        CountingConnection.sent += 1
        return await super().send_packed_command(command, check_health)


async def test_a_connection_class_that_overrides_its_io_is_driven_through_it(server, prefix):
    # The lean path writes to the stream itself only where redis-py's own methods would
    # do nothing more: a subclass that counts (or traces) its sends still sees each one.
    pool = redis.asyncio.ConnectionPool(port=server.port, connection_class=CountingConnection)
    backend = RedisBackend(aclient=redis.asyncio.Redis(connection_pool=pool))
    store = SessionStore(backend, prefix=prefix, metrics=None)
    try:
        session = await store.acreate({"n": 1})
        await store.aload(session.id)  # the load script is sent (NOSCRIPT, then EVAL) once
        CountingConnection.sent = 0
        for _ in range(3):
            assert (await store.aload(session.id))["n"] == 1
        assert CountingConnection.sent == 3
    finally:
        await backend.aclose()


async def test_plain_connections_take_the_lean_path(server, prefix):
    backend = RedisBackend(server.url)
    store = SessionStore(backend, prefix=prefix, metrics=None)
    try:
        session = await store.acreate({"n": 1})
        [conns] = backend._aconns.values()
        [state] = conns._loops.values()
        assert _lean(state.idle[0])
        assert (await store.aload(session.id))["n"] == 1
    finally:
        await backend.aclose()


class _Duck:
    """A stream writer (or a socket) by duck typing only: it forwards what redis-py's
    methods use."""

    def __init__(self, writer: object) -> None:
        self._inner = writer

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def _changed_private(base: type, name: str) -> type:
    """As if a redis-py release changed what the private ``name`` of its connection
    class ``base`` holds (a stand-in by duck typing): redis-py's own methods still work
    with it, the lean path must not touch it."""
    slot = "_changed" + name

    def get(self):  # type: ignore[no-untyped-def]
        return self.__dict__.get(slot)

    def put(self, value) -> None:  # type: ignore[no-untyped-def]
        self.__dict__[slot] = None if value is None else _Duck(value)

    return type(f"Changed{name}Connection", (base,), {name: property(get, put)})


ChangedPrivatesConnection = _changed_private(redis.asyncio.Connection, "_writer")


async def test_unexpected_private_attributes_fall_back_to_the_public_path(
    server, prefix, monkeypatch
):
    from gatekeep import AsyncLimiter
    from gatekeep.backends import _wire

    def no_lean_trip(*_args):  # type: ignore[no-untyped-def]
        raise AssertionError("the lean path used a connection it cannot vouch for")

    monkeypatch.setattr(_wire, "_round_trip", no_lean_trip)
    pool = redis.asyncio.ConnectionPool(
        port=server.port, connection_class=ChangedPrivatesConnection
    )
    backend = RedisBackend(aclient=redis.asyncio.Redis(connection_pool=pool))
    store = SessionStore(backend, prefix=prefix, metrics=None)
    limiter = AsyncLimiter("2/minute", backend=backend, prefix=prefix)
    try:
        session = await store.acreate({"n": 1})
        for _ in range(3):
            assert (await store.aload(session.id))["n"] == 1
        assert [(await limiter.hit("k")).allowed for _ in range(3)] == [True, True, False]
        [conns] = backend._aconns.values()
        [state] = conns._loops.values()
        conn = state.idle[0]
        assert conn.is_connected and not _lean(conn)
    finally:
        await backend.aclose()


def test_a_connection_without_the_private_stream_is_not_lean():
    class NoStream(redis.asyncio.Connection):
        pass

    conn = NoStream(port=1)  # never connected: no stream writer behind _writer
    assert conn.health_check_interval == 0
    assert not _lean(conn)


class CountingSyncConnection(redis.Connection):
    sent = 0

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        CountingSyncConnection.sent += 1
        return super().send_packed_command(command, check_health)


def test_a_sync_connection_class_that_overrides_its_io_is_driven_through_it(server, prefix):
    from gatekeep import Limiter

    pool = redis.ConnectionPool(port=server.port, connection_class=CountingSyncConnection)
    backend = RedisBackend(redis.Redis(connection_pool=pool))
    limiter = Limiter("2/minute", backend=backend, prefix=prefix)
    try:
        limiter.hit("k")  # the script is sent (NOSCRIPT, then EVAL) once
        CountingSyncConnection.sent = 0
        assert [limiter.hit("k").allowed for _ in range(2)] == [True, False]
        assert CountingSyncConnection.sent == 2
    finally:
        backend.close()


def test_plain_sync_connections_take_the_lean_path(server, prefix, monkeypatch):
    from gatekeep import Limiter
    from gatekeep.backends import _wire

    def no_public_trip(*_args):  # type: ignore[no-untyped-def]
        raise AssertionError("a plain connection took redis-py's public methods")

    backend = RedisBackend(server.url)
    limiter = Limiter("2/minute", backend=backend, prefix=prefix)
    try:
        limiter.hit("k")  # connects (the public path), loads the script
        monkeypatch.setattr(_wire, "_sync_round_trip_public", no_public_trip)
        assert [limiter.hit("k").allowed for _ in range(2)] == [True, False]
    finally:
        backend.close()


ChangedSocketConnection = _changed_private(redis.Connection, "_sock")


def test_unexpected_private_socket_falls_back_to_the_public_path(server, prefix, monkeypatch):
    from gatekeep import Limiter
    from gatekeep.backends import _wire

    def no_lean_trip(*_args):  # type: ignore[no-untyped-def]
        raise AssertionError("the lean path used a connection it cannot vouch for")

    monkeypatch.setattr(_wire, "_sync_round_trip", no_lean_trip)
    pool = redis.ConnectionPool(port=server.port, connection_class=ChangedSocketConnection)
    backend = RedisBackend(redis.Redis(connection_pool=pool))
    limiter = Limiter("2/minute", backend=backend, prefix=prefix)
    try:
        assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
        [conns] = [c for c in backend._conns.values() if c is not None]
        conn = conns.get()
        conns.release(conn)
        assert conn._sock is not None and not _wire._lean_sync(conn)
    finally:
        backend.close()


def test_a_limiter_trip_is_packed_once_and_only_on_the_server_clock(server, prefix):
    """The command of a limiter call on the server's clock is the same bytes for the
    same plan, keys, mode and cost: packed once and reused; a call with ``now``, a
    different cost or different limits is packed for itself, and each still decides
    by its own arguments."""
    from gatekeep import Limiter
    from gatekeep.algorithms import HIT

    backend = RedisBackend(server.url)
    limiter = Limiter("3/minute", backend=backend, prefix=prefix)
    try:
        plan = limiter.plan(None)
        keys = limiter.keys("k", plan)
        trip = backend._limit_trip(plan, keys, None, HIT, 1)
        assert trip is not None and trip.packed == pack_trip(trip._replace(packed=None))
        assert backend._limit_trip(plan, list(keys), None, HIT, 1) is trip
        assert backend._limit_trip(plan, keys, None, HIT, 2) is not trip
        assert backend._limit_trip(plan, keys, 5_000_000, HIT, 1).packed is None
        assert [limiter.hit("k").remaining for _ in range(2)] == [2, 1]
        assert limiter.hit("k", cost=2).allowed is False  # 1 left: cost 2 is denied
        assert limiter.hit("k", "10/minute").remaining == 9  # its own plan and keys
        assert limiter.hit("k").remaining == 0
    finally:
        backend.close()

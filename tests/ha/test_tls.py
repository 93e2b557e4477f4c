"""TLS for real: servers listening on TLS only, certificates made in the test.

A CA, a server certificate (127.0.0.1, localhost) and client certificates
(``certs.py``); every server requires a client certificate (``tls-auth-clients
yes``). Covered: ``rediss://`` URLs with ``ssl_ca_certs`` / ``ssl_certfile`` /
``ssl_keyfile`` query options, the sync and async limiters (on the lean round trip,
which drives redis-py's SSL connections' socket and stream directly), the session
store, ``python -m gatekeep doctor``, refusals (no client certificate, a client
certificate of another CA, a server certificate the client's CA did not sign),
``rediss+sentinel://`` through a failover, ``rediss+cluster://`` over several slots.

The binary is the first that starts with TLS (``tls.find_tls_binary``); with none,
the tests are skipped, and fail under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

from gatekeep import AsyncLimiter, Limiter
from gatekeep.backends.connect import connect
from gatekeep.backends.failover import FailoverBackend
from gatekeep.rates import parse_rate
from gatekeep.sessions import SessionStore, id_hash
from gatekeep.testing import ServerNotFound, ServerProcess

from .certs import Certs, make_certs
from .harness import Run, assert_outage, watch_promotion
from .tls import (
    TLSCluster,
    TLSSentinelTopology,
    find_tls_binary,
    start_tls_node,
    tls_client,
    url_options,
)
from .topology import wait_until

pytestmark = [pytest.mark.redis]

DEADLINE = 0.25
#: The timeout of the clients of the one-server tests, which test TLS, not deadlines: a
#: client's first connect builds its SSL context, 50-65 ms of CPU on an idle machine and
#: 270 ms on a loaded one (the first async call timed out at 0.25 s, load ~5 on 2 cores).
TIMEOUT = 1.0
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # as tests/conftest.py


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture(scope="module")
def tls_binary(certs: Certs) -> str:
    try:
        return find_tls_binary(certs)
    except ServerNotFound as exc:  # as tests/conftest.py's no_server
        if IN_CI:
            pytest.fail(f"CI=true and no server with TLS could be started: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tls_server(tls_binary: str, certs: Certs) -> Iterator[ServerProcess]:
    """One TLS-only server for the module's standalone tests."""
    server = start_tls_node(tls_binary, certs)
    yield server
    server.stop()


def tls_url(server: ServerProcess, certs: Certs, **options: object) -> str:
    return f"rediss://127.0.0.1:{server.port}/0?{url_options(certs, **options)}"  # type: ignore[arg-type]


def no_public_trip(*_args: object) -> None:
    raise AssertionError("a TLS connection took redis-py's public methods, not the lean trip")


# -- one server ------------------------------------------------------------------------


def test_sync_limiter_over_tls(tls_server, certs, prefix, monkeypatch):
    from gatekeep.backends import _wire

    backend = connect(tls_url(tls_server, certs), timeout=TIMEOUT)
    limiter = Limiter("3/minute", backend=backend, prefix=prefix)
    try:
        assert limiter.hit("k").remaining == 2  # connects (the public path), loads the script
        monkeypatch.setattr(_wire, "_sync_round_trip_public", no_public_trip)
        assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
        assert [d.remaining for d in limiter.hit_many(["a", "b", "k"])] == [2, 2, 0]
        limiter.reset("k")
        assert limiter.hit("k").remaining == 2
        assert isinstance(backend.client.connection_pool.get_connection(), redis.SSLConnection)
    finally:
        backend.close()
    # the counts are in the server
    check = tls_client(certs, tls_server.port)
    assert all(check.exists(key) for key in limiter.keys("k", limiter.plan(None)))
    check.close()


async def test_async_limiter_over_tls(tls_server, certs, prefix, monkeypatch):
    from gatekeep.backends import _wire

    backend = connect(tls_url(tls_server, certs), timeout=TIMEOUT)
    limiter = AsyncLimiter("3/minute", backend=backend, prefix=prefix)
    try:
        assert (await limiter.hit("k")).remaining == 2
        monkeypatch.setattr(_wire, "_round_trip_public", no_public_trip)
        assert [(await limiter.hit("k")).allowed for _ in range(3)] == [True, True, False]
        assert [d.remaining for d in await limiter.hit_many(["a", "k"])] == [2, 0]
        await limiter.reset("k")
        assert (await limiter.hit("k")).remaining == 2
        assert backend.aclient.connection_pool.connection_class is redis.asyncio.SSLConnection
    finally:
        await backend.aclose()
        backend.close()


@pytest.fixture
def contexts_built(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the SSL contexts redis-py builds (``ssl.create_default_context``)."""
    import ssl

    built: list[int] = []  # the ident of the thread that built each
    create_default_context = ssl.create_default_context

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(threading.get_ident())
        return create_default_context(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    return built


async def test_async_burst_on_a_cold_tls_backend(tls_server, certs, prefix, contexts_built):
    """8 concurrent calls on a fresh backend open 8 TLS connections. redis-py built an
    SSL context for each (the system CA store loaded: ~60 ms of CPU on the event loop
    each), and the connects queued behind them timed out (at the default 0.25 s, 4 of
    8 failed); the lean path's connections now share one context (``backends._ssl``)."""
    backend = connect(tls_url(tls_server, certs), timeout=TIMEOUT)
    limiter = AsyncLimiter("3/minute", backend=backend, prefix=prefix)
    try:
        decisions = await asyncio.gather(*(limiter.hit(f"k{i}") for i in range(8)))
        assert [d.remaining for d in decisions] == [2] * 8
        assert len(contexts_built) == 1
    finally:
        await backend.aclose()
        backend.close()


def test_threaded_burst_on_a_cold_tls_backend(tls_server, certs, prefix, contexts_built):
    """The same with 8 threads: 8 connects, each building its context (4 threads at
    once opened a FailoverBackend's breaker: answers after 0.27-0.32 s)."""
    backend = connect(tls_url(tls_server, certs), timeout=TIMEOUT)
    limiter = Limiter("3/minute", backend=backend, prefix=prefix)
    limiter.hit("first")  # one connection, then 7 more at once
    barrier = threading.Barrier(8)

    def hit(i: int) -> int:
        barrier.wait()
        return limiter.hit(f"k{i}").remaining

    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert list(pool.map(hit, range(8))) == [2] * 8
        assert len(contexts_built) == 1
    finally:
        backend.close()


async def test_sessions_over_tls(tls_server, certs, prefix):
    backend = connect(tls_url(tls_server, certs), timeout=TIMEOUT)
    store = SessionStore(backend, prefix=prefix, metrics=None)
    try:
        session = store.create({"theme": "dark"}, user_id="u1")
        assert store.load(session.id)["theme"] == "dark"
        loaded = await store.aload(session.id)
        loaded["n"] = 1
        await store.asave(loaded)
        assert dict(store.load(session.id)) == {"theme": "dark", "n": 1}
        assert [s.id_hash for s in store.sessions_of("u1")] == [id_hash(session.id)]
        assert await store.adestroy(session.id)
        assert store.load(session.id) is None
    finally:
        await store.aclose()
        backend.close()


def test_doctor_over_tls(tls_server, certs):
    from gatekeep.cli import main

    out = io.StringIO()
    code = main(["doctor", tls_url(tls_server, certs)], out=out)
    assert code == 0, out.getvalue()
    assert f"127.0.0.1:{tls_server.port}" in out.getvalue()


def refused(url: str) -> str:
    """Call through a plain (not failover) backend: a ConnectionError within a second,
    not a hang. Its text depends on when the server's alert arrives (while the client
    writes its first command, or reads): the server's log says why it refused."""
    backend = connect(url, timeout=TIMEOUT)
    limiter = Limiter("3/minute", backend=backend)
    started = time.monotonic()
    try:
        with pytest.raises(redis.ConnectionError) as info:
            limiter.hit("k")
    finally:
        backend.close()
    assert time.monotonic() - started < TIMEOUT  # an answer, not a read timing out
    return str(info.value)


def server_log(server: ServerProcess) -> str:
    return server.log_tail(lines=100_000)


def logged(server: ServerProcess, text: str, times: int) -> None:
    """The server logs a refused handshake after it sent its alert: wait for the line."""
    wait_until(lambda: server_log(server).count(text) == times, 5, f"{text!r} in the log")


def test_a_client_without_certificate_is_refused(tls_server, certs):
    seen = server_log(tls_server).count("peer did not return a certificate")
    refused(tls_url(tls_server, certs, client_cert=False))
    logged(tls_server, "peer did not return a certificate", seen + 1)
    # a FailoverBackend decides in process, and counts the failure
    backend = FailoverBackend(
        connect(tls_url(tls_server, certs, client_cert=False), timeout=TIMEOUT)
    )
    limiter = Limiter("3/minute", backend=backend)
    assert limiter.hit("k").allowed
    assert backend.fallback_calls == 1 and backend.breaker.counters.failures == 1
    backend.close()


def test_a_client_certificate_of_another_ca_is_refused(tls_server, certs):
    url = (
        f"rediss://127.0.0.1:{tls_server.port}/0?ssl_ca_certs={certs.ca}"
        f"&ssl_certfile={certs.other_client_cert}&ssl_keyfile={certs.other_client_key}"
    )
    seen = server_log(tls_server).count("certificate verify failed")
    refused(url)
    logged(tls_server, "certificate verify failed", seen + 1)


def test_a_server_certificate_of_another_ca_is_refused(tls_server, certs):
    message = refused(tls_url(tls_server, certs, ca=certs.other_ca))
    assert "certificate verify failed" in message


# -- Sentinel --------------------------------------------------------------------------


@pytest.mark.slow
def test_sentinel_failover_over_tls(tls_binary, certs, prefix, contexts_built):
    """SIGKILL the primary: decisions keep flowing (in process during the outage) and
    come back to Redis, on the promoted replica, found by the Sentinels over TLS; a
    session written before the fault is read after it.

    The client's reconnects (to the Sentinels, to the new primary) reuse the SSL
    contexts its first calls built: each had cost one (redis-py builds one per connect,
    60-270 ms of CPU; the slowest decision took 0.74-1.87 s, 0.31-0.65 s since)."""
    topo = TLSSentinelTopology.start(tls_binary, certs)
    stop = threading.Event()
    try:
        backend = FailoverBackend(
            connect(topo.url, timeout=DEADLINE), policy="local", instances=2, recovery_time=0.5
        )
        limiter = Limiter("200/second burst 20", backend=backend, prefix=prefix)
        store = SessionStore(backend, prefix=prefix, metrics=None)
        # connected first: a cold client's first call builds SSL contexts for a Sentinel
        # and the primary (0.15-0.35 s under load, past the deadline; see README, TLS)
        backend.primary.client.ping()
        session = store.create({"before": "failover"})
        topo.wait_replica_caught_up()
        run = Run(backend)
        old = topo.primary.port
        before = len(contexts_built)
        run.drive(
            lambda: limiter.hit("client").allowed,
            lambda: topo.primary.signal(signal.SIGKILL),
            watch=lambda: watch_promotion(run, topo.master_port, old, stop),
        )
        figures = run.report(parse_rate("200/second burst 20"), "sentinel SIGKILL over TLS")
        assert_outage(figures, deadline=DEADLINE)
        me = threading.get_ident()  # (the promotion watcher's clients build their own)
        assert [t for t in contexts_built[before:] if t == me] == []
        pool = backend.primary.client.connection_pool
        assert pool.get_master_address()[1] == topo.replica.port
        assert dict(store.load(session.id)) == {"before": "failover"}
        session["after"] = True
        assert store.save(session)
        backend.close()
        asyncio.run(async_after_failover(topo.url, prefix))
    finally:
        stop.set()
        topo.stop()


async def async_after_failover(url: str, prefix: str) -> None:
    """An async client asks the Sentinels (over TLS) and finds the new primary."""
    backend = FailoverBackend(connect(url, timeout=1.0))
    limiter = AsyncLimiter("3/minute", backend=backend, prefix=prefix)
    store = SessionStore(backend, prefix=prefix, metrics=None)
    try:
        assert [(await limiter.hit("a")).remaining for _ in range(2)] == [2, 1]
        session = await store.acreate({"async": True})
        assert dict(await store.aload(session.id)) == {"async": True}
        assert backend.fallback_calls == 0
    finally:
        await store.aclose()
        await backend.aclose()
        backend.close()


# -- Cluster ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster(tls_binary: str, certs: Certs) -> Iterator[TLSCluster]:
    topo = TLSCluster.start_tls(tls_binary, certs)
    yield topo
    topo.stop()


#: These tests are about TLS, not deadlines: a new connection of redis-py's cluster client
#: builds its SSL context (~60 ms of CPU), which a loaded 2-core CI machine stretched past
#: 0.25 s once (the breaker opened, the fallback decided, fallback_calls caught it).
CLUSTER_TIMEOUT = 1.0

KEYS = ["user:42", "a{b}c", "ünï:cödé", "10.0.0.1", "x" * 50, "k7"]


@pytest.mark.slow
def test_cluster_limiter_over_tls(tls_cluster, prefix):
    backend = FailoverBackend(connect(tls_cluster.url, timeout=CLUSTER_TIMEOUT))
    limiter = Limiter("3/minute; 10/hour", backend=backend, prefix=prefix)
    try:
        # connected to every node first (a cold client's set-up over TLS is not timed here)
        backend.primary.client.ping(target_nodes=redis.RedisCluster.ALL_NODES)
        slots = set()
        for key in KEYS:
            slots.add(key_slot(limiter.keys(key, limiter.plan(None))[0].encode()))
            assert [limiter.hit(key).allowed for _ in range(4)] == [True, True, True, False]
        assert len({tls_cluster.master_of_slot(s) for s in slots}) > 1  # several nodes
        assert not any(d.allowed for d in limiter.hit_many(KEYS))
        store = SessionStore(backend, prefix=prefix, metrics=None)
        session = store.create({"where": "cluster"})
        assert dict(store.load(session.id)) == {"where": "cluster"}
        assert backend.fallback_calls == 0 and backend.breaker.counters.failures == 0
    finally:
        backend.close()


@pytest.mark.slow
async def test_cluster_async_limiter_and_sessions_over_tls(tls_cluster, prefix):
    backend = FailoverBackend(connect(tls_cluster.url, timeout=CLUSTER_TIMEOUT))
    limiter = AsyncLimiter("2/minute", backend=backend, prefix=prefix)
    store = SessionStore(backend, prefix=prefix, metrics=None)
    try:
        # connected to every node first (a cold client's set-up over TLS is not timed here)
        await backend.primary.aclient.ping(target_nodes=redis.asyncio.RedisCluster.ALL_NODES)
        assert [(await limiter.hit(k)).remaining for k in KEYS] == [1] * len(KEYS)
        session = await store.acreate({"where": "cluster"}, user_id="u1")
        assert dict(await store.aload(session.id)) == {"where": "cluster"}
        assert [s.id_hash for s in await store.asessions_of("u1")] == [id_hash(session.id)]
        assert await store.adestroy(session.id)
        assert backend.fallback_calls == 0 and backend.breaker.counters.failures == 0
    finally:
        await store.aclose()
        await backend.aclose()
        backend.close()


@pytest.mark.slow
def test_doctor_over_tls_cluster(tls_cluster):
    """The doctor examines every node, replicas included (a replica used to fail it)."""
    import json

    from gatekeep.cli import main

    def replicas_listed() -> bool:
        c = tls_cluster.client(tls_cluster.nodes[0])
        try:
            return all(len(r) == 4 for r in c.execute_command("CLUSTER", "SLOTS"))
        finally:
            c.close()

    wait_until(replicas_listed, 10, "CLUSTER SLOTS to list the replicas")
    out = io.StringIO()
    code = main(["doctor", tls_cluster.url, "--json"], out=out)
    report = json.loads(out.getvalue())
    replication = {c["node"]: c["status"] for c in report["checks"] if c["name"] == "replication"}
    assert replication == {f"127.0.0.1:{n.port}": "OK" for n in tls_cluster.nodes}
    assert code == 0, [c for c in report["checks"] if c["status"] == "FAIL"]

"""Faults on a Sentinel-managed primary while limiter decisions flow.

Each test starts a primary, a replica and three Sentinels (down-after 1000 ms),
sends decisions through a ``FailoverBackend`` (policy "local", 2 instances),
injects one fault, and asserts: no exception reaches the caller, the breaker
opens within the deadline, Redis decides again within 2 s of the promotion
(seen by polling ``SENTINEL get-master-addr-by-name``), and what the fallback
admitted stays within its share of the limit. Run with ``-s`` for the figures.
"""

from __future__ import annotations

import signal
import socket
import threading

import httpx
import pytest
import redis

from gatekeep import AsyncLimiter, Limiter
from gatekeep.backends.connect import connect
from gatekeep.backends.failover import FailoverBackend
from gatekeep.rates import parse_rate

from .harness import Run, assert_outage, watch_promotion

pytestmark = [pytest.mark.redis, pytest.mark.slow]

LIMIT = "200/second burst 20"
RATE = parse_rate(LIMIT)
INSTANCES = 2
DEADLINE = 0.25


def make_backend(topo) -> FailoverBackend:
    return FailoverBackend(
        connect(topo.url, timeout=DEADLINE), policy="local", instances=INSTANCES, recovery_time=0.5
    )


@pytest.fixture
def stop_watching():
    stop = threading.Event()
    yield stop
    stop.set()


def watcher(run: Run, topo, stop: threading.Event):
    old = topo.primary.port
    return lambda: watch_promotion(run, topo.master_port, old, stop)


def test_sigkill_primary(sentinel_topology, stop_watching):
    topo = sentinel_topology
    backend = make_backend(topo)
    limiter = Limiter(LIMIT, backend=backend)
    # reservations made on the old primary, settled on the promoted replica (issue 14)
    budget = Limiter("1000/day", backend=backend)  # 86 s a token: no refill meanwhile
    below, above = budget.reserve("org", cost=100), budget.reserve("org", cost=100)
    topo.wait_replica_caught_up()
    run = Run(backend)
    run.drive(
        lambda: limiter.hit("client").allowed,
        lambda: topo.primary.signal(signal.SIGKILL),
        watch=watcher(run, topo, stop_watching),
    )
    figures = run.report(RATE, "sentinel SIGKILL, sync")
    assert_outage(figures, deadline=DEADLINE)
    # the decisions after recovery come from the promoted replica
    assert backend.primary.client.connection_pool.get_master_address()[1] == topo.replica.port
    assert figures["max_latency_ms"] < 1000 * (2 * DEADLINE + 0.2)
    fallback_calls = backend.fallback_calls
    assert below.settle(40).remaining == 860  # type: ignore[union-attr]
    assert above.settle(150).remaining == 810  # type: ignore[union-attr]
    assert budget.peek("org").remaining == 810 and backend.fallback_calls == fallback_calls
    backend.close()


def test_sigstop_primary_hangs(sentinel_topology, stop_watching):
    topo = sentinel_topology
    backend = make_backend(topo)
    limiter = Limiter(LIMIT, backend=backend)
    run = Run(backend)
    try:
        run.drive(
            lambda: limiter.hit("client").allowed,
            lambda: topo.primary.signal(signal.SIGSTOP),
            watch=watcher(run, topo, stop_watching),
        )
    finally:
        topo.primary.signal(signal.SIGCONT)
    figures = run.report(RATE, "sentinel SIGSTOP, sync")
    assert_outage(figures, deadline=DEADLINE)
    assert backend.breaker.counters.timeouts >= 1
    assert figures["max_latency_ms"] < 1000 * (2 * DEADLINE + 0.2)
    backend.close()


async def test_debug_sleep_primary_async(sentinel_topology, stop_watching):
    topo = sentinel_topology
    backend = make_backend(topo)
    limiter = AsyncLimiter(LIMIT, backend=backend)
    run = Run(backend)
    held: list[socket.socket] = []

    def debug_sleep() -> None:
        # On a raw socket, not awaited: the server stops answering everyone.
        sock = socket.create_connection(("127.0.0.1", topo.primary.port))
        sock.sendall(b"DEBUG SLEEP 4\r\n")
        held.append(sock)

    async def decide() -> bool:
        return (await limiter.hit("client")).allowed

    try:
        await run.adrive(decide, debug_sleep, watch=watcher(run, topo, stop_watching))
    finally:
        for sock in held:
            sock.close()
    figures = run.report(RATE, "sentinel DEBUG SLEEP 4, async")
    assert_outage(figures, deadline=DEADLINE)
    assert figures["max_latency_ms"] < 1000 * (2 * DEADLINE + 0.2)
    await backend.aclose()


async def test_sigkill_primary_through_asgi_middleware(sentinel_topology, stop_watching):
    from gatekeep.ratelimit.asgi import RateLimitMiddleware

    topo = sentinel_topology
    backend = make_backend(topo)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = RateLimitMiddleware(app, default=LIMIT, backend=backend, on_error="deny")
    run = Run(backend)
    statuses: dict[int, int] = {}
    topo.wait_replica_caught_up()
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def decide() -> bool:
            response = await client.get("/")
            code = response.status_code
            statuses[code] = statuses.get(code, 0) + 1
            if code >= 500:
                raise RuntimeError(f"HTTP {code}")
            return code == 200

        await run.adrive(
            decide,
            lambda: topo.primary.signal(signal.SIGKILL),
            watch=watcher(run, topo, stop_watching),
        )
    figures = run.report(RATE, "sentinel SIGKILL, ASGI middleware")
    print(
        f"[sentinel SIGKILL, ASGI middleware] statuses={statuses}, "
        f"errors seen by the middleware={middleware.policy.stats.errors}"
    )
    assert not any(code >= 500 for code in statuses)
    assert middleware.policy.stats.errors == 0  # nothing was raised into the middleware
    assert statuses.get(429, 0) > 0
    assert_outage(figures, deadline=DEADLINE)
    await backend.aclose()


def test_script_flush_is_transparent(sentinel_topology):
    topo = sentinel_topology
    backend = make_backend(topo)
    limiter = Limiter("1000/second", backend=backend)
    admin = redis.Redis(port=topo.primary.port)
    run = Run(backend)
    for i in range(300):
        if i % 50 == 25:
            admin.script_flush()
        run.call(lambda: limiter.hit("client").allowed)
    print(
        f"\n[SCRIPT FLUSH x6] decisions={len(run.events)}, "
        f"fallback={backend.fallback_calls}, breaker={backend.breaker.counters.as_dict()}"
    )
    assert not [e for e in run.events if e.error]
    assert backend.fallback_calls == 0 and backend.breaker.counters.failures == 0
    admin.close()
    backend.close()


def test_out_of_memory_under_noeviction(sentinel_topology):
    topo = sentinel_topology
    backend = make_backend(topo)
    limiter = Limiter(LIMIT, backend=backend)
    admin = redis.Redis(port=topo.primary.port)
    admin.config_set("maxmemory-policy", "noeviction")

    blob = b"x" * 64 * 1024
    for i in range(32):  # 2 MB of data
        admin.set(f"filler:{i}", blob)

    def fill() -> None:
        # Memory "full": a limit of 1 MB, well below the 2 MB of data (replication
        # buffers do not count against maxmemory), and nothing may be evicted.
        admin.config_set("maxmemory", 2**20)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            admin.set("one-more", blob)

    run = Run(backend)
    run.drive(lambda: limiter.hit("client").allowed, fill, max_seconds=2.0)
    assert not run.recovered()  # still full: every admission fails, the breaker reopens
    admin.config_set("maxmemory", 0)  # memory back
    run.drive(lambda: limiter.hit("client").allowed, lambda: None, fault_at=0.0, max_seconds=3.0)
    figures = run.report(RATE, "noeviction OOM")
    assert_outage(figures, deadline=DEADLINE, promotion=False)
    assert isinstance(backend.last_error, redis.exceptions.OutOfMemoryError)
    assert backend.breaker.is_closed
    admin.close()
    backend.close()


def test_all_sentinels_stopped(sentinel_topology):
    """Established connections keep working without Sentinels; when the primary
    dies too, nothing can be found, and the fallback decides."""
    topo = sentinel_topology
    backend = make_backend(topo)
    limiter = Limiter("1000/second", backend=backend)
    run = Run(backend)
    for _ in range(20):
        run.call(lambda: limiter.hit("client").allowed)
    for s in topo.sentinels:
        s.stop()
    for _ in range(200):
        run.call(lambda: limiter.hit("client").allowed)
    served_by_redis = sum(not e.local for e in run.events)
    topo.primary.signal(signal.SIGKILL)
    for _ in range(200):
        run.call(lambda: limiter.hit("client").allowed)
    slowest = max(e.latency for e in run.events[220:])
    print(
        f"\n[all sentinels stopped] decisions={len(run.events)}, by Redis before the "
        f"primary died={served_by_redis}, fallback={backend.fallback_calls}, "
        f"slowest after={slowest * 1000:.1f} ms, breaker={backend.breaker.counters.as_dict()}"
    )
    assert not [e for e in run.events if e.error]
    assert served_by_redis == 220
    assert backend.breaker.state.value == "open" and backend.fallback_calls >= 197
    assert slowest < 2 * DEADLINE
    backend.close()

"""Redis Cluster: one slot per decision, redirections and a master failover.

One 3-master cluster (a replica each, node timeout 1000 ms) serves the module;
the failover test, which kills a master, runs last.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
import redis
from redis.crc import key_slot

from gatekeep import ALGORITHMS, AsyncLimiter, ConcurrencyLimiter, Limiter
from gatekeep.backends.connect import connect
from gatekeep.backends.failover import FailoverBackend
from gatekeep.rates import parse_rate

from .harness import Run, assert_outage, watch_promotion

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DEADLINE = 0.25
KEYS = ["user:42", "a{b}c", "}{", "{", "%7B", "ünï:cödé", "x" * 300, "10.0.0.1"]


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_every_limiter_call_is_single_slot(cluster, algorithm, prefix):
    backend = FailoverBackend(connect(cluster.url, timeout=DEADLINE))
    limiter = Limiter(
        "3/minute; 10/hour; 100/day", backend=backend, algorithm=algorithm, prefix=prefix
    )
    plan = limiter.plan(None)
    # connected to every node first: a cold client's set-up is not what this test times
    backend.primary.client.ping(target_nodes=redis.RedisCluster.ALL_NODES)
    slots = set()
    for key in KEYS:
        keys = limiter.keys(key, plan)
        assert len(keys) == 3 and len({key_slot(k.encode()) for k in keys}) == 1, keys
        slots.add(key_slot(keys[0].encode()))
        # on the real cluster: no CROSSSLOT, and the limits hold
        assert [limiter.hit(key).allowed for _ in range(4)] == [True, True, True, False]
    assert len(slots) > 1  # the keys spread over the cluster
    ds = limiter.hit_many(KEYS)  # one pipeline over several slots and nodes
    assert not any(d.allowed for d in ds)
    assert backend.fallback_calls == 0 and backend.breaker.counters.failures == 0
    backend.close()


async def test_async_cluster_calls(cluster, prefix):
    backend = FailoverBackend(connect(cluster.url, timeout=DEADLINE))
    limiter = AsyncLimiter("2/minute; 5/hour", backend=backend, prefix=prefix)
    assert [(await limiter.hit("k")).allowed for _ in range(3)] == [True, True, False]
    assert [d.remaining for d in await limiter.hit_many(KEYS)] == [1] * len(KEYS)
    await limiter.reset("k")
    assert (await limiter.hit("k")).remaining == 1
    assert backend.fallback_calls == 0
    await backend.aclose()


def test_rules_keyed_by_different_identities_split_by_slot(cluster, prefix):
    """The middleware checks rules keyed by the client IP and by an API key in one
    call; on a cluster their keys sit in different slots: the call is split, and a
    denial refunds what the other slot already charged."""
    from gatekeep.ratelimit import RateLimitPolicy, Rule, header
    from gatekeep.ratelimit.drivers import check_sync
    from gatekeep.ratelimit.request import WSGIRequest

    backend = FailoverBackend(connect(cluster.url, timeout=DEADLINE))
    policy = RateLimitPolicy(
        [
            Rule("5/minute", "/**", name="per-ip"),
            Rule("2/minute", "/**", name="per-key", key=header("x-api-key")),
        ],
        backend=backend,
        prefix=prefix,
        metrics=None,
    )
    rules = policy.match("GET", "/x")
    assert rules is not None and len(rules) == 2

    def get(api_key: str) -> bool:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/x",
            "REMOTE_ADDR": "10.0.0.1",
            "HTTP_X_API_KEY": api_key,
        }
        return check_sync(policy, WSGIRequest(environ), rules).allowed

    assert [get("k1") for _ in range(3)] == [True, True, False]  # the key's 2/minute
    assert [get("k2") for _ in range(3)] == [True, True, False]
    # 4 admitted: the IP has 1 of 5 left only because both denials were refunded
    assert [get("k3") for _ in range(2)] == [True, False]
    assert backend.fallback_calls == 0 and backend.breaker.counters.failures == 0
    backend.close()


def test_reserve_settle_acquire_and_rule_shaping_on_a_cluster(cluster, prefix):
    """Issue 14 on a cluster: a reservation's settlement and acquire are one-slot calls;
    a settle= rule beside a rule keyed in another slot settles its own keys only."""
    from gatekeep.ratelimit import Rule, header
    from gatekeep.ratelimit.wsgi import RateLimitMiddleware

    backend = FailoverBackend(connect(cluster.url, timeout=DEADLINE))
    backend.primary.client.ping(target_nodes=redis.RedisCluster.ALL_NODES)
    limiter = Limiter("10/minute; 100/hour", backend=backend, prefix=prefix)
    r = limiter.reserve("llm", cost=5)
    assert [d.remaining for d in r.settle(2).details] == [8, 98]
    assert limiter.reserve("llm", cost=1).settle(12).remaining == 0  # 4 tokens of debt
    assert not limiter.acquire("llm", timeout=0.5)  # 30 s away: decided at once
    fast = Limiter("50/second", backend=backend, prefix=prefix)
    assert fast.hit("k", cost=50) and fast.acquire("k", timeout=1)

    def app(environ, start_response):
        start_response("200 OK", [("X-Tokens-Used", "4")])
        return [b"ok"]

    wsgi = RateLimitMiddleware(
        app,
        rules=[
            Rule("100/minute", name="per-ip"),
            Rule("10/minute", name="llm", key=header("x-api-key"), settle="x-tokens-used"),
        ],
        backend=backend,
        prefix=prefix,
        metrics=None,
    )
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "10.0.0.1"}
    seen = []
    for _ in range(4):
        body = wsgi({**environ, "HTTP_X_API_KEY": "k1"}, lambda s, h, e=None: seen.append(s))
        getattr(body, "close", lambda: None)()  # the server's close: the settlement
    # 4 + 4 + 4 used of 10 (the third admitted at 1 of the 2 left): a debt, then 429
    assert seen == ["200 OK"] * 3 + ["429 Too Many Requests"]
    assert backend.fallback_calls == 0 and backend.breaker.counters.failures == 0
    backend.close()


def test_blocks_on_a_cluster(cluster, prefix):
    """Penalty blocks: a block key shares its limits' slot (a limiter's call; each
    middleware rule's group in a call split by slot), and reset lifts a block."""
    from gatekeep.ratelimit import RateLimitPolicy, Rule, header
    from gatekeep.ratelimit.drivers import check_sync
    from gatekeep.ratelimit.request import WSGIRequest

    backend = FailoverBackend(connect(cluster.url, timeout=DEADLINE))
    backend.primary.client.ping(target_nodes=redis.RedisCluster.ALL_NODES)
    limiter = Limiter("2/minute; 10/hour", backend=backend, prefix=prefix, block=60)
    for key in KEYS:
        keys = limiter.keys(key, limiter.default_plan)
        assert len(keys) == 3 and len({key_slot(k.encode()) for k in keys}) == 1, keys
        assert [limiter.hit(key).allowed for _ in range(3)] == [True, True, False]
        assert limiter.hit(key).retry_after > 59  # blocked
        limiter.reset(key)
        assert limiter.hit(key)
    policy = RateLimitPolicy(
        [
            Rule("5/minute", "/**", name="per-ip"),
            Rule("1/minute", "/**", name="per-key", key=header("x-api-key"), block=120),
        ],
        backend=backend,
        prefix=prefix,
        metrics=None,
    )
    rules = policy.match("GET", "/x")
    assert rules is not None

    def get(api_key: str) -> tuple[bool, str | None]:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "REMOTE_ADDR": "10.0.0.1"}
        environ["HTTP_X_API_KEY"] = api_key
        outcome = check_sync(policy, WSGIRequest(environ), rules)
        return outcome.allowed, dict(outcome.headers).get("Retry-After")

    assert get("k1") == (True, None)
    assert get("k1") == (False, "120")  # the breach: k1 blocked, the IP's hit refunded
    assert get("k1")[0] is False
    assert get("k2") == (True, None)
    blocks = backend.primary.client.keys(f"gk:{prefix}:*:blk")
    assert len(blocks) == 1 and blocks[0].endswith(b":per-key:blk")  # k1's, hashed
    assert backend.fallback_calls == 0 and backend.breaker.counters.failures == 0
    backend.close()


def test_concurrency_rules_on_a_cluster(cluster, prefix):
    """Slots and rates keyed by different identities sit in different slots: the call is
    split (leases first, then the rates), and a later denial gives back what was taken."""
    from gatekeep.ratelimit import RateLimitPolicy, Rule, header
    from gatekeep.ratelimit.drivers import check_sync
    from gatekeep.ratelimit.request import WSGIRequest

    backend = FailoverBackend(connect(cluster.url, timeout=DEADLINE))
    policy = RateLimitPolicy(
        [
            Rule("100/minute", "/x", name="per-ip", concurrency=1),
            Rule("2/minute", "/x", name="per-key", key=header("x-api-key")),
            Rule(None, "/one", name="one", concurrency=1),
        ],
        backend=backend,
        prefix=prefix,
        metrics=None,
    )

    def get(api_key: str, path: str = "/x"):
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "REMOTE_ADDR": "10.0.0.1",
            "HTTP_X_API_KEY": api_key,
        }
        rules = policy.match("GET", path)
        return check_sync(policy, WSGIRequest(environ), rules)

    first = get("k1")
    assert first.allowed and first.held is not None
    assert not get("k2").allowed  # the IP's one slot: k2's rate is not charged
    policy.leases.release(first.held)
    for _ in range(2):
        ok = get("k2")
        assert ok.allowed
        policy.leases.release(ok.held)
    assert not get("k2").allowed  # k2's 2/minute; the slot it took is given back
    ok = get("k1")
    assert ok.allowed  # so the slot is free
    policy.leases.release(ok.held)
    one = get("k1", "/one")
    assert one.allowed and not get("k1", "/one").allowed
    policy.leases.release(one.held)
    assert get("k1", "/one").allowed
    limiter = ConcurrencyLimiter(1, backend=backend, prefix=prefix, metrics=None)
    for key in KEYS:  # one lease set per key, in its key's slot
        with limiter.slot(key):
            assert not limiter.acquire(key).acquired
        assert limiter.peek(key).remaining == 1
    assert backend.fallback_calls == 0 and backend.breaker.counters.failures == 0
    backend.close()


def _cmd(cluster, port: int, *args, asking: bool = False):
    c = redis.Redis(port=port, single_connection_client=True, socket_timeout=1)
    try:
        if asking:  # a node importing a slot answers for it only after ASKING
            c.execute_command("ASKING")
        return c.execute_command(*args)
    finally:
        c.close()


def test_slot_migration_ask_tryagain_moved(cluster, prefix):
    backend = FailoverBackend(connect(cluster.url, timeout=DEADLINE))
    limiter = Limiter("1000/day; 5000/week", backend=backend, prefix=prefix)
    plan = limiter.plan(None)
    keys = limiter.keys("mig", plan)
    slot = key_slot(keys[0].encode())
    src = cluster.master_of_slot(slot)
    masters = {cluster.master_of_slot(s) for s in (0, 6000, 12000)}
    dst = next(p for p in masters if p != src)
    src_id, dst_id = cluster.node_id(src), cluster.node_id(dst)
    timings: dict[str, float] = {}

    def timed(label: str, fn):
        t = time.perf_counter()
        result = fn()
        timings[label] = round((time.perf_counter() - t) * 1000, 1)
        return result

    for _ in range(5):
        limiter.hit("mig")
    _cmd(cluster, dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    _cmd(cluster, src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    try:
        # the keys are still on the source: it answers
        assert timed("migrating", lambda: limiter.hit("mig")).remaining == 994
        # a key of that slot that does not exist yet: ASK, then ASKING on the target
        other = timed("ask", lambda: limiter.hit("mig", "7/minute"))
        assert other.allowed and other.remaining == 6
        assert _cmd(
            cluster, dst, "EXISTS", limiter.keys("mig", limiter.plan("7/minute"))[0], asking=True
        )
        # half of a multi-key call moved: TRYAGAIN until the migration ends
        _cmd(cluster, src, "MIGRATE", "127.0.0.1", dst, keys[0], 0, 5000)
        before = backend.fallback_calls
        d = timed("tryagain", lambda: limiter.hit("mig"))
        tryagain_fallbacks = backend.fallback_calls - before
        assert d.allowed
        _cmd(cluster, src, "MIGRATE", "127.0.0.1", dst, keys[1], 0, 5000)
    finally:
        for port in masters:
            _cmd(cluster, port, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    # the client still thinks the slot is on the source: MOVED, then the target
    moved = timed("moved", lambda: limiter.hit("mig"))
    assert cluster.master_of_slot(slot) == dst
    # the state moved with the keys: 5 + 1 + (1 if TRYAGAIN was decided by Redis) + 1
    assert moved.remaining == 1000 - 7 - (0 if tryagain_fallbacks else 1)
    print(
        f"\n[cluster migration] ms per call: {timings}; TRYAGAIN call answered by "
        f"{'the fallback' if tryagain_fallbacks else 'Redis'}; "
        f"breaker={backend.breaker.counters.as_dict()}"
    )
    assert all(ms < 1000 * (DEADLINE + 0.15) for ms in timings.values()), timings
    assert backend.breaker.is_closed
    backend.close()


def test_clusterdown_while_a_slot_is_unassigned(cluster, prefix):
    """A master gives up the key's slot for 1 s: CLUSTERDOWN, then served again."""
    rate = parse_rate("200/second burst 20")
    backend = FailoverBackend(
        connect(cluster.url, timeout=DEADLINE), instances=2, recovery_time=0.5
    )
    limiter = Limiter(rate, backend=backend, prefix=prefix)
    slot = key_slot(limiter.keys("down", limiter.plan(None))[0].encode())
    owner = cluster.master_of_slot(slot)
    run = Run(backend)
    restored: list[float] = []

    def give_up_slot() -> None:
        _cmd(cluster, owner, "CLUSTER", "DELSLOTS", slot)

        def give_back() -> None:
            _cmd(cluster, owner, "CLUSTER", "ADDSLOTS", slot)
            restored.append(time.monotonic())

        threading.Timer(1.0, give_back).start()

    run.drive(lambda: limiter.hit("down").allowed, give_up_slot, max_seconds=8)
    figures = run.report(rate, "cluster CLUSTERDOWN (slot unassigned 1 s)")
    assert restored, "the slot was not given back"
    back = figures["redis_after_fault_s"] - (restored[0] - run.t_fault)
    print(f"[cluster CLUSTERDOWN] Redis decided again {back:.3f} s after the slot was back")
    assert_outage(figures, deadline=DEADLINE + 0.3, promotion=False)  # redis-py pauses 0.25 s
    assert back <= 2.0
    assert isinstance(backend.last_error, redis.exceptions.ClusterDownError)
    cluster.wait_ok()
    backend.close()


def test_master_sigkill_failover(cluster, prefix):
    """Kill the master that serves the key: its replica takes over."""
    rate = parse_rate("200/second burst 20")
    backend = FailoverBackend(
        connect(cluster.url, timeout=DEADLINE), instances=2, recovery_time=0.5
    )
    limiter = Limiter(rate, backend=backend, prefix=prefix)
    slot = key_slot(limiter.keys("victim", limiter.plan(None))[0].encode())
    victim = cluster.master_of_slot(slot)
    survivor = next(n for n in cluster.nodes if n.port != victim)
    # a key on each of the two healthy shards, hit beside the victim's key
    healthy = {}
    for i in range(1000):
        owner = cluster.master_of_slot(
            key_slot(limiter.keys(f"h{i}", limiter.plan(None))[0].encode())
        )
        if owner != victim:
            healthy.setdefault(owner, f"h{i}")
        if len(healthy) == 2:
            break
    others = Limiter("100000/second", backend=backend, prefix=prefix)
    # As the README recommends: with the default `yes`, every node answers CLUSTERDOWN
    # while one shard has no primary, and the healthy shards' breakers open too (rightly:
    # Redis refuses to serve them).
    for node in cluster.live():
        c = cluster.client(node)
        c.config_set("cluster-require-full-coverage", "no")
        c.close()
    run = Run(backend)
    stop = threading.Event()

    def current() -> int | None:
        return cluster.master_of_slot(slot, via=survivor)

    def decide() -> bool:
        for key in healthy.values():
            others.hit(key)
        return limiter.hit("victim").allowed

    try:
        run.drive(
            decide,
            lambda: cluster.node(victim).signal(signal.SIGKILL),
            watch=lambda: watch_promotion(run, current, victim, stop),
        )
    finally:
        stop.set()
    figures = run.report(rate, "cluster master SIGKILL")
    assert_outage(figures, deadline=DEADLINE)
    assert figures["max_latency_ms"] < 1000 * (2 * DEADLINE + 0.4)
    # one breaker per shard: only the victim's keys went to the fallback
    assert list(backend.fallback_by_breaker) == [f"redis[127.0.0.1:{victim}]"], (
        backend.fallback_by_breaker
    )
    assert backend.fallback_by_breaker[f"redis[127.0.0.1:{victim}]"] == figures["local_decisions"]
    assert all(backend.breakers.get(f"127.0.0.1:{port}").counters.failures == 0 for port in healthy)
    backend.close()

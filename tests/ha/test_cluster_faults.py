"""Redis Cluster: a master SIGKILLed under load, through a real HTTP server.

``tests/ha/fault_app.py`` (``RateLimitMiddleware(SessionMiddleware(app))``, one
``FailoverBackend`` over the cluster) runs under uvicorn in its own process. Client
threads send rate-limited requests for keys on each of the 3 shards, reads and writes
of sessions on each shard (written before the fault, the replicas caught up), and a
hot key on the shard that fails, whose tight limit the fallback must enforce. One
master is SIGKILLed; the run goes on until its replica is promoted and Redis decides
that shard's keys again. Each response says who decided its rate limit
(``x-decided-by``: the in-process fallback or Redis).

Asserted (issue 13, the README's "Guarantees"): keys on the healthy shards are
decided by Redis (>= 99 %) during the outage; sessions on the healthy shards are
read (never empty) and written (never a 503); sessions on the failed shard are read
from its replica (``from_replica``) during the outage; no 5xx but the failed shard's
session writes (503 with ``Retry-After``); Redis decides the failed shard's keys
again within 2 s of the promotion; the fallback's admissions for the hot key stay
within the bound. The cluster runs with ``cluster-require-full-coverage no`` (the
README's recommendation): with ``yes`` every node answers ``CLUSTERDOWN`` while a
shard fails over, and no client can keep the healthy shards. Run with ``-s`` for the
figures.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from redis.crc import key_slot

import gatekeep
from gatekeep.rates import parse_rate
from gatekeep.testing import free_port

from .fault_app import HOT
from .harness import assert_outage, fallback_bound, watch_promotion
from .topology import ClusterTopology, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = Path(__file__).with_name("fault_app.py")
DEADLINE = 0.25
#: Client threads, and the pause of each between two requests (~600 requests/s
#: in all on a 2-core machine, leaving CPU to the server and the 6 nodes).
THREADS, PAUSE = 4, 0.003
KEYS_PER_SHARD, READERS_PER_SHARD, WRITERS_PER_SHARD = 3, 4, 2
FULL_COVERAGE_NO = ("--cluster-require-full-coverage", "no")


@pytest.fixture(scope="module")
def fault_cluster(redis_binary: str) -> Iterator[ClusterTopology]:
    """Its own cluster: the test kills one of its masters."""
    topo = ClusterTopology.start(redis_binary, FULL_COVERAGE_NO)
    yield topo
    topo.stop()


class AppProcess:
    """``fault_app.py`` under uvicorn, in its own process, on a free port."""

    def __init__(self, url: str) -> None:
        self.port = free_port()
        src = str(Path(gatekeep.__file__).resolve().parents[1])  # the gatekeep under test
        path = os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])
        # its output to a file: a pipe nobody reads could fill and block the app
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), str(self.port), url],
            env={**os.environ, "PYTHONPATH": path},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(self._up, 20, "the app to answer")
        except BaseException:
            self.stop()
            raise

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the app exited: {self.output()}")
        try:
            return self.get("/_stats")[0] == 200
        except OSError:
            return False

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            body = r.read()
            data = json.loads(body) if r.getheader("content-type") == "application/json" else None
            return r.status, data, r
        finally:
            c.close()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        out = self.output()
        self.log.close()
        return out


@dataclass
class Request:
    kind: str  # "key", "hot", "read", "write"
    path: str
    headers: dict[str, str]
    victim: bool  # on the shard that fails
    expect: int | None = None  # a read's session value


@dataclass
class Event:
    t: float
    req: Request
    status: int
    decided_by: str | None
    data: Any
    retry_after: str | None
    latency: float
    error: str | None = None


def _cookie(response: Any) -> str:
    for name, value in response.getheaders():
        if name.lower() == "set-cookie" and value.startswith("session="):
            return value.split(";", 1)[0].split("=", 1)[1]
    raise AssertionError("no session cookie")


def _shard_of(masters: list[tuple[int, int, int]], slot: int) -> int:
    return next(port for start, end, port in masters if start <= slot <= end)


def _keys_by_shard(
    masters: list[tuple[int, int, int]], count: int, prefix: str
) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {port: [] for _, _, port in masters}
    i = 0
    while any(len(v) < count for v in out.values()):
        key = f"{prefix}{i}"
        i += 1
        shard = _shard_of(masters, key_slot(key.encode()))
        if len(out[shard]) < count:
            out[shard].append(key)
    return out


def _drive(
    app: AppProcess, plan: list[Request], events: list[Event], stop: threading.Event, offset: int
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    i = offset
    while not stop.is_set():
        req = plan[i % len(plan)]
        i += 1
        t = time.monotonic()
        try:
            conn.request("GET", req.path, headers=req.headers)
            r = conn.getresponse()
            body = r.read()
            data = json.loads(body) if r.getheader("content-type") == "application/json" else None
            events.append(
                Event(
                    t,
                    req,
                    r.status,
                    r.getheader("x-decided-by"),
                    data,
                    r.getheader("retry-after"),
                    time.monotonic() - t,
                )
            )
        except Exception as exc:  # a hang (timeout) or a dropped connection: never expected
            events.append(
                Event(
                    t,
                    req,
                    0,
                    None,
                    None,
                    None,
                    time.monotonic() - t,
                    f"{type(exc).__name__}: {exc}",
                )
            )
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
        time.sleep(PAUSE)
    conn.close()


def test_master_sigkill_under_load_through_uvicorn(fault_cluster: ClusterTopology) -> None:
    topo = fault_cluster
    masters = [
        (start, end, int(master[1]))
        for start, end, master, *_ in topo.client(topo.live()[0]).execute_command(
            "CLUSTER", "SLOTS"
        )
    ]
    assert len({port for _, _, port in masters}) == 3
    app = AppProcess(topo.url)
    try:
        _run(app, topo, masters)
    except BaseException:
        print(f"\n[app output]\n{app.output()[-3000:]}")
        raise
    finally:
        app.stop()


def _run(app: AppProcess, topo: ClusterTopology, masters: list[tuple[int, int, int]]) -> None:
    keys = _keys_by_shard(masters, KEYS_PER_SHARD + 1, "key")
    hot_key = keys[masters[0][2]][-1]  # the hot key's shard is the one that fails
    victim = masters[0][2]

    # sessions on every shard, written before the fault
    readers: dict[int, list[tuple[str, int]]] = {port: [] for port in keys}
    writers: dict[int, list[str]] = {port: [] for port in keys}
    v = 1000
    while any(len(r) < READERS_PER_SHARD for r in readers.values()) or any(
        len(w) < WRITERS_PER_SHARD for w in writers.values()
    ):
        v += 1
        status, _, r = app.get(f"/set?v={v}", {"x-key": keys[victim][0]})
        assert status == 200
        cookie = _cookie(r)
        shard = _shard_of(masters, key_slot(cookie.split(".")[0][:4].encode()))
        if len(readers[shard]) < READERS_PER_SHARD:
            readers[shard].append((cookie, v))
        elif len(writers[shard]) < WRITERS_PER_SHARD:
            writers[shard].append(cookie)
    topo.wait_replicas_caught_up()

    plan: list[Request] = []
    for port in keys:
        on_victim = port == victim
        same_shard = {"x-key": keys[port][0]}
        for key in keys[port][:KEYS_PER_SHARD]:
            plan.append(Request("key", "/k", {"x-key": key}, on_victim))
        for cookie, value in readers[port]:
            plan.append(
                Request(
                    "read", "/", {**same_shard, "cookie": f"session={cookie}"}, on_victim, value
                )
            )
        for cookie in writers[port]:
            plan.append(
                Request("write", "/write", {**same_shard, "cookie": f"session={cookie}"}, on_victim)
            )
    hot = Request("hot", "/hot", {"x-key": hot_key}, True)
    # the hot key gets a third of the requests: several times its limit
    plan = [x for i, req in enumerate(plan) for x in ((req, hot) if i % 2 else (req,))]

    events: list[Event] = []
    stop = threading.Event()
    watcher_stop = threading.Event()
    promo = SimpleNamespace(t_promoted=None)
    survivor = next(n for n in topo.nodes if n.port != victim)
    slot = masters[0][0]
    threads = [
        threading.Thread(target=_drive, args=(app, plan, events, stop, k * len(plan) // THREADS))
        for k in range(THREADS)
    ]
    for th in threads:
        th.start()
    t_fault = t_back = None
    try:
        time.sleep(0.5)
        t_fault = time.monotonic()
        topo.node(victim).signal(signal.SIGKILL)
        watch_promotion(
            promo, lambda: topo.master_of_slot(slot, via=survivor), victim, watcher_stop
        )  # type: ignore[arg-type]

        def back() -> float | None:
            if promo.t_promoted is None:
                return None
            return next(
                (
                    e.t
                    for e in list(events)
                    if e.req.victim and e.t > promo.t_promoted and e.decided_by == "redis"
                ),
                None,
            )

        t_back = wait_until(
            back, 15, "Redis to decide the failed shard's keys again", interval=0.05
        )
        time.sleep(0.5)  # and a while after
    finally:
        stop.set()
        watcher_stop.set()
        for th in threads:
            th.join(10)
    stats = app.get("/_stats")[1]
    _check(events, victim, t_fault, promo.t_promoted, t_back, stats)


def _check(
    events: list[Event],
    victim: int,
    t_fault: float,
    t_promoted: float,
    t_back: float,
    stats: Any,
) -> dict[str, Any]:
    """The figures of one run, printed, then asserted."""
    outage = [e for e in events if t_fault <= e.t < t_back]
    healthy = [e for e in outage if not e.req.victim]
    healthy_redis = sum(e.decided_by == "redis" for e in healthy)
    victim_local = [e for e in events if e.req.victim and e.decided_by == "fallback"]
    hot_local = [e for e in victim_local if e.req.kind == "hot"]
    # the server decided them between the first one's start and the last one's answer:
    # a span at least as long as the fallback's, so a bound at least as large
    span = (hot_local[-1].t + hot_local[-1].latency - hot_local[0].t) if hot_local else 0.0
    reads = [e for e in events if e.req.kind == "read"]
    healthy_reads = [e for e in reads if not e.req.victim]
    wrong_healthy_reads = [e for e in healthy_reads if not _read_ok(e)]
    victim_reads = [e for e in reads if e.req.victim and t_fault <= e.t < t_promoted]
    wrong_victim_reads = [e for e in victim_reads if not _read_ok(e)]
    writes = [e for e in events if e.req.kind == "write"]
    healthy_writes = [e for e in writes if not e.req.victim]
    # a write's session must have been loaded (n >= 2: it was 1 before the fault)
    failed_healthy_writes = [e for e in healthy_writes if e.status != 200 or (e.data["n"] or 0) < 2]
    victim_503 = [e for e in writes if e.req.victim and e.status == 503]
    five_xx = [e for e in events if e.status >= 500 and e not in victim_503]
    statuses: dict[int, int] = {}
    for e in events:
        statuses[e.status] = statuses.get(e.status, 0) + 1
    first_local = min((e.t for e in victim_local), default=math.inf)
    by_breaker = stats["fallback_by_breaker"]
    figures: dict[str, Any] = {
        "requests": len(events),
        "per_s": round(len(events) / (events[-1].t - events[0].t), 1),
        "statuses": statuses,
        "client_errors": sum(e.error is not None for e in events),
        "max_latency_ms": round(1000 * max(e.latency for e in events), 1),
        "promoted_after_fault_s": round(t_promoted - t_fault, 3),
        "redis_after_promotion_s": round(t_back - t_promoted, 3),
        "outage_s": round(t_back - t_fault, 3),
        "healthy_decisions_in_outage": len(healthy),
        "healthy_by_redis_pct": round(100 * healthy_redis / max(1, len(healthy)), 2),
        "failed_shard_by_fallback": len(victim_local),
        "fallback_by_breaker": by_breaker,
        "healthy_reads": len(healthy_reads),
        "healthy_reads_empty_or_wrong": len(wrong_healthy_reads),
        "healthy_writes": len(healthy_writes),
        "healthy_writes_failed": len(failed_healthy_writes),
        "failed_shard_reads_in_outage": len(victim_reads),
        "of_them_from_replica": sum(bool(e.data and e.data["replica"]) for e in victim_reads),
        "failed_shard_reads_empty_or_wrong": [
            f"{e.data} at fault{e.t - t_fault:+.3f} s, promotion{e.t - t_promoted:+.3f} s"
            for e in wrong_victim_reads
        ],
        "failed_shard_writes_503": len(victim_503),
        "hot_local_admitted": sum(e.status == 200 for e in hot_local),
        "hot_local_denied": sum(e.status == 429 for e in hot_local),
        "hot_local_bound": fallback_bound(parse_rate(HOT), 1, span),
        "store": stats["store"],
    }
    print(
        "\n[cluster master SIGKILL through uvicorn] "
        + ", ".join(f"{k}={v}" for k, v in figures.items())
    )
    assert figures["client_errors"] == 0, [e.error for e in events if e.error][:3]
    assert not five_xx, [(e.req.kind, e.status, e.data) for e in five_xx[:5]]
    assert all(e.retry_after is not None and int(e.retry_after) >= 1 for e in victim_503)
    # the healthy shards' keys: Redis decides (the library's own counters agree)
    assert len(healthy) > 100 and healthy_redis >= 0.99 * len(healthy), figures
    healthy_breakers = [name for name in by_breaker if not name.endswith(f":{victim}]")]
    assert not healthy_breakers, by_breaker
    # sessions on the healthy shards: read and written as if nothing happened
    assert not wrong_healthy_reads, [(e.status, e.data) for e in wrong_healthy_reads[:5]]
    assert not failed_healthy_writes, [(e.status, e.data) for e in failed_healthy_writes[:5]]
    # sessions on the failed shard: read from its replica while it is down
    assert len(victim_reads) > 20, figures
    assert not wrong_victim_reads, [(e.status, e.data) for e in wrong_victim_reads[:5]]
    assert figures["of_them_from_replica"] > 0, figures
    assert_outage(
        {
            "exceptions": figures["client_errors"],
            "open_after_fault_s": first_local - t_fault,
            "redis_after_promotion_s": figures["redis_after_promotion_s"],
            "local_decisions": len(hot_local),
            "local_admitted": figures["hot_local_admitted"],
            "local_denied": figures["hot_local_denied"],
            "local_bound": figures["hot_local_bound"],
        },
        deadline=DEADLINE,
    )
    return figures


def _read_ok(e: Event) -> bool:
    return e.status == 200 and e.data is not None and e.data["n"] == e.req.expect

"""``gatekeep doctor`` against real throwaway servers set up to trigger each WARN and FAIL."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import redis
import redis.cluster

from gatekeep import Limiter, RedisBackend
from gatekeep.cli import main
from gatekeep.cli.connect import redact
from gatekeep.testing import free_port

pytestmark = pytest.mark.redis

SAMPLE = ("--cpu-sample", "0.2")


def doctor(url: str, *extra: str) -> tuple[int, dict]:
    out = io.StringIO()
    rc = main(["doctor", url, "--json", *SAMPLE, *extra], out=out)
    report = json.loads(out.getvalue())
    assert report["status"] in ("OK", "WARN", "FAIL")
    assert rc == (1 if report["status"] == "FAIL" else 0)
    return rc, report


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def statuses(report: dict, name: str) -> list[str]:
    return [c["status"] for c in report["checks"] if c["name"] == name]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_healthy_server_is_all_ok_and_exits_0(server_factory):
    s = server_factory("redis", ("--maxmemory", "64mb", "--maxmemory-policy", "volatile-ttl"))
    rc, report = doctor(s.url)
    assert rc == 0
    checks = by_name(report)
    for name in (
        "connect",
        "version",
        "scripting",
        "maxmemory",
        "maxmemory-policy",
        "evictions",
        "memory",
        "swap",
        "clients",
        "replication",
    ):
        assert checks[name]["status"] == "OK", checks[name]
    assert checks["swap"]["value"] == 0  # a local server: VmSwap read from /proc
    assert checks["decision latency"]["value"] > 0
    assert checks["decision latency"]["status"] != "FAIL"
    # the probe leaves nothing behind
    assert redis.Redis.from_url(s.url).keys("gk:doctor:*") == []


def test_shared_servers_redis_and_valkey(server):
    rc, report = doctor(server.url)
    assert rc == 0
    version = by_name(report)["version"]
    assert version["message"].startswith("Valkey" if server.name == "valkey" else "Redis")
    assert by_name(report)["swap"]["value"] == 0  # our own process: VmSwap from /proc
    # the fixture servers run with no maxmemory and noeviction: both warn
    assert by_name(report)["maxmemory"]["status"] == "WARN"
    assert by_name(report)["maxmemory-policy"]["status"] == "WARN"
    assert report["status"] == "WARN"


def test_text_output_and_exit_status_from_the_command_line(server_factory):
    healthy = server_factory("redis", ("--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"))
    bad = server_factory("redis", ("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"))
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    ok = subprocess.run(
        [sys.executable, "-m", "gatekeep", "doctor", healthy.url, *SAMPLE],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "  OK    maxmemory-policy  volatile-lru" in ok.stdout
    failed = subprocess.run(
        [sys.executable, "-m", "gatekeep", "doctor", bad.url, *SAMPLE],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "  FAIL  maxmemory-policy  allkeys-lru" in failed.stdout
    assert failed.stdout.rstrip().splitlines()[-1].startswith("FAIL:")


def test_allkeys_policy(server_factory):
    s = server_factory("redis", ("--maxmemory-policy", "allkeys-lru"))
    rc, report = doctor(s.url)
    assert (rc, by_name(report)["maxmemory-policy"]["status"]) == (0, "WARN")  # maxmemory 0
    redis.Redis.from_url(s.url).config_set("maxmemory", "64mb")
    rc, report = doctor(s.url)
    assert (rc, by_name(report)["maxmemory-policy"]["status"]) == (1, "FAIL")


def test_tiny_maxmemory_filled_until_evictions(server_factory):
    s = server_factory("redis", ("--maxmemory", "2mb", "--maxmemory-policy", "volatile-lru"))
    client = redis.Redis.from_url(s.url)
    blob = b"x" * 10_000
    i = 0
    while int(client.info("stats")["evicted_keys"]) == 0:
        pipe = client.pipeline(transaction=False)
        for _ in range(50):
            pipe.set(f"filler:{i}", blob, ex=3600)
            i += 1
        pipe.execute()
        assert i < 10_000, "no eviction after 100 MB of writes"
    _rc, report = doctor(s.url)
    checks = by_name(report)
    assert checks["evictions"]["status"] == "WARN" and checks["evictions"]["value"] > 0
    assert checks["memory"]["status"] in ("WARN", "FAIL")
    assert checks["memory"]["value"] > 0.8
    assert checks["maxmemory-policy"]["status"] == "OK"


def test_memory_near_the_limit_fails(server_factory):
    s = server_factory("redis", ("--maxmemory-policy", "noeviction"))
    client = redis.Redis.from_url(s.url)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(int(used / 0.97)))  # ~97% full: above the 95% line
    rc, report = doctor(s.url)
    assert rc == 1
    assert by_name(report)["memory"]["status"] == "FAIL"


def test_connections_near_maxclients_warn(server_factory):
    s = server_factory("redis", ("--maxclients", "20"))
    socks = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(16)]
    try:
        _rc, report = doctor(s.url)
    finally:
        for sock in socks:
            sock.close()
    clients = by_name(report)["clients"]
    assert clients["status"] == "WARN", clients
    assert "of 20 connections" in clients["message"]


def test_config_refused_reads_info_and_does_not_crash(server_factory):
    s = server_factory(
        "redis",
        (
            "--rename-command",
            "CONFIG",
            "",
            "--maxmemory",
            "64mb",
            "--maxmemory-policy",
            "volatile-ttl",
        ),
    )
    rc, report = doctor(s.url)
    checks = by_name(report)
    assert checks["config"]["status"] == "OK"
    assert "CONFIG GET refused" in checks["config"]["message"]
    assert checks["maxmemory-policy"]["value"] == "volatile-ttl"  # from INFO memory
    assert checks["clients"]["status"] == "OK"  # maxclients from INFO clients
    assert rc == 0


def test_replica(server_factory):
    primary = server_factory("redis", ("--maxmemory", "64mb", "--maxmemory-policy", "volatile-ttl"))
    replica = server_factory("redis", ("--replicaof", "127.0.0.1", str(primary.port)))
    redis.Redis.from_url(primary.url).config_set("repl-diskless-sync-delay", 0)
    rclient = redis.Redis.from_url(replica.url)
    wait_for(
        lambda: rclient.info("replication").get("master_link_status") == "up",
        what="the replica to sync",
    )
    pclient = redis.Redis.from_url(primary.url)
    wait_for(
        lambda: pclient.info("replication").get("slave0", {}).get("state") == "online",
        what="the primary to see its replica online",
    )
    rc, report = doctor(primary.url)
    assert rc == 0
    assert statuses(report, "replication") == ["OK"]
    assert "1 connected replica" in by_name(report)["replication"]["message"]
    assert statuses(report, "replica lag") == ["OK"]
    # gatekeep pointed at the replica: it cannot write
    rc, report = doctor(replica.url)
    assert rc == 1
    assert statuses(report, "replication") == ["FAIL"]
    assert by_name(report)["decision latency"]["status"] == "FAIL"  # READONLY
    # the primary goes away: the link is down
    primary.stop()
    wait_for(
        lambda: rclient.info("replication").get("master_link_status") == "down",
        what="the link to go down",
    )
    rc, report = doctor(replica.url)
    assert rc == 1
    assert "unreachable" in by_name(report)["replication"]["message"]


def _cluster(server_factory, n: int = 3):
    # An explicit cluster bus port: the default (port + 10000) does not exist for
    # the high ephemeral ports free_port() hands out.
    bus = [free_port() for _ in range(n)]
    nodes = [
        server_factory(
            "redis",
            (
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{i}.conf",
                "--cluster-port",
                str(bus[i]),
                "--cluster-node-timeout",
                "2000",
            ),
        )
        for i in range(n)
    ]
    clients = [redis.Redis(port=s.port) for s in nodes]
    for c in clients[1:]:
        c.execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[0].port, bus[0])
    wait_for(lambda: all(_known(c) == n for c in clients), what="the nodes to meet")
    return nodes, clients


def _cluster_info(client) -> dict:
    raw = client.execute_command("CLUSTER", "INFO")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(x.split(":", 1) for x in text.split() if ":" in x)


def _known(client) -> int:
    return int(_cluster_info(client)["cluster_known_nodes"])


def _state(client) -> str:
    return str(_cluster_info(client)["cluster_state"])


def test_cluster(server_factory):
    nodes, clients = _cluster(server_factory)
    ranges = [(0, 5460), (5461, 10922), (10923, 16383)]
    for c, (lo, hi) in zip(clients[:2], ranges[:2], strict=True):
        c.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
    # a third of the slots uncovered
    rc, report = doctor(nodes[0].url)
    assert rc == 1
    assert by_name(report)["connect"]["value"] == "cluster"  # found out from INFO
    assert "FAIL" in statuses(report, "cluster slots")
    clients[2].execute_command("CLUSTER", "ADDSLOTSRANGE", *ranges[2])
    wait_for(lambda: all(_state(c) == "ok" for c in clients), what="cluster_state:ok")
    rc, report = doctor(f"redis+cluster://127.0.0.1:{nodes[1].port},127.0.0.1:{nodes[2].port}")
    assert statuses(report, "cluster state") == ["OK"] * 3  # one per node
    assert statuses(report, "cluster slots") == ["OK"] * 3
    assert {c["node"] for c in report["checks"] if c["name"] == "version"} == {
        f"127.0.0.1:{s.port}" for s in nodes
    }
    assert by_name(report)["decision latency"]["status"] in ("OK", "WARN")
    for name in ("decision cost", "session cost"):  # read on the shard holding the probe
        assert by_name(report)[name]["status"] == "OK", by_name(report)[name]
        assert by_name(report)[name]["value"]["usec"] > 0
    # one breaker per shard: a decision on each primary, each answered by Redis
    breakers = [c for c in report["checks"] if c["name"] == "breaker"]
    assert [c["status"] for c in breakers] == ["OK"] * 3
    assert {c["node"] for c in breakers} == {f"127.0.0.1:{s.port}" for s in nodes}
    assert not [c for c in report["checks"] if c["status"] == "FAIL"]
    assert rc == 0

    # inspect through a Cluster client: keys on every node, SCAN on every primary
    rc_client = redis.cluster.RedisCluster(host="127.0.0.1", port=nodes[0].port)
    limiter = Limiter("4/minute", backend=RedisBackend(rc_client), prefix="cl")
    names = [f"user-{i}" for i in range(12)]
    for name in names:
        limiter.hit(name)
    slots = {rc_client.keyslot(limiter.keys(n, limiter.plan(None))[0]) for n in names}
    assert (
        len({next(i for i, (lo, hi) in enumerate(ranges) if lo <= s <= hi) for s in slots}) > 1
    )  # the keys really are spread over nodes
    out = io.StringIO()
    assert (
        main(["inspect", "--url", nodes[1].url, "--cluster", "--pattern", "gk:cl:*"], out=out) == 0
    )
    assert out.getvalue().count("token_bucket 4/1m: 3/4 left") == 12
    out = io.StringIO()
    key = limiter.keys("user-3", limiter.plan(None))[0]
    assert main(["inspect", key, "--url", nodes[2].url, "--json"], out=out) == 0
    assert json.loads(out.getvalue())["limiter"]["remaining"] == 3
    rc_client.close()

    # one primary killed: its shard's breaker opens, the two others stay closed
    nodes[2].stop()
    rc, report = doctor(f"redis+cluster://127.0.0.1:{nodes[0].port}")
    assert rc == 1
    breakers = {c["node"]: c for c in report["checks"] if c["name"] == "breaker"}
    dead = f"127.0.0.1:{nodes[2].port}"
    assert breakers[dead]["status"] == "FAIL" and breakers[dead]["value"] == "open"
    assert "in-process fallback" in breakers[dead]["message"]
    assert [breakers[f"127.0.0.1:{s.port}"]["status"] for s in nodes[:2]] == ["OK", "OK"]
    assert [c["node"] for c in report["checks"] if c["name"] == "read"] == [dead]


def test_sentinel(server_factory, tmp_path):
    primary = server_factory("redis", ("--maxmemory", "64mb", "--maxmemory-policy", "volatile-ttl"))
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {tmp_path}\n"
        f"sentinel monitor svc 127.0.0.1 {primary.port} 1\n"
    )
    proc = subprocess.Popen(
        [primary.binary, str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sentinel = redis.Redis(port=port)
        wait_for(lambda: _pings(sentinel), what="the sentinel to start")
        rc, report = doctor(f"redis+sentinel://127.0.0.1:{port}/svc")
        connect = by_name(report)["connect"]
        assert connect["value"] == "sentinel"
        assert f"127.0.0.1:{primary.port} as the primary of 'svc'" in connect["message"]
        assert by_name(report)["version"]["node"] == f"127.0.0.1:{primary.port}"
        assert rc == 0
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_bad_url_is_a_fail_not_a_crash():
    rc, report = doctor("redis+sentinel://127.0.0.1:1")  # no service name
    assert rc == 1
    assert "service_name" in by_name(report)["connect"]["message"]


def test_unreachable_server_is_a_fail_not_a_crash():
    rc, report = doctor(f"redis://user:s3cret@127.0.0.1:{free_port()}/0")
    assert rc == 1
    assert [c["name"] for c in report["checks"]] == ["connect"]
    assert "s3cret" not in json.dumps(report)
    assert report["url"].startswith("redis://user:***@127.0.0.1:")


def test_redact():
    assert redact("rediss://u:p%40ss@h:6380/0") == "rediss://u:***@h:6380/0"
    assert redact("redis+sentinel://:pw@s1:26379,s2:26379/svc") == (
        "redis+sentinel://:***@s1:26379,s2:26379/svc"
    )
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


def test_user_without_scripting_fails(server_factory):
    s = server_factory("redis", ("--maxmemory", "64mb", "--maxmemory-policy", "volatile-ttl"))
    redis.Redis.from_url(s.url).acl_setuser(
        "noscript", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-@scripting"]
    )
    rc, report = doctor(f"redis://noscript:pw@127.0.0.1:{s.port}/0")
    assert rc == 1
    assert by_name(report)["scripting"]["status"] == "FAIL"
    assert "+@scripting" in by_name(report)["scripting"]["message"]
    assert by_name(report)["decision latency"]["status"] == "FAIL"
    for name in ("decision cost", "session cost"):
        assert by_name(report)[name]["message"].startswith(
            "could not measure: this user may not run it"
        ), by_name(report)[name]

"""Every doctor check on crafted INFO / CONFIG dicts: each threshold and each status."""

from __future__ import annotations

import pytest

from gatekeep.cli import checks as c
from gatekeep.cli.checks import FAIL, OK, WARN, Check
from gatekeep.cli.doctor import NodeSnapshot, evaluate
from gatekeep.cli.topology import check_cluster, check_replication

MIB = 1048576


def test_worst_and_setting():
    assert c.worst([]) == OK
    assert c.worst([Check("a", OK, ""), Check("b", WARN, "")]) == WARN
    assert c.worst([Check("a", FAIL, ""), Check("b", WARN, "")]) == FAIL
    info = {"maxmemory_policy": "volatile-lru", "maxmemory": 5}
    assert c.setting("maxmemory-policy", {"maxmemory-policy": "noeviction"}, info) == "noeviction"
    assert c.setting("maxmemory-policy", None, info) == "volatile-lru"  # CONFIG refused
    assert c.setting("maxclients", None, info) is None


@pytest.mark.parametrize(
    ("info", "status", "text"),
    [
        ({"redis_version": "7.0.15", "redis_mode": "standalone"}, OK, "Redis 7.0.15"),
        (
            {"redis_version": "7.2.4", "valkey_version": "8.1.1", "server_name": "valkey"},
            OK,
            "Valkey 8.1.1",
        ),
        ({"redis_version": "5.0.14"}, WARN, "end of life"),
        ({"redis_version": "4.0.9"}, FAIL, "needs Redis >= 5"),
        ({"redis_version": "unknown"}, WARN, "cannot tell"),
    ],
)
def test_version(info, status, text):
    check = c.check_version(info)
    assert (check.status, text in check.message) == (status, True)


def test_scripting():
    assert c.check_scripting(None).status == OK
    bad = c.check_scripting("NOPERM this user has no permissions to run the 'eval' command")
    assert bad.status == FAIL and "NOPERM" in bad.message and "+@scripting" in bad.message


@pytest.mark.parametrize(
    ("maxmemory", "status"),
    [
        (0, WARN),
        ("0", WARN),
        (None, WARN),
        (64 * MIB, OK),
        ("67108864", OK),
    ],
)
def test_maxmemory(maxmemory, status):
    assert c.check_maxmemory(maxmemory).status == status
    if maxmemory is None:
        assert "cannot read" in c.check_maxmemory(maxmemory).message


@pytest.mark.parametrize(
    ("policy", "maxmemory", "status", "text"),
    [
        ("allkeys-lru", MIB, FAIL, "silently reset"),
        ("allkeys-lfu", MIB, FAIL, "logged out"),
        ("allkeys-random", MIB, FAIL, "evicts any key"),
        ("allkeys-lru", 0, WARN, "inert while maxmemory is 0"),
        ("noeviction", MIB, WARN, "every write is refused"),
        ("volatile-lru", MIB, OK, "only keys with a TTL"),
        ("volatile-ttl", MIB, OK, "nearest to expiry"),
        ("volatile-random", 0, OK, "only keys with a TTL"),
        ("no-such-policy", MIB, WARN, "unknown"),
        (None, MIB, WARN, "cannot read"),
    ],
)
def test_policy(policy, maxmemory, status, text):
    check = c.check_policy(policy, maxmemory)
    assert check.status == status
    assert text in check.message


def test_evictions():
    assert c.check_evictions({"evicted_keys": 0}).status == OK
    check = c.check_evictions({"evicted_keys": 12})
    assert check.status == WARN and check.value == 12 and "scale out" in check.message
    assert c.check_evictions({}).status == WARN


@pytest.mark.parametrize(
    ("used", "maxmemory", "status"),
    [
        (10 * MIB, 100 * MIB, OK),
        (80 * MIB, 100 * MIB, OK),  # exactly 80%: not above
        (81 * MIB, 100 * MIB, WARN),
        (95 * MIB, 100 * MIB, WARN),
        (96 * MIB, 100 * MIB, FAIL),
        (10 * MIB, 0, OK),  # nothing to compare with (maxmemory warns on its own)
    ],
)
def test_memory_usage(used, maxmemory, status):
    assert c.check_memory_usage({"used_memory": used}, maxmemory).status == status


def test_memory_usage_ignores_buffers_not_counted_for_eviction():
    info = {"used_memory": 99 * MIB, "mem_not_counted_for_evict": 30 * MIB}
    assert c.check_memory_usage(info, 100 * MIB).status == OK
    assert c.check_memory_usage({}, 100 * MIB).status == WARN


def test_swap():
    assert c.check_swap({"used_memory": MIB}, 0, "local server").status == OK
    small = c.check_swap({"used_memory": 100 * MIB}, 4 * MIB, "local server")
    assert small.status == WARN and "4.0 MiB" in small.message
    assert c.check_swap({"used_memory": 100 * MIB}, 40 * MIB, "local").status == FAIL
    # remote: only the fragmentation ratio hints, and only on a sizeable dataset
    hint = c.check_swap(
        {"used_memory": 512 * MIB, "mem_fragmentation_ratio": 0.7}, None, "remote server"
    )
    assert hint.status == WARN and "probably swapped" in hint.message
    tiny = c.check_swap({"used_memory": MIB, "mem_fragmentation_ratio": 0.7}, None, "remote")
    assert tiny.status == OK and "cannot measure swap directly" in tiny.message
    assert (
        c.check_swap(
            {"used_memory": 512 * MIB, "mem_fragmentation_ratio": 1.1}, None, "remote"
        ).status
        == OK
    )


@pytest.mark.parametrize(
    ("connected", "maxclients", "status"),
    [
        (10, 10000, OK),
        (8001, 10000, WARN),
        (9600, 10000, FAIL),
        (10, None, WARN),
    ],
)
def test_clients(connected, maxclients, status):
    assert c.check_clients({"connected_clients": connected}, maxclients).status == status


def test_cpu():
    before = {"used_cpu_sys": 1.0, "used_cpu_user": 2.0}
    assert c.check_cpu(before, {"used_cpu_sys": 1.1, "used_cpu_user": 2.1}, 1.0).status == OK
    busy = c.check_cpu(before, {"used_cpu_sys": 1.5, "used_cpu_user": 2.46}, 1.0)
    assert busy.status == WARN and busy.value == pytest.approx(0.96)
    assert c.check_cpu(before, {}, 1.0).status == WARN
    assert c.check_cpu(before, before, 0.0).status == WARN


def _replica(i, offset, state="online", lag=0):
    return {
        f"slave{i}": {
            "ip": "10.0.0.2",
            "port": 6380 + i,
            "state": state,
            "offset": offset,
            "lag": lag,
        }
    }


def test_replication_primary():
    alone = check_replication({"role": "master", "connected_slaves": 0})
    assert [x.status for x in alone] == [OK]
    info = {
        "role": "master",
        "connected_slaves": 3,
        "master_repl_offset": 5_000_000,
        **_replica(0, 5_000_000),
        **_replica(1, 1_000_000),
        **_replica(2, 5_000_000, state="wait_bgsave"),
    }
    statuses = [(x.name, x.status) for x in check_replication(info)]
    assert statuses == [
        ("replication", OK),
        ("replica lag", OK),
        ("replica lag", WARN),
        ("replica lag", WARN),
    ]
    assert (
        check_replication(
            {
                "role": "master",
                "connected_slaves": 1,
                "master_repl_offset": 10,
                **_replica(0, 10, lag=30),
            }
        )[1].status
        == WARN
    )


def test_replication_replica_is_a_failure():
    up = check_replication(
        {
            "role": "slave",
            "master_host": "10.0.0.1",
            "master_port": 6379,
            "master_link_status": "up",
        }
    )
    assert up[0].status == FAIL and "read-only" in up[0].message
    down = check_replication(
        {
            "role": "slave",
            "master_host": "10.0.0.1",
            "master_port": 6379,
            "master_link_status": "down",
        }
    )
    assert down[0].status == FAIL and "unreachable" in down[0].message


def test_replication_cluster_replica_is_expected():
    """A cluster's replicas are its masters' failover copies: the doctor, which checks
    every node of a cluster, must not fail them (a TLS cluster with a replica per
    master failed 3 of its 6 nodes)."""
    info = {"role": "slave", "master_host": "10.0.0.1", "master_port": 6379}
    up = check_replication({**info, "master_link_status": "up"}, cluster=True)
    assert [(x.status, x.message) for x in up] == [
        (OK, "cluster replica of 10.0.0.1:6379, link up")
    ]
    down = check_replication({**info, "master_link_status": "down"}, cluster=True)
    assert down[0].status == WARN and "failover copy" in down[0].message


def test_cluster():
    healthy = {
        "cluster_state": "ok",
        "cluster_slots_assigned": "16384",
        "cluster_slots_ok": "16384",
        "cluster_slots_pfail": "0",
        "cluster_slots_fail": "0",
        "cluster_known_nodes": "3",
    }
    assert [x.status for x in check_cluster(healthy)] == [OK, OK]
    partial = {**healthy, "cluster_state": "fail", "cluster_slots_assigned": "10923"}
    assert [x.status for x in check_cluster(partial)] == [FAIL, FAIL]
    pfail = {**healthy, "cluster_slots_pfail": "5461"}
    assert [x.status for x in check_cluster(pfail)] == [OK, WARN]


def test_latency():
    assert c.check_latency([0.0002] * 10).status == OK
    assert c.check_latency([0.0002, 0.008, 0.009]).status == WARN
    assert c.check_latency([0.2] * 3).status == FAIL
    assert c.check_latency([]).status == WARN
    assert (
        c.check_latency([], "READONLY You can't write against a read only replica.").status == FAIL
    )


def test_evaluate_with_config_refused_reads_info_instead():
    info = {
        "redis_version": "7.0.15",
        "maxmemory": 100 * MIB,
        "maxmemory_policy": "allkeys-lru",
        "used_memory": 97 * MIB,
        "evicted_keys": 3,
        "connected_clients": 5,
        "maxclients": 10000,
        "used_cpu_sys": 1.0,
        "used_cpu_user": 1.0,
        "role": "master",
        "connected_slaves": 0,
    }
    snap = NodeSnapshot(
        "h:1",
        info,
        config=None,
        config_error="unknown command 'CONFIG'",
        cpu_after={"used_cpu_sys": 1.0, "used_cpu_user": 1.0},
        cpu_seconds=0.5,
    )
    by_name = {x.name: x for x in evaluate(snap)}
    assert by_name["config"].status == OK and "read from INFO" in by_name["config"].message
    assert by_name["maxmemory-policy"].status == FAIL
    assert by_name["memory"].status == FAIL
    assert by_name["evictions"].status == WARN
    assert all(x.node == "h:1" for x in by_name.values())


def test_evaluate_with_nothing_readable_warns_cannot_read():
    info = {"redis_version": "7.0.15", "role": "master"}
    snap = NodeSnapshot("h:1", info, config=None, config_error="NOPERM")
    by_name = {x.name: x for x in evaluate(snap)}
    assert by_name["config"].status == WARN
    assert "cannot read" in by_name["maxmemory"].message
    assert "cannot read" in by_name["maxmemory-policy"].message
    assert c.worst(list(by_name.values())) == WARN

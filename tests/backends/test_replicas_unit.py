"""The replica choice (gatekeep.backends.replicas) without servers: its flow driven by
nodes that answer, hang, refuse or say they are something else, on a fake clock."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import BusyLoadingError, MovedError, NoScriptError

from gatekeep.backends._calls import Command
from gatekeep.backends.replicas import (
    DOWN_FOR,
    REFRESH,
    Ask,
    AskSentinels,
    Node,
    Replicas,
    ReplicasUnavailable,
    cluster_topology,
)
from gatekeep.flows import run_flow
from gatekeep.scripts import Script

READ = Script.from_source("peek", "return redis.call('GET', KEYS[1])")
CALLS = [(READ, ("k",), ())]
A, B, P = ("10.0.0.1", 1), ("10.0.0.2", 2), ("10.0.0.9", 9)
REPLICA = [b"slave", b"10.0.0.9", 9, b"connected", 100]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Cluster:
    """Nodes by address: each a function of the trip giving its replies (the calls'
    part; ROLE's reply is the node's ``role``) or raising."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.roles: dict[tuple[str, int], object] = {
            A: REPLICA,
            B: REPLICA,
            P: [b"master", 100, []],
        }
        self.hung: set[tuple[str, int]] = set()
        self.refuse: dict[tuple[str, int], Exception] = {}
        self.noscript: set[tuple[str, int]] = set()
        self.asked: list[tuple[str, float, bool]] = []
        self.sentinels = (P, [A, B])

    def io(self, step):
        if isinstance(step, AskSentinels):
            return self.sentinels
        assert isinstance(step, Ask)
        addr = (step.node.host, step.node.port)
        self.asked.append((step.node.name, round(step.timeout, 4), step.trip.source))
        if addr in self.hung:
            self.clock.now += step.timeout
            raise redis.TimeoutError("hung")
        out = []
        for script, _keys, _args in step.trip.calls:
            if type(script) is Command:
                out.append(self.roles[addr])
            elif addr in self.refuse:
                out.append(self.refuse[addr])
            elif addr in self.noscript and not step.trip.source:
                out.append(NoScriptError("NOSCRIPT"))
            else:
                out.append(f"value@{step.node.name}")
        return out


def make():
    clock = Clock()
    return Replicas("sentinel", clock=clock), Cluster(clock), clock


def read(replicas, cluster, deadline=0.25):
    return run_flow(replicas.flow("k", CALLS, deadline), cluster.io)


def test_a_hung_replica_gets_its_share_then_is_skipped():
    replicas, cluster, clock = make()
    cluster.hung.add(A)
    assert read(replicas, cluster) == ["value@10.0.0.2:2"]  # A first (rotation at 0)
    # A got half the deadline (2 replicas and the primary: a third), B answered
    assert cluster.asked[0] == ("10.0.0.1:1", round(0.25 / 3, 4), False)
    cluster.asked.clear()
    for _ in range(4):
        assert read(replicas, cluster) == ["value@10.0.0.2:2"]
    assert all(name != "10.0.0.1:1" for name, _, _ in cluster.asked)  # known down
    assert replicas.counters["skipped_failed"] == 1 and replicas.counters["skipped_down"] == 4
    clock.now += DOWN_FOR  # tried again once its time is over
    cluster.hung.clear()
    read(replicas, cluster)
    read(replicas, cluster)
    assert replicas.counters["served_by"]["10.0.0.1:1"] == 1


def test_a_node_known_down_is_the_last_resort_when_the_others_fail():
    """A replica marked down, then back within DOWN_FOR (an old primary that rejoined),
    serves a read whose other nodes fail; a read with every node known down still fails
    at once (test_nothing_serves_within_the_deadline)."""
    replicas, cluster, clock = make()
    cluster.hung.add(A)
    assert read(replicas, cluster) == ["value@10.0.0.2:2"]  # A gets its share, then is down
    cluster.hung.clear()  # A is back
    cluster.refuse[B] = BusyLoadingError("LOADING")
    cluster.refuse[P] = BusyLoadingError("LOADING")
    clock.now += 0.2  # within DOWN_FOR
    assert read(replicas, cluster) == ["value@10.0.0.1:1"]
    assert [n for n, _, _ in cluster.asked][-3:] == ["10.0.0.2:2", "10.0.0.9:9", "10.0.0.1:1"]


def test_a_node_known_down_keeps_its_share_of_the_deadline():
    """Hung nodes tried first do not leave the last resort without time."""
    replicas, cluster, clock = make()
    cluster.hung.add(A)
    read(replicas, cluster)  # A: known down
    cluster.hung = {B, P}  # A is back; B and the primary hang
    clock.now += 0.2
    assert read(replicas, cluster) == ["value@10.0.0.1:1"]
    assert [(n, t) for n, t, _ in cluster.asked[-3:]] == [
        ("10.0.0.2:2", round(0.25 / 3, 4)),
        ("10.0.0.9:9", round(0.25 / 3, 4)),
        ("10.0.0.1:1", round(0.25 / 3, 4)),
    ]


def test_when_every_node_is_known_down_one_read_per_refresh_probes_them():
    """Known down, then back (its connections killed by a Sentinel promoting it, say):
    reads fail at once, but one per REFRESH seconds tries the nodes, and the node that
    serves is no longer known down."""
    replicas, cluster, clock = make()
    cluster.hung.update({A, B, P})
    with pytest.raises(ReplicasUnavailable):
        read(replicas, cluster)  # every node tried: known down
    cluster.hung.clear()
    with pytest.raises(ReplicasUnavailable, match="tried: none"):
        read(replicas, cluster)  # at once
    clock.now += REFRESH + 0.01
    assert read(replicas, cluster)[0].startswith("value@")  # the probe
    asked = len(cluster.asked)
    assert read(replicas, cluster)[0].startswith("value@")
    assert len(cluster.asked) == asked + 1  # straight to a node no longer down


def test_a_listed_replica_that_is_an_empty_master_is_not_used():
    replicas, cluster, _ = make()
    cluster.roles[A] = [b"master", 0, []]  # restarted empty
    cluster.roles[B] = [b"slave", b"10.0.0.9", 9, b"sync", -1]  # full resync
    # neither replica is usable: the named primary answers
    assert read(replicas, cluster) == ["value@10.0.0.9:9"]
    assert replicas.counters["skipped_refused"] == 2


def test_a_promoted_replica_serves_only_when_no_replica_does():
    replicas, cluster, _ = make()
    cluster.roles[A] = [b"master", 5000, []]  # promoted, the list does not say so yet
    assert read(replicas, cluster) == ["value@10.0.0.2:2"]
    assert read(replicas, cluster) == ["value@10.0.0.2:2"]
    cluster.hung.update({B, P})
    assert read(replicas, cluster, deadline=0.3)[0] == "value@10.0.0.1:1"
    assert replicas.counters["served_by_spare"] == 1


def test_loading_and_moved_replies_are_refused_and_noscript_reloads_on_the_same_node():
    replicas, cluster, _ = make()
    cluster.refuse[A] = BusyLoadingError("LOADING")
    cluster.refuse[B] = MovedError("3999 10.0.0.7:7")
    cluster.noscript.add(P)
    assert read(replicas, cluster) == ["value@10.0.0.9:9"]
    assert [(n, src) for n, _, src in cluster.asked][-2:] == [
        ("10.0.0.9:9", False),
        ("10.0.0.9:9", True),  # EVAL_RO with the source, on the node that lacked it
    ]


def test_nothing_serves_within_the_deadline():
    replicas, cluster, clock = make()
    cluster.hung.update({A, B, P})
    started = clock.now
    with pytest.raises(ReplicasUnavailable, match="no replica of the shard answered"):
        read(replicas, cluster)
    assert clock.now - started == pytest.approx(0.25)  # shares, not a timeout each
    # then: every node known down, the read fails at once (the topology asked again)
    with pytest.raises(ReplicasUnavailable):
        read(replicas, cluster)
    assert clock.now - started == pytest.approx(0.25)


def test_while_the_sentinels_name_no_primary_the_replicas_known_before_stay():
    replicas, cluster, clock = make()
    cluster.hung.add(B)
    read(replicas, cluster)
    read(replicas, cluster)  # B failed: the topology is stale
    # a failover in progress: no primary named, no replica listed; A promoted, P dead
    cluster.sentinels = (None, [])
    cluster.roles[A] = [b"master", 5000, []]
    cluster.hung.add(P)
    clock.now += 0.2
    assert read(replicas, cluster) == ["value@10.0.0.1:1"]
    assert replicas.topology is not None
    assert [n.name for n in replicas.topology.nodes] == ["10.0.0.1:1", "10.0.0.2:2"]


def test_cluster_topology_by_slot():
    reply = [
        [8000, 16383, [b"10.0.0.2", 2, b"id2"], [b"", 5, b"id5"]],  # address unknown
        [0, 7999, [b"10.0.0.1", 1, b"id1"], [b"10.0.0.4", 4, b"id4"]],
    ]
    topo = cluster_topology(reply)
    # "k" is in slot 7629, "{a}x" in 15495
    assert topo.for_key("k") == (Node("10.0.0.4", 4), Node("10.0.0.1", 1, primary=True))
    assert topo.for_key("{a}x") == (Node("10.0.0.2", 2, primary=True),)

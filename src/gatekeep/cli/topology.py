"""The doctor's checks of a deployment's topology: replication and Redis Cluster.

Pure functions over what the server reported, as in :mod:`.checks`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .checks import FAIL, OK, WARN, Check, int_or_none

__all__ = ["LAG_WARN_BYTES", "LAG_WARN_SECONDS", "check_cluster", "check_replication"]

#: A replica further behind than this (bytes of replication stream, or seconds) warns.
LAG_WARN_BYTES, LAG_WARN_SECONDS = 1_048_576, 10


def check_replication(replication: Mapping[str, Any], *, cluster: bool = False) -> list[Check]:
    """``INFO replication``. A replica is a failure where gatekeep was pointed at it,
    not in a cluster (``cluster``): the cluster client writes to the masters, and a
    master's replica is its failover copy."""
    role = replication.get("role")
    if role == "slave":
        where = f"{replication.get('master_host')}:{replication.get('master_port')}"
        link = replication.get("master_link_status")
        status_text = f"replica of {where}, link {link}"
        if cluster:
            if link == "up":
                return [Check("replication", OK, f"cluster {status_text}", "replica")]
            return [
                Check(
                    "replication",
                    WARN,
                    f"cluster {status_text}: not a failover copy of its master now",
                    "replica",
                )
            ]
        if link != "up":
            return [
                Check(
                    "replication",
                    FAIL,
                    f"{status_text}: the primary is unreachable "
                    "and this replica is read-only; gatekeep must write to the "
                    "primary (use its URL, or Sentinel)",
                    "replica",
                )
            ]
        return [
            Check(
                "replication",
                FAIL,
                f"{status_text}: a replica is read-only, every "
                "decision writes; point gatekeep at the primary (or at Sentinel)",
                "replica",
            )
        ]
    if role != "master":
        return [Check("replication", WARN, f"unknown role {role!r}", role)]
    count = int_or_none(replication.get("connected_slaves")) or 0
    if count == 0:
        return [Check("replication", OK, "primary with no replicas (no failover copy)", 0)]
    checks = [Check("replication", OK, f"primary with {count} connected replica(s)", count)]
    offset = int_or_none(replication.get("master_repl_offset")) or 0
    for i in range(count):
        replica = replication.get(f"slave{i}")
        if not isinstance(replica, Mapping):
            continue
        name = f"{replica.get('ip')}:{replica.get('port')}"
        behind = max(0, offset - (int_or_none(replica.get("offset")) or 0))
        lag = int_or_none(replica.get("lag")) or 0
        text = f"replica {name} {replica.get('state')}, {behind} bytes and {lag} s behind"
        if replica.get("state") != "online":
            checks.append(Check("replica lag", WARN, f"{text}: not online (syncing?)", behind))
        elif behind > LAG_WARN_BYTES or lag > LAG_WARN_SECONDS:
            checks.append(
                Check(
                    "replica lag",
                    WARN,
                    f"{text}: after a failover it would lose recent decisions and session writes",
                    behind,
                )
            )
        else:
            checks.append(Check("replica lag", OK, text, behind))
    return checks


def check_cluster(cluster_info: Mapping[str, Any]) -> list[Check]:
    """``CLUSTER INFO``: state, slot coverage, failing slots."""
    state = cluster_info.get("cluster_state")
    assigned = int_or_none(cluster_info.get("cluster_slots_assigned")) or 0
    failing = int_or_none(cluster_info.get("cluster_slots_fail")) or 0
    pfail = int_or_none(cluster_info.get("cluster_slots_pfail")) or 0
    nodes = int_or_none(cluster_info.get("cluster_known_nodes")) or 0
    checks = []
    if state == "ok":
        checks.append(Check("cluster state", OK, f"ok, {nodes} known nodes", state))
    else:
        checks.append(
            Check(
                "cluster state",
                FAIL,
                f"{state}: the cluster refuses commands (slots uncovered or a primary down)",
                state,
            )
        )
    if assigned < 16384:
        checks.append(
            Check(
                "cluster slots",
                FAIL,
                f"{assigned} of 16384 slots assigned: keys hashing to the others cannot be served",
                assigned,
            )
        )
    elif failing or pfail:
        checks.append(
            Check(
                "cluster slots",
                WARN,
                f"all slots assigned, {failing} failing, {pfail} possibly failing",
                assigned,
            )
        )
    else:
        checks.append(Check("cluster slots", OK, "all 16384 slots assigned and healthy", assigned))
    return checks

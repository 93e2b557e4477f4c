"""The doctor's checks: pure functions over what the server reported.

Each function takes plain dicts (``INFO`` sections as redis-py parses them,
``CONFIG GET`` replies, ``CLUSTER INFO``) or numbers, and returns one or more
:class:`Check`. No I/O happens here, so every threshold is unit-tested on
crafted dicts; :mod:`gatekeep.cli.doctor` gathers the dicts and prints.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "FAIL",
    "OK",
    "WARN",
    "Check",
    "check_clients",
    "check_cpu",
    "check_evictions",
    "check_latency",
    "check_maxmemory",
    "check_memory_usage",
    "check_policy",
    "check_scripting",
    "check_swap",
    "check_version",
    "int_or_none",
    "setting",
    "worst",
]

OK, WARN, FAIL = "OK", "WARN", "FAIL"
_RANK = {OK: 0, WARN: 1, FAIL: 2}

#: Used memory as a share of maxmemory that warns, and that fails.
MEMORY_WARN, MEMORY_FAIL = 0.80, 0.95
#: Connected clients as a share of maxclients that warns, and that fails.
CLIENTS_WARN, CLIENTS_FAIL = 0.80, 0.95
#: CPU (of one core: Redis runs commands on one thread) that warns.
CPU_WARN = 0.90
#: Median latency of one limiter decision (seconds) that warns, and that fails.
LATENCY_WARN, LATENCY_FAIL = 0.005, 0.050
#: Below this much used memory, the fragmentation ratio says nothing about swap.
_FRAG_MEANINGFUL_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: str
    message: str
    #: The measured value, for ``--json`` (None when nothing could be read).
    value: Any = None
    #: Which server it is about ("host:port"), for Cluster and replica reports.
    node: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def worst(checks: Sequence[Check]) -> str:
    """The most severe status among ``checks`` (OK when there are none)."""
    return max((c.status for c in checks), key=_RANK.__getitem__, default=OK)


def setting(name: str, config: Mapping[str, Any] | None, info: Mapping[str, Any]) -> Any:
    """A server setting from ``CONFIG GET`` (``maxmemory-policy``), else from INFO
    (``maxmemory_policy``): managed services often refuse CONFIG, but INFO still says."""
    if config is not None and name in config:
        return config[name]
    return info.get(name.replace("-", "_"))


def int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _mib(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


# -- server ---------------------------------------------------------------------------


def check_version(info: Mapping[str, Any]) -> Check:
    """Redis or Valkey, and a version new enough for the scripts (EVALSHA, ``TIME`` in
    scripts needs effects replication: default from 5, available from 3.2)."""
    if "valkey_version" in info or info.get("server_name") == "valkey":
        product, version = "Valkey", str(info.get("valkey_version", info.get("redis_version")))
    else:
        product, version = "Redis", str(info.get("redis_version", "?"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        return Check("version", WARN, f"{product} {version}: cannot tell the version", version)
    mode = info.get("redis_mode") or info.get("server_mode") or "standalone"
    if product == "Redis" and major < 5:
        return Check(
            "version",
            FAIL,
            f"{product} {version} ({mode}): gatekeep needs "
            "Redis >= 5 (scripts that read TIME before writing)",
            version,
        )
    if product == "Redis" and major < 6:
        return Check(
            "version",
            WARN,
            f"{product} {version} ({mode}): end of life; "
            "gatekeep is tested on Redis 7 and Valkey 8",
            version,
        )
    return Check("version", OK, f"{product} {version} ({mode})", version)


def check_scripting(error: str | None) -> Check:
    """Did ``EVAL "return 1" 0`` work? ``error`` is the server's reply when it did not."""
    if error is None:
        return Check("scripting", OK, "EVAL runs Lua scripts", True)
    return Check(
        "scripting",
        FAIL,
        f"EVAL failed ({error}): every gatekeep decision is a "
        "Lua script; allow EVAL/EVALSHA for this user (ACL +@scripting)",
        False,
    )


# -- memory -----------------------------------------------------------------------


def check_maxmemory(maxmemory: Any) -> Check:
    mm = int_or_none(maxmemory)
    if mm is None:
        return Check(
            "maxmemory",
            WARN,
            "cannot read maxmemory (CONFIG GET refused and INFO has no maxmemory field)",
            None,
        )
    if mm == 0:
        return Check(
            "maxmemory",
            WARN,
            "maxmemory is 0 (unbounded): Redis grows until the "
            "OS swaps or kills it; set maxmemory below the machine's memory",
            0,
        )
    return Check("maxmemory", OK, f"maxmemory {_mib(mm)}", mm)


def check_policy(policy: Any, maxmemory: Any) -> Check:
    """What happens to gatekeep's keys when memory is full.

    Every gatekeep key carries a TTL, so ``volatile-*`` policies see them as
    candidates only together with other expiring data, and never touch other
    apps' persistent keys; ``volatile-ttl`` evicts the keys closest to expiry
    first, which for a limiter are the nearly refilled ones. ``allkeys-*``
    makes this Redis a cache that evicts anything at any time, with no error
    to anyone: counters vanish (limits reset, a brute-force limit lets the
    next burst through) and sessions vanish (users are logged out).
    ``noeviction`` loses nothing but rejects writes once full, so decisions
    fail (gatekeep then fails open or closed as configured).
    """
    mm = int_or_none(maxmemory)
    if policy is None:
        return Check(
            "maxmemory-policy",
            WARN,
            "cannot read maxmemory-policy (CONFIG GET "
            "refused and INFO has no maxmemory_policy field)",
            None,
        )
    policy = str(policy)
    if policy.startswith("allkeys-"):
        if mm == 0:
            return Check(
                "maxmemory-policy",
                WARN,
                f"{policy}: inert while maxmemory is 0, "
                "but once a limit is set any key may be evicted silently "
                "(limits reset, users logged out); prefer volatile-ttl",
                policy,
            )
        return Check(
            "maxmemory-policy",
            FAIL,
            f"{policy}: when memory is full Redis "
            "evicts any key with no error, so rate-limit counters silently reset and "
            "sessions vanish (users logged out); use volatile-ttl or volatile-lru "
            "(gatekeep keys all have TTLs), or noeviction with enough memory",
            policy,
        )
    if policy == "noeviction":
        return Check(
            "maxmemory-policy",
            WARN,
            "noeviction: nothing is lost, but when memory "
            "is full every write is refused (OOM), so decisions and session saves "
            "fail; keep memory well below maxmemory",
            policy,
        )
    if policy.startswith("volatile-"):
        note = (
            " (evicts the keys nearest to expiry first: the least harm to limits)"
            if policy == "volatile-ttl"
            else ""
        )
        return Check(
            "maxmemory-policy",
            OK,
            f"{policy}: only keys with a TTL are evicted; gatekeep sets one on every key{note}",
            policy,
        )
    return Check("maxmemory-policy", WARN, f"{policy}: unknown policy", policy)


def check_evictions(stats: Mapping[str, Any]) -> Check:
    evicted = int_or_none(stats.get("evicted_keys"))
    if evicted is None:
        return Check("evictions", WARN, "cannot read evicted_keys from INFO stats", None)
    if evicted > 0:
        return Check(
            "evictions",
            WARN,
            f"{evicted} keys evicted since start: memory is full; "
            "evicted limiter keys reset limits and evicted sessions log users out; "
            "scale out or raise maxmemory",
            evicted,
        )
    return Check("evictions", OK, "no keys evicted since start", 0)


def check_memory_usage(memory: Mapping[str, Any], maxmemory: Any) -> Check:
    used = int_or_none(memory.get("used_memory"))
    mm = int_or_none(maxmemory)
    if used is None:
        return Check("memory", WARN, "cannot read used_memory from INFO memory", None)
    if not mm:
        return Check("memory", OK, f"{_mib(used)} used, no maxmemory to compare with", None)
    # Replication and AOF buffers do not count towards eviction (INFO says how much).
    counted = used - (int_or_none(memory.get("mem_not_counted_for_evict")) or 0)
    share = counted / mm
    text = f"{_mib(counted)} of {_mib(mm)} ({share:.0%})"
    if share > MEMORY_FAIL:
        return Check(
            "memory", FAIL, f"{text}: at the limit, eviction or OOM errors now", round(share, 4)
        )
    if share > MEMORY_WARN:
        return Check(
            "memory", WARN, f"{text}: above {MEMORY_WARN:.0%}, scale out soon", round(share, 4)
        )
    return Check("memory", OK, text, round(share, 4))


def check_swap(memory: Mapping[str, Any], vmswap_bytes: int | None, local_note: str) -> Check:
    """Swap in use. Only a local server's ``/proc/<pid>/status`` says for sure
    (``vmswap_bytes``); remotely, a fragmentation ratio below 1 on a sizeable
    dataset (RSS smaller than what Redis allocated) is the only hint."""
    used = int_or_none(memory.get("used_memory")) or 0
    if vmswap_bytes is not None:
        if vmswap_bytes == 0:
            return Check("swap", OK, "no swap in use (VmSwap 0 in /proc)", 0)
        share = vmswap_bytes / max(used, 1)
        status = FAIL if share > 0.25 else WARN
        return Check(
            "swap",
            status,
            f"{_mib(vmswap_bytes)} of the server swapped out "
            "(VmSwap): every swapped page turns a sub-millisecond decision into a "
            "disk read; give it RAM or lower maxmemory",
            vmswap_bytes,
        )
    ratio = memory.get("mem_fragmentation_ratio")
    try:
        frag = float(ratio) if ratio is not None else None
    except ValueError:
        frag = None
    if frag is not None and frag < 1.0 and used >= _FRAG_MEANINGFUL_BYTES:
        return Check(
            "swap",
            WARN,
            f"mem_fragmentation_ratio {frag:.2f} < 1 with "
            f"{_mib(used)} used: the OS probably swapped part of Redis out "
            f"({local_note})",
            None,
        )
    return Check(
        "swap",
        OK,
        f"cannot measure swap directly ({local_note}); "
        f"mem_fragmentation_ratio {ratio} gives no sign of it",
        None,
    )


# -- clients and CPU --------------------------------------------------------------


def check_clients(clients: Mapping[str, Any], maxclients: Any) -> Check:
    connected = int_or_none(clients.get("connected_clients"))
    mc = int_or_none(maxclients)
    if connected is None:
        return Check("clients", WARN, "cannot read connected_clients", None)
    if not mc:
        return Check("clients", WARN, f"{connected} connected; cannot read maxclients", connected)
    share = connected / mc
    text = f"{connected} of {mc} connections ({share:.0%})"
    if share > CLIENTS_FAIL:
        return Check("clients", FAIL, f"{text}: new connections are about to be refused", connected)
    if share > CLIENTS_WARN:
        return Check("clients", WARN, f"{text}: raise maxclients or pool connections", connected)
    return Check("clients", OK, text, connected)


def check_cpu(before: Mapping[str, Any], after: Mapping[str, Any], seconds: float) -> Check:
    """CPU of the server over a sample: the ``used_cpu_sys`` + ``used_cpu_user`` delta
    over ``seconds`` of wall time, as a share of one core (commands run on one thread)."""
    try:
        used = sum(float(after[k]) - float(before[k]) for k in ("used_cpu_sys", "used_cpu_user"))
    except (KeyError, TypeError, ValueError):
        return Check("cpu", WARN, "cannot read used_cpu_sys/used_cpu_user", None)
    if seconds <= 0:
        return Check("cpu", WARN, "no sample time", None)
    share = max(0.0, used / seconds)
    text = f"{share:.0%} of one core over a {seconds:.1f} s sample"
    if share > CPU_WARN:
        return Check(
            "cpu",
            WARN,
            f"{text}: the command thread is saturated, latency will "
            "climb; scale out (Cluster) or move load away",
            round(share, 4),
        )
    return Check("cpu", OK, text, round(share, 4))


# -- the limiter itself -----------------------------------------------------------------


def check_latency(samples: Sequence[float], error: str | None = None) -> Check:
    """Round trip of a real ``Limiter.hit`` (seconds per sample; the median decides)."""
    if error is not None:
        return Check("decision latency", FAIL, f"a limiter decision failed: {error}", None)
    if not samples:
        return Check("decision latency", WARN, "no sample", None)
    median = statistics.median(samples)
    worst_ms = max(samples) * 1000
    text = f"median {median * 1000:.2f} ms, max {worst_ms:.2f} ms over {len(samples)} hits"
    if median > LATENCY_FAIL:
        return Check(
            "decision latency", FAIL, f"{text}: too slow for a request path", round(median, 6)
        )
    if median > LATENCY_WARN:
        return Check(
            "decision latency",
            WARN,
            f"{text}: slow (network distance or a busy server)",
            round(median, 6),
        )
    return Check("decision latency", OK, text, round(median, 6))

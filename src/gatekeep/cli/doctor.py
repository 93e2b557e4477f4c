"""``python -m gatekeep doctor REDIS_URL``: is this Redis fit to hold limits and sessions?

A thin I/O layer: :func:`snapshot` reads INFO, CONFIG GET, CLUSTER INFO and
``/proc`` into a :class:`NodeSnapshot`; :func:`evaluate` (pure) turns it into
checks from :mod:`.checks`; :func:`run` adds a real limiter decision's latency
and the server time of a decision and of a session load (:mod:`.cost`), prints
text or JSON, and returns the exit status (1 when anything FAILs).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import redis
from redis.exceptions import RedisClusterException

from ..backends.redis import RedisBackend
from ..limiter import Limiter
from . import checks as c
from .checks import FAIL, OK, WARN, Check
from .connect import Target, connect, redact
from .cost import check_server_time, measure_decision, measure_session_load
from .shards import check_breakers
from .topology import check_cluster, check_replication

__all__ = ["NodeSnapshot", "evaluate", "run", "snapshot"]

#: How long the CPU sample lasts, and how many decisions the latency check times.
CPU_SAMPLE_SECONDS = 0.5
LATENCY_SAMPLES = 25
_CONFIG_NAMES = ("maxmemory", "maxmemory-policy", "maxclients")


@dataclass
class NodeSnapshot:
    """What one server reported; everything :func:`evaluate` needs."""

    node: str
    info: dict[str, Any]
    #: ``CONFIG GET`` replies, or None when the server refused CONFIG.
    config: dict[str, Any] | None = None
    config_error: str | None = None
    #: The error of ``EVAL "return 1" 0``, None when it worked.
    script_error: str | None = None
    #: INFO cpu at the end of the sample, and the sample's length in seconds.
    cpu_after: dict[str, Any] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    #: ``VmSwap`` of the server process in bytes, when the server runs on this machine.
    vmswap_bytes: int | None = None
    swap_note: str = "remote server"
    cluster_info: dict[str, Any] | None = None


def evaluate(snap: NodeSnapshot) -> list[Check]:
    """All the per-server checks, from a snapshot (pure)."""
    info, config = snap.info, snap.config
    maxmemory = c.setting("maxmemory", config, info)
    out = [c.check_version(info), c.check_scripting(snap.script_error)]
    if snap.config_error is not None:
        out.append(
            Check(
                "config",
                OK if maxmemory is not None else WARN,
                f"CONFIG GET refused ({snap.config_error}); settings read from INFO"
                if maxmemory is not None
                else f"cannot read settings: CONFIG GET refused ({snap.config_error})",
                None,
            )
        )
    out += [
        c.check_maxmemory(maxmemory),
        c.check_policy(c.setting("maxmemory-policy", config, info), maxmemory),
        c.check_evictions(info),
        c.check_memory_usage(info, maxmemory),
        c.check_swap(info, snap.vmswap_bytes, snap.swap_note),
        c.check_clients(info, c.setting("maxclients", config, info)),
        c.check_cpu(info, snap.cpu_after, snap.cpu_seconds),
        *check_replication(info, cluster=snap.cluster_info is not None),
    ]
    if snap.cluster_info is not None:
        out += check_cluster(snap.cluster_info)
    return [Check(x.name, x.status, x.message, x.value, snap.node) for x in out]


# -- reading one server --------------------------------------------------------------


def snapshot(node: str, client: Any) -> NodeSnapshot:
    """Read one server (the CPU sample is finished later by :func:`finish_cpu`)."""
    info = client.info()
    snap = NodeSnapshot(node, info)
    snap.config, snap.config_error = _config(client)
    try:
        client.eval("return 1", 0)
    except redis.RedisError as exc:
        snap.script_error = str(exc) or type(exc).__name__
    if int(info.get("cluster_enabled", 0) or 0):
        raw = client.execute_command("CLUSTER INFO")
        snap.cluster_info = _parse_cluster_info(raw)
    snap.vmswap_bytes, snap.swap_note = _local_swap(client, info)
    return snap


def finish_cpu(snap: NodeSnapshot, client: Any, started: float) -> None:
    snap.cpu_after = client.info("cpu")
    snap.cpu_seconds = time.monotonic() - started


def _config(client: Any) -> tuple[dict[str, Any] | None, str | None]:
    config: dict[str, Any] = {}
    try:
        for name in _CONFIG_NAMES:
            config.update(client.config_get(name))
    except redis.RedisError as exc:
        return None, str(exc) or type(exc).__name__
    return config, None


def _parse_cluster_info(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _local_swap(client: Any, info: dict[str, Any]) -> tuple[int | None, str]:
    """VmSwap of the server's process, when it provably runs on this machine."""
    kwargs = client.connection_pool.connection_kwargs
    host, path = kwargs.get("host"), kwargs.get("path")
    if not path and not _is_loopback(str(host)):
        return None, "remote server: swap is visible only on its own machine"
    pid = info.get("process_id")
    if not pid or not os.path.exists(f"/proc/{pid}/status"):
        return None, "server on loopback but its process is not visible here (a container?)"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        port = str(info.get("tcp_port", kwargs.get("port")))
        if (path and path not in cmdline) or (not path and port not in cmdline):
            return None, f"pid {pid} on this machine is not the server on port {port}"
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmSwap:"):
                    return int(line.split()[1]) * 1024, "local server"
    except (OSError, ValueError):
        pass
    return None, "local server, but /proc/<pid>/status is not readable"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- the limiter round trip -------------------------------------------------------------


def latency_samples(target: Target, n: int = LATENCY_SAMPLES) -> tuple[list[float], str | None]:
    """Time ``n`` real decisions on a throwaway key (``gk:doctor:{...}``, a TTL of
    milliseconds), then delete it."""
    limiter = Limiter("1000/second", backend=RedisBackend(target.client), prefix="doctor")
    key = f"probe-{uuid.uuid4().hex[:12]}"
    samples = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            limiter.hit(key)
            samples.append(time.perf_counter() - t0)
        limiter.reset(key)
    except (redis.RedisError, RedisClusterException) as exc:
        return samples, str(exc) or type(exc).__name__
    return samples, None


# -- the command --------------------------------------------------------------------


def diagnose(
    url: str, *, cluster: bool = False, cpu_seconds: float = CPU_SAMPLE_SECONDS
) -> tuple[Target | None, list[Check]]:
    """Connect and run every check; a failure to connect is a FAIL check, not an exception."""
    try:
        target = connect(url, cluster=cluster)
    except (redis.RedisError, RedisClusterException, OSError, ValueError) as exc:
        return None, [Check("connect", FAIL, f"cannot connect to {redact(url)}: {exc}", None)]
    out = [
        Check(
            "connect",
            OK,
            f"{target.kind}: {target.label}" + "".join(f"; {n}" for n in target.notes),
            target.kind,
        )
    ]
    try:
        started = time.monotonic()
        snaps = []
        for name, client in target.nodes():
            try:
                snaps.append((snapshot(name, client), client))
            except (redis.RedisError, RedisClusterException) as exc:  # one node down
                out.append(Check("read", FAIL, f"cannot read this server: {exc}", None, name))
        samples, error = latency_samples(target)
        time.sleep(max(0.0, cpu_seconds - (time.monotonic() - started)))
        for snap, client in snaps:
            finish_cpu(snap, client, started)
            out += evaluate(snap)
        out.append(c.check_latency(samples, error))
        # after the CPU sample, which these calls would otherwise inflate
        out += check_breakers(target)
        out.append(check_server_time(measure_decision(target)))
        out.append(check_server_time(measure_session_load(target)))
    except (redis.RedisError, RedisClusterException) as exc:
        out.append(Check("read", FAIL, f"lost the server while reading it: {exc}", None))
    finally:
        target.close()
    return target, out


def render_text(url: str, checks: Sequence[Check], out: TextIO) -> None:
    width = max(len(x.name) for x in checks)
    several = len({x.node for x in checks if x.node}) > 1
    print(f"gatekeep doctor {redact(url)}", file=out)
    for x in checks:
        where = f"[{x.node}] " if several and x.node else ""
        print(f"  {x.status:<4}  {x.name:<{width}}  {where}{x.message}", file=out)
    counts = {s: sum(x.status == s for x in checks) for s in (OK, WARN, FAIL)}
    verdict = c.worst(checks)
    print(
        f"{verdict}: {counts[OK]} ok, {counts[WARN]} warning(s), {counts[FAIL]} failure(s)",
        file=out,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        metavar="REDIS_URL",
        help="redis://host:port/db, rediss://..., unix:///path, or "
        "redis+sentinel://host:port[,host:port]/service_name",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="connect as a Redis Cluster client (found out on its own when "
        "the server reports cluster_enabled)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--cpu-sample",
        type=float,
        default=CPU_SAMPLE_SECONDS,
        metavar="SECONDS",
        help=f"how long to sample the server's CPU (default {CPU_SAMPLE_SECONDS})",
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    _, checks = diagnose(args.url, cluster=args.cluster, cpu_seconds=args.cpu_sample)
    status = c.worst(checks)
    if args.json:
        json.dump(
            {"url": redact(args.url), "status": status, "checks": [x.to_json() for x in checks]},
            out,
            indent=2,
        )
        out.write("\n")
    else:
        render_text(args.url, checks, out)
    return 1 if status == FAIL else 0

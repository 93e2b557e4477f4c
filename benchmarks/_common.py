"""What the lean benchmark measures per operation, and the raw round trips of its floor.

- :func:`measure`: client wall µs and client CPU µs (``time.process_time``: this
  process only, the server's work and the wire's waiting excluded) over ``n``
  operations, and the server's own accounting of them (``INFO commandstats`` after a
  ``CONFIG RESETSTAT``; only ever on a throwaway server the benchmark started).
- :func:`command_mix`: which commands an operation sends and which its scripts run,
  read from ``MONITOR`` (a script's commands show as ``[0 lua]``) in a short pass of
  its own, never during a timed one.
- :class:`AsyncPing`, :class:`SyncPing`: ``PING`` written and read on a plain socket,
  no client library: the least one Redis round trip can cost a client.

Redis 7 counts a command a script runs twice in ``INFO commandstats``: on its own line
(``cmdstat_get``) and inside the script's line (``cmdstat_evalsha`` usec is the whole
script, its commands included). So the sum over every line counts scripts' commands
twice; :attr:`Sample.server_us` counts each microsecond once (each line weighted by the
share of its calls that came from clients, from :func:`command_mix`).
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import redis

#: Commands the harness itself sends to the server it reads.
OWN = frozenset({"info", "config", "echo", "monitor"})
SCRIPTS = frozenset({"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"})
PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"
_END = "gatekeep-bench-monitor-end"

Op = Callable[[int], object]


@dataclass
class Mix:
    """Per operation: commands clients sent and commands scripts ran, by lower-case
    name, and the round trips (the server's socket reads: a pipeline is one)."""

    sent: dict[str, float]
    inner: dict[str, float]
    #: ``total_reads_processed`` per operation; None where the server has no such field
    #: (before Redis 7.0): then one round trip per command sent.
    reads: float | None = None

    @property
    def round_trips(self) -> float:
        return self.reads if self.reads is not None else sum(self.sent.values())

    @property
    def commands(self) -> float:
        return sum(self.sent.values()) + sum(self.inner.values())

    def client_share(self, name: str) -> float:
        sent, inner = self.sent.get(name, 0.0), self.inner.get(name, 0.0)
        return sent / (sent + inner) if sent + inner else 1.0


@dataclass
class Sample:
    """One operation's cost, averaged over a timed run."""

    wall_us: float
    cpu_us: float
    #: Server µs counted once (scripts whole, plus the commands clients sent).
    server_us: float
    #: Server µs summed over every commandstats line (a script's commands twice).
    server_all_lines_us: float
    #: Server µs of the EVALSHA / EVAL lines alone.
    server_scripts_us: float


def base_name(line: str) -> str:
    """``cmdstat_config|resetstat`` -> ``config``."""
    return line.removeprefix("cmdstat_").split("|", 1)[0].lower()


def usec_by_command(stats: Mapping[str, Any]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for line, row in stats.items():
        name = base_name(line)
        if name not in OWN:
            out[name] += int(row["usec"])
    return dict(out)


def measure(probe: redis.Redis, op: Op, n: int, mix: Mix) -> Sample:
    """Run ``op(n)`` once, timed, between a ``CONFIG RESETSTAT`` and an ``INFO
    commandstats`` on ``probe`` (a throwaway server's client); per-operation figures."""
    probe.config_resetstat()
    wall, cpu = time.perf_counter(), time.process_time()
    op(n)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    usec = usec_by_command(probe.info("commandstats"))
    return Sample(
        wall_us=wall / n * 1e6,
        cpu_us=cpu / n * 1e6,
        server_us=sum(u * mix.client_share(name) for name, u in usec.items()) / n,
        server_all_lines_us=sum(usec.values()) / n,
        server_scripts_us=sum(u for name, u in usec.items() if name in SCRIPTS) / n,
    )


def command_mix(probe: redis.Redis, op: Op, n: int) -> Mix:
    """Run ``op(n)`` under ``MONITOR`` and sort what the server saw into commands clients
    sent and commands scripts ran (``MONITOR`` slows the server: never time this)."""
    reads = _socket_reads(probe, op, n)
    pool = probe.connection_pool
    marker = pool.get_connection()  # connected before MONITOR starts: its handshake unseen
    try:
        marker.connect()
        with probe.monitor() as monitor:
            op(n)
            marker.send_command("ECHO", _END)
            marker.read_response()
            sent, inner = _sort_monitored(monitor)
    finally:
        pool.release(marker)
    return Mix({k: v / n for k, v in sent.items()}, {k: v / n for k, v in inner.items()}, reads)


def _socket_reads(probe: redis.Redis, op: Op, n: int) -> float | None:
    """Round trips per ``op``: the server's socket reads while it runs (a pipelined
    batch is one read), less the one that reads the closing ``INFO``."""
    before = probe.info("stats").get("total_reads_processed")
    if before is None:
        return None
    op(n)
    after = int(probe.info("stats")["total_reads_processed"])
    return (after - int(before) - 1) / n


def _sort_monitored(monitor: Any) -> tuple[Counter[str], Counter[str]]:
    sent: Counter[str] = Counter()
    inner: Counter[str] = Counter()
    while True:
        seen = monitor.next_command()
        words = str(seen["command"]).split()
        if words[:2] == ["ECHO", _END]:
            return sent, inner
        name = words[0].lower() if words else ""
        if name and name not in OWN:
            (inner if seen.get("client_type") == "lua" else sent)[name] += 1


def median(samples: Sequence[Sample]) -> Sample:
    """Field by field median over rounds."""
    return Sample(
        **{f.name: statistics.median(getattr(s, f.name) for s in samples) for f in fields(Sample)}
    )


def run_rounds(
    probe: redis.Redis, ops: Mapping[str, tuple[Op, int]], rounds: int, mix_n: int = 20
) -> tuple[dict[str, list[Sample]], dict[str, Mix]]:
    """Warm every op up, read its command mix, then time ``rounds`` interleaved rounds,
    each op ``n`` times per round (``ops``: name -> (op, n)); every round's samples."""
    for op, n in ops.values():
        op(max(1, n // 10))
    mixes = {name: command_mix(probe, op, mix_n) for name, (op, _) in ops.items()}
    samples: dict[str, list[Sample]] = {name: [] for name in ops}
    for _ in range(rounds):
        for name, (op, n) in ops.items():
            samples[name].append(measure(probe, op, n, mixes[name]))
    return samples, mixes


def ratio(samples: Mapping[str, Sequence[Sample]], a: str, b: str, field: str) -> float:
    """The median over rounds of ``a``'s ``field`` over ``b``'s in the same round: the two
    were measured seconds apart, so a change in the machine's load moves both."""
    return statistics.median(
        getattr(x, field) / getattr(y, field) for x, y in zip(samples[a], samples[b], strict=True)
    )


def bytes_of_new_keys(probe: redis.Redis, make: Callable[[], object]) -> tuple[int, int]:
    """``FLUSHALL`` (a throwaway server), ``make()``, then the keys it left: their
    count and the sum of their ``MEMORY USAGE``."""
    probe.flushall()
    make()
    keys = list(probe.scan_iter(count=1000))
    return len(keys), sum(int(probe.memory_usage(k, samples=0) or 0) for k in keys)


def inner_commands_counted_twice(probe: redis.Redis, calls: int = 20) -> tuple[float, float]:
    """Whether a script's line includes the commands it runs: per call, the usec of an
    ``LRANGE`` of 20,000 items run by a script, on its own line and on the script's."""
    probe.delete("gatekeep-bench:big")
    probe.rpush("gatekeep-bench:big", *range(20_000))
    sha = probe.script_load("redis.call('LRANGE', KEYS[1], 0, -1) return 1")
    probe.config_resetstat()
    for _ in range(calls):
        probe.evalsha(sha, 1, "gatekeep-bench:big")
    stats = probe.info("commandstats")
    probe.delete("gatekeep-bench:big")
    return stats["cmdstat_lrange"]["usec"] / calls, stats["cmdstat_evalsha"]["usec"] / calls


class AsyncPing:
    """Raw ``PING`` round trips on an ``asyncio.open_connection`` stream."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Connect now rather than on the first call (a no-op once connected)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def __call__(self) -> None:
        if self.writer is None:
            await self.open()
        assert self.reader is not None
        self.writer.write(PING)
        if await self.reader.readexactly(len(PONG)) != PONG:
            raise RuntimeError("no PONG")

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


class SyncPing:
    """Raw ``PING`` round trips on a blocking socket: one ``recv`` (a loop only on a
    short read). The cheapest read measured: ``recv_into`` a buffer cost ~1.6 µs more
    CPU per PING (benchmarks/logs/2026-12-02, the floors' PINGs)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __call__(self) -> None:
        self.sock.sendall(PING)
        got = self.sock.recv(64)
        while len(got) < len(PONG):
            more = self.sock.recv(64)
            if not more:
                raise RuntimeError("connection closed")
            got += more
        if got != PONG:
            raise RuntimeError("no PONG")

    def close(self) -> None:
        self.sock.close()


def table(header: Sequence[str], rows: Sequence[Sequence[object]], right: int = 1) -> str:
    """A markdown table; columns from ``right`` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

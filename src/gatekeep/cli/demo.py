"""``python -m gatekeep demo``: a burst of requests through each limiter, explained.

1. A burst: ``--requests`` requests at once against ``--rate`` on one key per
   algorithm; which were allowed, which denied, and why.
2. Traffic: ``--clients`` clients hammering their own keys for ``--duration``
   seconds, with a live progress line.
3. A summary table: decisions and the latency of each ``hit`` (p50 / p99),
   measured here around each call.
5. Waiting (``acquire``) and reserving then settling (``reserve`` / ``settle``).
6. gatekeep's own metrics of the run.
7. A penalty block (``block=[60, 600]``) and a flood from the blocked key, answered by
   the local cache of denied keys.
8. A concurrency limit: holders of a slot, one turned away, one released.

It runs on a throwaway ``redis-server`` it starts (and stops at exit) when a
server binary is found, on the in-process backend otherwise, or on the server
named by ``--url``. It never connects anywhere else.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..algorithms import ALGORITHMS, AlgorithmSpec
from ..backends.base import Backend
from ..backends.memory import MemoryBackend
from ..backends.redis import RedisBackend
from ..decision import Decision
from ..limiter import Limiter
from ..metrics import Metrics
from ..rates import Rate, parse_rate
from ..testing import ServerNotFound, ServerProcess, find_server
from .connect import redact
from .demo_concurrency import slots
from .demo_settle import patience
from .display import Progress, format_table, percentile

__all__ = ["Tally", "open_backend", "run", "summary_rows"]

_WHY = {
    "token_bucket": "the bucket is empty; it refills one request every {interval}",
    "gcra": "the theoretical arrival time is too far ahead; one request every {interval}",
    "fixed_window": "the window is full; it resets when the window ends",
    "sliding_window": "this window plus the weighted previous one reached the limit",
    "sliding_log": "{limit} requests are logged within the last {period}; the oldest leaves first",
}


@dataclass
class Tally:
    """Decisions and latencies of one algorithm (a metrics module can feed the same
    table from its own snapshot)."""

    algorithm: str
    allowed: int = 0
    denied: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def record(self, decision: Decision, latency: float) -> None:
        if decision.allowed:
            self.allowed += 1
        else:
            self.denied += 1
        self.latencies.append(latency)

    @property
    def requests(self) -> int:
        return self.allowed + self.denied


SUMMARY_HEADERS = (
    "algorithm",
    "requests",
    "allowed",
    "denied",
    "denied %",
    "per client",
    "p50 µs",
    "p99 µs",
    "hits/s",
)


def summary_rows(tallies: Sequence[Tally], clients: int) -> list[tuple[Any, ...]]:
    rows = []
    for t in tallies:
        lat = sorted(t.latencies)
        rows.append(
            (
                t.algorithm,
                t.requests,
                t.allowed,
                t.denied,
                100.0 * t.denied / t.requests if t.requests else float("nan"),
                t.allowed / clients,
                percentile(lat, 0.50) * 1e6,
                percentile(lat, 0.99) * 1e6,
                t.requests / t.seconds if t.seconds else float("nan"),
            )
        )
    return rows


# -- the backend ----------------------------------------------------------------------


@contextlib.contextmanager
def open_backend(choice: str, url: str | None) -> Iterator[tuple[Backend, str]]:
    """The backend to run on and a description; a server started here is stopped on exit."""
    if url is not None:
        if choice == "memory":
            raise SystemExit("--url names a Redis server: use --backend redis or auto")
        backend = RedisBackend(url, socket_timeout=5.0, socket_connect_timeout=3.0)
        try:
            yield backend, f"Redis at {redact(url)}"
        finally:
            backend.close()
        return
    if choice in ("redis", "auto"):
        try:
            server = ServerProcess.start(find_server("any"))
        except (ServerNotFound, RuntimeError) as exc:
            if choice == "redis":
                raise SystemExit(f"cannot start a throwaway server: {exc}") from None
        else:
            backend = RedisBackend(server.url)
            try:
                yield (
                    backend,
                    (
                        f"a throwaway {server.name}-server on 127.0.0.1:{server.port} "
                        f"(pid {server.pid}, stopped at exit)"
                    ),
                )
            finally:
                backend.close()
                server.stop()
            return
        yield MemoryBackend(), "the in-process backend (no redis-server or valkey-server found)"
        return
    yield MemoryBackend(), "the in-process backend"


# -- the three parts ----------------------------------------------------------------


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> '#1-#3, #7'."""
    parts: list[str] = []
    start = prev = None
    for n in [*numbers, None]:
        if n is not None and prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(f"#{start}" if start == prev else f"#{start}-#{prev}")
        start = prev = n
    return ", ".join(parts) or "none"


def _seconds(us: int) -> str:
    return f"{us / 1e6:g} s" if us >= 1_000_000 else f"{us / 1000:g} ms"


def burst(limiters: dict[str, Limiter], rate: Rate, n: int, out: TextIO) -> None:
    print(f"\n1. A burst of {n} requests at once against {rate}, one key per algorithm", file=out)
    for name, limiter in limiters.items():
        decisions = [limiter.hit("burst") for _ in range(n)]
        allowed = [i for i, d in enumerate(decisions, 1) if d.allowed]
        denied = [i for i, d in enumerate(decisions, 1) if not d.allowed]
        print(f"  {name}", file=out)
        print(
            f"    allowed {_ranges(allowed)}; remaining after each: "
            f"{', '.join(str(decisions[i - 1].remaining) for i in allowed) or '-'}",
            file=out,
        )
        if denied:
            first = decisions[denied[0] - 1]
            why = _WHY[name].format(
                interval=_seconds(rate.interval_us),
                limit=rate.limit,
                period=_seconds(rate.period_us),
            )
            print(
                f"    denied  {_ranges(denied)}: {why}; retry after "
                f"{first.retry_after:.3f} s, full again in {first.reset_after:.3f} s",
                file=out,
            )


def traffic(
    limiters: dict[str, Limiter], clients: int, duration: float, out: TextIO, progress: Progress
) -> list[Tally]:
    print(
        f"\n2. {clients} clients sending as fast as they can for {duration:g} s, "
        "algorithms in turn",
        file=out,
    )
    tallies = {name: Tally(name) for name in limiters}
    keys = [f"client-{i}" for i in range(1, clients + 1)]
    pairs = [(tallies[name], limiter) for name, limiter in limiters.items()]
    started = time.monotonic()
    deadline = started + duration
    sent = allowed = 0
    clock = time.perf_counter
    while True:
        for key in keys:
            for tally, limiter in pairs:
                t0 = clock()
                decision = limiter.hit(key)
                tally.record(decision, clock() - t0)
                allowed += decision.allowed
            sent += len(pairs)
        now = time.monotonic()
        progress.update(
            f"  {now - started:4.1f}/{duration:g} s  {sent:,} requests  "
            f"{allowed:,} allowed  {sent - allowed:,} denied"
        )
        if now >= deadline:
            break
    elapsed = time.monotonic() - started
    progress.done(
        f"  {elapsed:4.1f}/{duration:g} s  {sent:,} requests  {allowed:,} allowed  "
        f"{sent - allowed:,} denied: done"
    )
    for t in tallies.values():
        t.seconds = elapsed
    return list(tallies.values())


def print_metrics(stats: dict[str, Any], out: TextIO) -> None:
    """What gatekeep's own metrics (``gatekeep.metrics``) counted during the demo."""
    print(
        "\n6. gatekeep.metrics, as /metrics would export them (gatekeep_decisions_total, "
        "gatekeep_waits_total, gatekeep_settled_total, gatekeep_backend_latency_seconds):",
        file=out,
    )
    rows = [
        (rule, c["allowed"], c["denied"], c["near_limit"], c["waits"], c["settled"])
        for rule, c in stats["decisions"].items()
    ]
    headers = ("rule", "allowed", "denied", "near limit (<20% left)", "waits", "settled")
    print(format_table(headers, rows), file=out)
    for backend, hist in stats["latency"].items():
        if hist["count"]:
            under = [
                f"<= {bound * 1e6:g} µs: {100 * n / hist['count']:.1f}%"
                for bound, n in hist["buckets"].items()
                if bound in (0.00005, 0.0001, 0.001)
            ]
            print(
                f"backend latency ({backend}): {hist['count']:,} calls, mean "
                f"{hist['sum'] / hist['count'] * 1e6:.1f} µs; " + ", ".join(under),
                file=out,
            )


def penalty_block(backend: Backend, rate: Rate, prefix: str, out: TextIO) -> Limiter:
    """Part 5: one key breaches ``rate`` under ``block=[60, 600]``, then floods."""
    limiter = Limiter(rate, backend=backend, prefix=prefix, block=[60, 600], metrics=None)
    print(f"\n7. A penalty block: {rate} with block=[60, 600], one key", file=out)
    decisions = [limiter.hit("attacker") for _ in range(rate.burst + 1)]
    print(
        f"  request {len(decisions)} denied: the key is blocked for "
        f"{decisions[-1].retry_after:g} s (Retry-After); a second breach within 600 s "
        "of the block's end blocks it for 600 s; reset() lifts it",
        file=out,
    )
    started = time.perf_counter()
    flood = [limiter.hit("attacker") for _ in range(1000)]
    took = (time.perf_counter() - started) / len(flood)
    held = 0 if limiter.denials is None else limiter.denials.local_denials
    where = (
        f"{held} answered in process by the local cache of denied keys, no round trip"
        if limiter.denials is not None
        else "the in-process backend decides locally anyway"
    )
    print(
        f"  a flood of {len(flood)} more: {sum(not d for d in flood)} denied; {where}; "
        f"{took * 1e6:.1f} µs each",
        file=out,
    )
    return limiter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=("auto", "memory", "redis"),
        default="auto",
        help="auto (default): a throwaway redis-server when one is found, else in-process",
    )
    parser.add_argument("--url", help="use this existing server instead of starting one")
    parser.add_argument(
        "--requests", type=int, default=10, help="requests in the burst (default 10)"
    )
    parser.add_argument("--rate", default="5/second", help="the limit (default 5/second)")
    parser.add_argument(
        "--algorithm",
        choices=("all", *ALGORITHMS),
        default="all",
        help="which algorithm (default: all five)",
    )
    parser.add_argument(
        "--clients", type=int, default=20, help="clients in the traffic phase (default 20)"
    )
    parser.add_argument(
        "--duration", type=float, default=2.0, help="seconds of traffic (default 2)"
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    try:
        rate = parse_rate(args.rate)
    except ValueError as exc:
        print(f"--rate: {exc}", file=out)
        return 2
    if args.requests < 1 or args.clients < 1 or not 0 < args.duration <= 60:
        print("--requests and --clients must be >= 1, --duration in (0, 60]", file=out)
        return 2
    names = list(ALGORITHMS) if args.algorithm == "all" else [args.algorithm]
    specs: list[AlgorithmSpec] = []
    for name in names:
        spec = ALGORITHMS[name]
        try:
            spec.params(rate)
        except ValueError as exc:
            if args.algorithm != "all":
                print(f"--rate: {exc}", file=out)
                return 2
            print(f"(skipping {name}: {exc})", file=out)
            continue
        specs.append(spec)
    with open_backend(args.backend, args.url) as (backend, where):
        print(f"gatekeep demo on {where}", file=out)
        prefix = f"demo-{uuid.uuid4().hex[:8]}"
        metrics = Metrics(latency_sample=1)
        limiters = {
            s.name: Limiter(
                rate, backend=backend, algorithm=s, prefix=prefix, name=s.name, metrics=metrics
            )
            for s in specs
        }
        burst(limiters, rate, args.requests, out)
        tallies = traffic(limiters, args.clients, args.duration, out, Progress(out))
        seconds = tallies[0].seconds if tallies else 0.0
        expected = rate.burst + rate.limit * seconds / rate.period
        edge = (
            " (fixed_window may pass up to twice the limit across a window edge)"
            if "fixed_window" in limiters
            else ""
        )
        print(
            f"\n3. Summary: {rate} lets a client pass about {rate.burst} at once, then "
            f"{rate.limit} per {_seconds(rate.period_us)}: about {expected:.0f} each in "
            f"{seconds:.1f} s{edge}. Latency is each hit timed by the demo.",
            file=out,
        )
        print(format_table(SUMMARY_HEADERS, summary_rows(tallies, args.clients)), file=out)
        patience(backend, rate, prefix, metrics, out)
        print_metrics(metrics.stats(), out)
        blocked = penalty_block(backend, rate, prefix, out)
        slots(backend, prefix, out)
        if args.url is not None:  # leave nothing behind on a server we did not start
            blocked.reset("attacker")
            for limiter in limiters.values():
                for key in ["burst", *(f"client-{i}" for i in range(1, args.clients + 1))]:
                    limiter.reset(key)
            Limiter(rate, backend=backend, prefix=prefix).reset("wait")
            Limiter("1000/minute", backend=backend, prefix=prefix).reset("org")
    return 0

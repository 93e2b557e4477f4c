"""Drive limiter decisions through a fault and measure what the caller saw.

A :class:`Run` records every decision (when, allowed, answered by Redis or by
the fallback, latency, exception) and the breaker's state changes; its
:meth:`Run.report` computes the figures the HA tests assert and print.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gatekeep.backends.failover import FailoverBackend, local_share
from gatekeep.breaker import State
from gatekeep.rates import Rate

#: Pause between two decisions of the traffic loop: ~400 decisions/s, leaving CPU
#: to the servers and sentinels on a 2-core machine.
INTERVAL = 0.0025


@dataclass
class Event:
    t: float
    allowed: bool
    local: bool
    latency: float
    error: str | None = None


@dataclass
class Run:
    backend: FailoverBackend
    events: list[Event] = field(default_factory=list)
    t_fault: float | None = None
    t_promoted: float | None = None
    opened: list[float] = field(default_factory=list)
    closed: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        def listen(_b, _old, new, _why) -> None:
            (
                self.opened if new is State.OPEN else self.closed if new is State.CLOSED else []
            ).append(time.monotonic())

        # every shard's breaker shares the default one's listeners (gatekeep.shards)
        self.backend.breaker.listeners.append(listen)

    # -- recording ------------------------------------------------------------------

    def call(self, decide: Callable[[], bool]) -> None:
        before = self.backend.fallback_calls
        t = time.monotonic()
        try:
            allowed, error = decide(), None
        except Exception as exc:  # what must never happen
            allowed, error = False, f"{type(exc).__name__}: {exc}"
        self.events.append(
            Event(t, allowed, self.backend.fallback_calls > before, time.monotonic() - t, error)
        )

    async def acall(self, decide: Callable[[], Awaitable[bool]]) -> None:
        before = self.backend.fallback_calls
        t = time.monotonic()
        try:
            allowed, error = await decide(), None
        except Exception as exc:
            allowed, error = False, f"{type(exc).__name__}: {exc}"
        self.events.append(
            Event(t, allowed, self.backend.fallback_calls > before, time.monotonic() - t, error)
        )

    def _tick(
        self,
        started: float,
        fault_at: float,
        inject: Callable[[], object],
        watch: Callable[[], None] | None,
    ) -> bool:
        """Inject the fault when due; True when the run is over."""
        now = time.monotonic()
        if self.t_fault is None and now - started >= fault_at:
            self.t_fault = time.monotonic()
            inject()
            if watch is not None:
                watch()
        return self.t_fault is not None and self.recovered()

    def drive(
        self,
        decide: Callable[[], bool],
        inject: Callable[[], object],
        *,
        fault_at: float = 0.3,
        max_seconds: float = 12.0,
        watch: Callable[[], None] | None = None,
    ) -> None:
        """Decisions in this thread until Redis has answered again for a while."""
        started = time.monotonic()
        while time.monotonic() - started < max_seconds:
            if self._tick(started, fault_at, inject, watch):
                return
            self.call(decide)
            time.sleep(INTERVAL)

    async def adrive(
        self,
        decide: Callable[[], Awaitable[bool]],
        inject: Callable[[], object],
        *,
        fault_at: float = 0.3,
        max_seconds: float = 12.0,
        watch: Callable[[], None] | None = None,
    ) -> None:
        started = time.monotonic()
        while time.monotonic() - started < max_seconds:
            if self._tick(started, fault_at, inject, watch):
                return
            await self.acall(decide)
            await asyncio.sleep(INTERVAL)

    def recovered(self, settle: float = 0.3) -> bool:
        """Closed again after the fault, with Redis answering for ``settle`` seconds.

        On a cluster, Redis answering for ``settle`` seconds since the fallback last
        decided after the fault: a promoted replica is a new shard whose breaker is made
        closed (no state change to wait for), and the failed primary's breaker stays
        open, no longer asked."""
        if self.t_fault is None:
            return False
        if self.backend.breakers.sharded:
            last_local = next((e.t for e in reversed(self.events) if e.local), None)
            if last_local is None or last_local < self.t_fault or self.events[-1].local:
                return False
            return time.monotonic() - last_local >= settle
        if not self.closed or self.closed[-1] < self.t_fault:
            return False
        if self.backend.breakers.open_shards() or self.opened[-1] > self.closed[-1]:
            return False
        return time.monotonic() - self.closed[-1] >= settle

    # -- the figures -------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """The breakers' counters, summed over every shard's (Cluster: one per primary)."""
        total: dict[str, int] = {}
        for _, breaker in self.backend.breakers.items():
            for k, v in breaker.counters.as_dict().items():
                total[k] = total.get(k, 0) + v
        return total

    def report(self, rate: Rate, name: str) -> dict[str, float]:
        assert self.t_fault is not None
        local = [e for e in self.events if e.local]
        admitted_local = sum(e.allowed for e in local)
        span = (local[-1].t - local[0].t) if local else 0.0
        bound = fallback_bound(rate, self.backend.instances, span)
        after = [e for e in self.events if e.t >= self.t_fault]
        open_at = next((t for t in self.opened if t >= self.t_fault), None)
        back = next(
            (e.t for e in self.events if open_at is not None and e.t > open_at and not e.local),
            None,
        )
        lat_local = [e.latency for e in local]
        figures = {
            "decisions": len(self.events),
            "exceptions": sum(e.error is not None for e in self.events),
            "local_decisions": len(local),
            "local_admitted": admitted_local,
            "local_denied": len(local) - admitted_local,
            "local_bound": bound,
            "outage_span_s": round(span, 3),
            "open_after_fault_s": round(open_at - self.t_fault, 3) if open_at else math.inf,
            "promoted_after_fault_s": (
                round(self.t_promoted - self.t_fault, 3) if self.t_promoted else math.nan
            ),
            "redis_after_promotion_s": (
                round(back - self.t_promoted, 3) if back and self.t_promoted else math.inf
            ),
            "redis_after_fault_s": round(back - self.t_fault, 3) if back else math.inf,
            "max_latency_ms": round(max(e.latency for e in after) * 1000, 1) if after else 0,
            "median_local_latency_us": (
                round(statistics.median(lat_local) * 1e6, 1) if lat_local else math.nan
            ),
            "breaker": self.counters(),  # type: ignore[dict-item]
        }
        print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))
        errors = [e.error for e in self.events if e.error]
        assert not errors, f"{len(errors)} exceptions reached the caller, e.g. {errors[:3]}"
        return figures


def fallback_bound(rate: Rate, instances: int, span: float) -> int:
    """The most one process's fallback may admit for one key in ``span`` seconds of
    decisions (the README's "Guarantees"): a fresh local bucket holds its share's
    burst and refills one token per interval, plus one."""
    share = local_share(rate, instances)
    return share.burst + math.floor(span * 1e6 / share.interval_us) + 1


def watch_promotion(
    run: Run, current: Callable[[], int | None], old: int, stop: threading.Event
) -> threading.Thread:
    """Record in ``run.t_promoted`` when ``current()`` first names another node."""

    def loop() -> None:
        while not stop.is_set():
            try:
                port = current()
            except Exception:
                port = None
            if port is not None and port != old:
                run.t_promoted = time.monotonic()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def assert_outage(figures: dict[str, float], *, deadline: float, promotion: bool = True) -> None:
    """The promises: the breaker opens within the deadline (plus scheduling slack),
    Redis decides again within 2 s of the promotion, the fallback stays in bounds
    and did enforce the limit."""
    assert figures["exceptions"] == 0
    assert figures["open_after_fault_s"] <= deadline + 0.2, figures
    if promotion:
        assert figures["redis_after_promotion_s"] <= 2.0, figures
    assert figures["local_decisions"] > 0, "the fallback never decided: no outage was seen"
    assert figures["local_admitted"] <= figures["local_bound"], figures
    assert figures["local_denied"] > 0, "the fallback admitted everything: it did not enforce"

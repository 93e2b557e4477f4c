"""Metrics kept by gatekeep itself, cheap enough for the hot path.

Every :class:`~gatekeep.Limiter` records into a :class:`Metrics` (the process-wide
:data:`METRICS` unless given another, or none with ``metrics=None``); so do the
session stores and the middleware. :meth:`Metrics.stats` returns a snapshot as
plain dicts; :mod:`gatekeep.exporters` turns it into Prometheus or OpenTelemetry
metrics.

On the hot path a decision costs two attribute increments on a per-rule object
(no lock, no allocation), and every ``latency_sample``-th decision is timed into
a fixed-bucket histogram. In CPython with the GIL an attribute increment is not
interrupted by another thread; on free-threaded builds counts may be slightly
low under contention, never wrong in kind.

Sources whose state lives elsewhere (a circuit breaker, an in-process store) are
read when a snapshot is taken, not on every call: :meth:`Metrics.watch`.

>>> from gatekeep import Limiter
>>> from gatekeep.metrics import Metrics
>>> metrics = Metrics()
>>> limiter = Limiter("2/second", metrics=metrics, name="api")
>>> _ = [limiter.hit("k") for _ in range(3)]
>>> metrics.stats()["decisions"]["api"]["denied"]
1
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

__all__ = ["LATENCY_BUCKETS", "METRICS", "Histogram", "Metrics", "RuleCounters", "SessionCounters"]

#: Upper bounds of the latency histogram buckets, in seconds (``+Inf`` implied).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
_BUCKETS_NS = tuple(round(b * 1e9) for b in LATENCY_BUCKETS)

#: A decision is "near the limit" when less than this share of the limit remains:
#: ``remaining * NEAR_LIMIT_FACTOR < limit`` (integers only, on the hot path).
NEAR_LIMIT = 0.2
NEAR_LIMIT_FACTOR = 5


class RuleCounters:
    """Decisions of one rule (a limiter's ``name``, or a middleware rule)."""

    __slots__ = ("allowed", "denied", "near_limit", "settled", "shadow_denied", "waits")

    def __init__(self) -> None:
        self.allowed = 0
        self.denied = 0
        #: Sleeps before a request passed on: ``acquire`` waiting out a ``retry_after``
        #: (that denial is not counted as one), a middleware rule's ``delay``.
        self.waits = 0
        #: Reservations settled (``Reservation.settle``/``cancel``, a rule's ``settle``).
        self.settled = 0
        #: Denials that shadow mode let through.
        self.shadow_denied = 0
        #: Allowed with less than 20 % of the limit remaining.
        self.near_limit = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class Histogram:
    """Counts per fixed bucket (:data:`LATENCY_BUCKETS`), plus a sum and a count."""

    __slots__ = ("buckets", "count", "sum_ns")

    def __init__(self) -> None:
        self.buckets = [0] * (len(_BUCKETS_NS) + 1)
        self.count = 0
        self.sum_ns = 0

    def observe_ns(self, ns: int) -> None:
        self.buckets[bisect_left(_BUCKETS_NS, ns)] += 1
        self.count += 1
        self.sum_ns += ns

    def as_dict(self) -> dict[str, Any]:
        cumulative, running = [], 0
        for n in self.buckets:
            running += n
            cumulative.append(running)
        return {
            "buckets": dict(zip([*LATENCY_BUCKETS, float("inf")], cumulative, strict=True)),
            "count": self.count,
            "sum": self.sum_ns / 1e9,
        }


class SessionCounters:
    """What the session stores did."""

    __slots__ = ("destroys", "hits", "loads", "misses", "regenerations", "saves")

    def __init__(self) -> None:
        self.loads = 0
        self.hits = 0
        self.misses = 0
        self.saves = 0
        self.regenerations = 0
        self.destroys = 0

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = {name: getattr(self, name) for name in self.__slots__}
        out["hit_rate"] = self.hits / self.loads if self.loads else 0.0
        return out


class Metrics:
    """A registry of gatekeep's own counters and histograms.

    ``latency_sample`` times one decision in that many (1 times them all).
    """

    def __init__(self, *, latency_sample: int = 16) -> None:
        if (
            isinstance(latency_sample, bool)
            or not isinstance(latency_sample, int)
            or latency_sample < 1
        ):
            raise ValueError(f"latency_sample must be a positive int, got {latency_sample!r}")
        self.latency_sample = latency_sample
        self._lock = threading.Lock()  # only to create entries, never per decision
        self._rules: dict[str, RuleCounters] = {}
        self._latency: dict[str, Histogram] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self.sessions = SessionCounters()
        self._watched: dict[str, Callable[[], dict[str, Any]]] = {}

    # -- handles taken once, at configuration time ---------------------------------

    def rule(self, name: str) -> RuleCounters:
        """The counters of one rule, created on first use."""
        counters = self._rules.get(name)
        if counters is None:
            with self._lock:
                counters = self._rules.setdefault(name, RuleCounters())
        return counters

    def latency(self, backend: str) -> Histogram:
        """The latency histogram of one backend kind (``memory``, ``redis`` ...)."""
        hist = self._latency.get(backend)
        if hist is None:
            with self._lock:
                hist = self._latency.setdefault(backend, Histogram())
        return hist

    # -- events off the hot path ---------------------------------------------------------

    def backend_error(self, backend: str, error: BaseException | str) -> None:
        kind = error if isinstance(error, str) else type(error).__name__
        with self._lock:
            key = (backend, kind)
            self._errors[key] = self._errors.get(key, 0) + 1

    def watch(self, name: str, source: Callable[[], dict[str, Any]]) -> None:
        """Read ``source()`` into every snapshot under ``name`` (breakers, stores)."""
        with self._lock:
            self._watched[name] = source

    # -- reading -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """A snapshot: decisions per rule, latency per backend, errors, sessions, watched."""
        with self._lock:
            rules = dict(self._rules)
            latency = dict(self._latency)
            errors = dict(self._errors)
            watched = dict(self._watched)
        return {
            "decisions": {name: c.as_dict() for name, c in sorted(rules.items())},
            "latency": {name: h.as_dict() for name, h in sorted(latency.items())},
            "backend_errors": {f"{b}:{k}": n for (b, k), n in sorted(errors.items())},
            "sessions": self.sessions.as_dict(),
            "watched": {name: source() for name, source in sorted(watched.items())},
        }

    def reset(self) -> None:
        """Set every count back to zero (tests, benchmarks); handles stay valid."""
        with self._lock:
            counters: list[RuleCounters | SessionCounters] = [*self._rules.values(), self.sessions]
            for c in counters:
                for name in c.__slots__:
                    setattr(c, name, 0)
            for hist in self._latency.values():
                hist.buckets = [0] * len(hist.buckets)
                hist.count = hist.sum_ns = 0
            self._errors.clear()


#: The process-wide registry every limiter records into by default.
METRICS = Metrics()

"""What the session executor makes of each call's outcome: counters, and one log line
per change of state (never one per request).

Logs (logger ``gatekeep.sessions``, fields in ``extra=``): writes failing, writes
succeeding again (a failover seen), reads served by a replica, reads back on the
primary, the store unreachable. Each call is judged under its own shard's
:class:`~gatekeep.breaker.CircuitBreaker` (passed in by the executor), or none.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..breaker import CircuitBreaker
from ..errors import BackendUnavailable, SessionWriteFailed
from ..metrics import Metrics
from ..outage import classify
from .logs import logger, scrub

__all__ = ["Outcomes"]


class _Trouble:
    """The log state of one shard (of its breaker) while something is wrong there."""

    __slots__ = ("failed_writes", "replica_since", "unreachable", "writes_failing_since")

    def __init__(self) -> None:
        self.writes_failing_since: float | None = None
        self.failed_writes = 0
        self.replica_since: float | None = None
        self.unreachable = False

    def quiet(self) -> bool:
        return (
            self.writes_failing_since is None
            and self.replica_since is None
            and not self.unreachable
        )


class Outcomes:
    """Counters and log state of one executor, shared by its threads and tasks; the
    log lines are per shard (``gatekeep_shard`` in ``extra=``: the breaker's name)."""

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics
        self._lock = threading.Lock()
        #: Plain counters (also in metrics snapshots, under ``watched``).
        self.counters: dict[str, Any] = {
            "primary_failures": 0,
            "replica_reads": 0,
            "write_failures": 0,
            "not_replicated": 0,
            "unreachable": 0,
        }
        #: Per breaker name (None: no breaker), only while something is to be logged.
        self._trouble: dict[str | None, _Trouble] = {}

    def _of(self, breaker: CircuitBreaker | None) -> _Trouble:
        """The shard's log state (made on first use; the caller holds the lock)."""
        name = None if breaker is None else breaker.name
        trouble = self._trouble.get(name)
        if trouble is None:
            trouble = self._trouble[name] = _Trouble()
        return trouble

    def failed(
        self, breaker: CircuitBreaker | None, ticket: int, exc: BaseException
    ) -> BaseException:
        """A primary call failed: re-raise what is not an outage, else return it."""
        if breaker is not None:
            verdict = breaker.failed(ticket, exc, scrub(f"{type(exc).__name__}: {exc}"))
        else:
            verdict = classify(exc)
        if verdict is None or not verdict.outage:
            raise exc
        self.counters["primary_failures"] += 1
        if self.metrics is not None:
            self.metrics.backend_error("sessions", exc)
        return exc

    def succeeded(
        self, breaker: CircuitBreaker | None, ticket: int, elapsed: float, writes: bool
    ) -> None:
        if breaker is not None:
            breaker.success(ticket, elapsed)
        if not self._trouble:
            return  # the fast path: nothing to log
        name = None if breaker is None else breaker.name
        with self._lock:
            trouble = self._trouble.get(name)
            if trouble is None:
                return
            now = time.monotonic()
            trouble.unreachable = False
            shard = _shard(breaker)
            if trouble.replica_since is not None:
                logger.info(
                    "gatekeep sessions: reads are served by the primary again "
                    "after %.3f s on a replica%s",
                    now - trouble.replica_since,
                    _on(shard),
                    extra={
                        "gatekeep_event": "session_primary_reads",
                        "gatekeep_outage_s": round(now - trouble.replica_since, 3),
                        "gatekeep_shard": shard,
                    },
                )
                trouble.replica_since = None
            if writes and trouble.writes_failing_since is not None:
                outage = now - trouble.writes_failing_since
                logger.warning(
                    "gatekeep sessions: writes succeed again (failover seen, or the primary "
                    "is back) after %.3f s; %d write(s) failed meanwhile%s",
                    outage,
                    trouble.failed_writes,
                    _on(shard),
                    extra={
                        "gatekeep_event": "session_failover_seen",
                        "gatekeep_outage_s": round(outage, 3),
                        "gatekeep_failed_writes": trouble.failed_writes,
                        "gatekeep_shard": shard,
                    },
                )
                trouble.writes_failing_since = None
                trouble.failed_writes = 0
            if trouble.quiet():
                del self._trouble[name]

    def write_failed(
        self, breaker: CircuitBreaker | None, cause: BaseException | None
    ) -> SessionWriteFailed:
        self.counters["write_failures"] += 1
        with self._lock:
            trouble = self._of(breaker)
            trouble.failed_writes += 1
            if trouble.writes_failing_since is None:
                trouble.writes_failing_since = time.monotonic()
                shard = _shard(breaker)
                logger.warning(
                    "gatekeep sessions: writes fail, no primary answers (%s)%s",
                    why(cause),
                    _on(shard),
                    extra={
                        "gatekeep_event": "session_writes_failing",
                        "gatekeep_reason": why(cause),
                        "gatekeep_shard": shard,
                    },
                )
        err = SessionWriteFailed(
            f"the session could not be saved: no Redis primary answered ({why(cause)})",
            retry_after=retry_after(breaker),
        )
        err.__cause__ = cause
        return err

    def read_failed(
        self, breaker: CircuitBreaker | None, cause: BaseException | None
    ) -> BaseException:
        self.counters["unreachable"] += 1
        with self._lock:
            trouble = self._of(breaker)
            if not trouble.unreachable:
                trouble.unreachable = True
                shard = _shard(breaker)
                logger.warning(
                    "gatekeep sessions: the store is unreachable, sessions load empty (%s)%s",
                    why(cause),
                    _on(shard),
                    extra={
                        "gatekeep_event": "session_store_unreachable",
                        "gatekeep_reason": why(cause),
                        "gatekeep_shard": shard,
                    },
                )
        if cause is not None:
            return cause
        return BackendUnavailable(
            "the session store is unavailable: the circuit breaker is open and there is no replica",
            retry_after=retry_after(breaker),
        )

    def from_replica(self, breaker: CircuitBreaker | None, replicas: dict[str, Any]) -> None:
        """A read was served by a replica (``replicas``: the replica choice's counters,
        copied into the executor's)."""
        c = self.counters
        c["replica_reads"] += 1
        by = c.setdefault("replica_reads_by_shard", {})
        label = "*" if breaker is None else breaker.name
        by[label] = by.get(label, 0) + 1
        if replicas:
            c["replicas"] = replicas
        name = None if breaker is None else breaker.name
        trouble = self._trouble.get(name)
        if trouble is not None and trouble.replica_since is not None:
            return
        with self._lock:
            trouble = self._of(breaker)
            if trouble.replica_since is None:
                trouble.replica_since = time.monotonic()
                shard = _shard(breaker)
                logger.warning(
                    "gatekeep sessions: the primary is away, sessions are read "
                    "from a replica (read-only: idle deadlines are not "
                    "extended, writes fail)%s",
                    _on(shard),
                    extra={"gatekeep_event": "session_replica_reads", "gatekeep_shard": shard},
                )


def _shard(breaker: CircuitBreaker | None) -> str | None:
    return None if breaker is None else breaker.name


def _on(shard: str | None) -> str:
    return f" [{shard}]" if shard else ""


def retry_after(breaker: CircuitBreaker | None) -> float:
    if breaker is not None:
        return max(1.0, breaker.retry_after())
    return 1.0


def why(exc: BaseException | None) -> str:
    if exc is None:
        return "the circuit breaker is open"
    return scrub(f"{type(exc).__name__}: {exc}")[:200]

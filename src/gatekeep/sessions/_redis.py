"""Session scripts on Redis: the primary first, a replica while it is away, durable writes.

:class:`RedisExecutor` runs each batch a flow yields (see :mod:`._engine`) on the
primary, in one round trip. When the primary cannot be reached (connection
refused or lost, a timeout, ``READONLY``, ``LOADING``, no primary known to the
Sentinels, an open circuit breaker):

- a batch that only reads, or whose every call has a read-only stand-in (a load
  that would extend the idle deadline has one: the same load without the touch),
  runs again as ``EVALSHA_RO`` on a replica (Sentinel). The idle deadline is not
  extended then; the next load or save that reaches a primary extends it;
- a batch that writes raises :class:`~gatekeep.errors.SessionWriteFailed`: the
  caller learns that nothing was saved (the middleware answers 503).

Why the primary first, and not reads from replicas by default: a replica lags,
so a request right after a save could read the session as it was before it
(and save a change computed from stale data over the newer one); a read-only
load also needs a second round trip to the primary to extend the idle deadline.
Primary first keeps every load one round trip, with the touch in it, and costs
nothing until the primary fails (figures in the README's "Availability" section).

Durable writes (``wait_replicas=N``): each write batch is followed, on the same
connection and in the same pipeline, by ``WAIT N <timeout>``; fewer
acknowledgements raise :class:`~gatekeep.errors.SessionNotReplicated`.

Logs (logger ``gatekeep.sessions``, fields in ``extra=``): one line per change
of state, never one per request: writes failing, writes succeeding again (a
failover seen), reads served by a replica, reads back on the primary, the store
unreachable.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from typing import Any

from ..backends._calls import Command, Replies, ScriptCall
from ..backends.redis import RedisBackend
from ..breaker import CircuitBreaker
from ..errors import BackendUnavailable, SessionNotReplicated, SessionWriteFailed
from ..flows import arun_flow, run_flow
from ..metrics import Metrics
from ..outage import classify, is_outage
from ._engine import Call, normalize, session_script
from .logs import logger, scrub

__all__ = ["ReplicaReplies", "RedisExecutor"]

#: The I/O one step of the executor's flow asks for: ``(batch, read_only, wait)``, a
#: script call of the backend (``wait``: WAIT for that many replicas, that long);
#: the flow yields these, is sent their replies, and returns the replies.
IOStep = tuple[list[ScriptCall], bool, "tuple[int, int] | None"]
IOFlow = Generator[IOStep, list[Any], list[Any]]


class ReplicaReplies(list[Any]):
    """Replies a replica gave (the primary could not be reached)."""

    from_replica = True


def needs_primary(calls: Sequence[Call]) -> bool:
    """Whether a batch writes something no replica could stand in for."""
    return any(not c.read_only and c.fallback is None for c in calls)


def _script_call(call: Call, now: int | None) -> ScriptCall:
    return (session_script(call.script), call.keys, ("" if now is None else now, *call.args))


#: The peek (``session_peek.lua``, the read of every read-only request) sent as plain
#: commands: ``TIME`` (unless the caller gave ``now``) and ``HGETALL``, pipelined in the
#: batch's one round trip. A read has nothing to keep atomic, and the two commands cost
#: the server a few µs where the script costs ~18 (Redis 7.0: a script's call and its
#: first ``redis.call`` are most of it). Not on a cluster (``TIME`` has no key: it would
#: go to another node), where the script goes.
PEEK = "session_peek"
_TIME, _HGETALL = Command.of("TIME"), Command.of("HGETALL")


def _batch(calls: list[Call], now: int | None, plain: bool) -> list[ScriptCall]:
    """The backend's calls for ``calls``: a script call each, or a peek's plain commands."""
    if not plain:
        return [_script_call(c, now) for c in calls]
    out: list[ScriptCall] = []
    for c in calls:
        if c.script == PEEK:
            if now is None:
                out.append((_TIME, (), ()))
            out.append((_HGETALL, c.keys, ()))
        else:
            out.append(_script_call(c, now))
    return out


def _joined(calls: list[Call], replies: list[Any], now: int | None) -> list[Any]:
    """One reply per call from :func:`_batch`'s replies: a peek's as its script gives it
    (the hash as HGETALL gives it, then now)."""
    out = []
    i = 0
    for c in calls:
        if c.script != PEEK:
            out.append(replies[i])
            i += 1
            continue
        clock: Any = now
        if now is None:
            clock = replies[i]
            i += 1
        out.append(_peeked(replies[i], clock))
        i += 1
    return out


def _peeked(fields: Any, clock: Any) -> Any:
    """HGETALL's reply (a flat list; a dict through redis-py's pipelines or RESP3), then
    now: ``clock`` as given, or TIME's reply (seconds, microseconds); an error as it is."""
    for reply in (clock, fields):
        if isinstance(reply, Exception):
            return reply
    flat = [x for kv in fields.items() for x in kv] if isinstance(fields, dict) else list(fields)
    flat.append(clock if type(clock) is int else int(clock[0]) * 1_000_000 + int(clock[1]))
    return flat


def _on_replica(call: Call) -> Call:
    if call.read_only:
        return call
    assert call.fallback is not None
    return call.fallback


def _check(replies: list[Any]) -> list[Any]:
    """Raise the first error among the replies: "not now" errors first, so a batch
    half refused by an out-of-memory primary counts as unavailable."""
    for reply in replies:
        if isinstance(reply, Exception):
            break
    else:
        return replies  # the usual case: no error at all
    for reply in replies:
        if isinstance(reply, Exception) and is_outage(reply):
            raise reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies  # pragma: no cover  (the first loop found one)


class RedisExecutor:
    """Runs the session scripts on Redis through a :class:`RedisBackend`.

    ``breaker``: a :class:`~gatekeep.breaker.CircuitBreaker` (e.g. a
    ``FailoverBackend``'s, shared with the limiters): while it is open, reads go
    straight to a replica and writes fail at once. ``wait_replicas`` /
    ``wait_timeout`` (seconds): durable writes, see the module doc.
    """

    def __init__(
        self,
        backend: RedisBackend,
        *,
        breaker: CircuitBreaker | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
        metrics: Metrics | None = None,
    ) -> None:
        self.backend = backend
        self.breaker = breaker
        self.wait_replicas = wait_replicas
        self.wait_ms = max(1, round(wait_timeout * 1000))
        self.metrics = metrics
        self._lock = threading.Lock()
        self._replica: dict[bool, bool] = {}
        #: Whether a peek may go as plain commands (not on a cluster); known on first use.
        self._plain: bool | None = None
        #: Plain counters (also in metrics snapshots, under ``watched``).
        self.counters = {
            "primary_failures": 0,
            "replica_reads": 0,
            "write_failures": 0,
            "not_replicated": 0,
            "unreachable": 0,
        }
        # state, for one log line per change
        self._writes_failing_since: float | None = None
        self._failed_writes = 0
        self._replica_since: float | None = None
        self._unreachable = False

    # -- one flow, two drivers --------------------------------------------------------------

    def _flow(self, calls: list[Call], now: int | None, sync: bool) -> IOFlow:
        """Every step of running one batch, without I/O: it yields the script call to
        make (see ``IOStep``) and is sent its replies, or has its exception thrown in."""
        plain = self._plain
        if plain is None:
            plain = self._plain = not self.backend.is_cluster
        split = plain and any(c.script == PEEK for c in calls)
        batch = _batch(calls, now, split)
        writes = needs_primary(calls)
        ticket = self._allow()
        cause: BaseException | None = None
        if ticket is not None:
            # only the breaker needs the elapsed time, and not where the async round
            # trip enforces the deadline itself (its clock discounts a stalled loop)
            timed = self.breaker is not None and (
                sync or not self.backend.times_out_async(self.breaker.deadline)
            )
            started = time.perf_counter() if timed else 0.0
            try:
                # a durable write: the scripts and WAIT on one connection, in one trip
                wait = (self.wait_replicas, self.wait_ms) if writes and self.wait_replicas else None
                replies = yield (batch, False, wait)
                acked = replies.acked if isinstance(replies, Replies) else -1
                if split:
                    replies = _joined(calls, replies, now)
                _check(replies)
            except BaseException as exc:
                cause = self._failed(ticket, exc)
            else:
                self._succeeded(ticket, time.perf_counter() - started if timed else 0.0, writes)
                return self._done(replies, acked, writes)
        if writes:
            raise self._write_failed(cause)
        if not self._has_replica(sync=sync):
            raise self._read_failed(cause)
        calls = [_on_replica(c) for c in calls]
        split = plain and any(c.script == PEEK for c in calls)
        try:
            replies = yield (_batch(calls, now, split), True, None)
            if split:
                replies = _joined(calls, replies, now)
            _check(replies)
        except BaseException as exc:
            if is_outage(exc):
                raise self._read_failed(exc) from None
            raise
        return self._from_replica(replies)

    def run(self, calls: list[Call], now: int | None) -> list[Any]:
        return run_flow(self._flow(calls, now, sync=True), self._io)

    def arun(self, calls: list[Call], now: int | None) -> Coroutine[Any, Any, list[Any]]:
        # not itself a coroutine: one frame less for every resumption after I/O
        return arun_flow(self._flow(calls, now, sync=False), self._aio)

    def _io(self, step: IOStep) -> list[Any]:
        batch, read_only, wait = step
        return self.backend.eval_batch(batch, read_only=read_only, wait=wait)

    def _aio(self, step: IOStep) -> Awaitable[list[Any]]:
        batch, read_only, wait = step
        return self.backend.aeval_batch(batch, read_only=read_only, wait=wait)

    async def aclose(self) -> None:
        """Close the backend's idle async connections (when the app shuts down)."""
        await self.backend.aclose()

    def _has_replica(self, *, sync: bool) -> bool:
        known = self._replica.get(sync)
        if known is None:
            b = self.backend
            try:
                known = (b.replica is not b.client) if sync else (b.areplica is not b.aclient)
            except RuntimeError:  # only a sync (or only an async) client was given
                known = False
            self._replica[sync] = known
        return known

    # -- outcomes (no I/O) -----------------------------------------------------------------

    def _allow(self) -> int | None:
        return 0 if self.breaker is None else self.breaker.allow()

    def _failed(self, ticket: int, exc: BaseException) -> BaseException:
        """A primary call failed: re-raise what is not an outage, else return it."""
        if self.breaker is not None:
            verdict = self.breaker.failed(ticket, exc, scrub(f"{type(exc).__name__}: {exc}"))
        else:
            verdict = classify(exc)
        if verdict is None or not verdict.outage:
            raise exc
        self.counters["primary_failures"] += 1
        if self.metrics is not None:
            self.metrics.backend_error("sessions", exc)
        return exc

    def _succeeded(self, ticket: int, elapsed: float, writes: bool) -> None:
        if self.breaker is not None:
            self.breaker.success(ticket, elapsed)
        if (
            self._writes_failing_since is None
            and self._replica_since is None
            and not self._unreachable
        ):
            return  # the fast path: nothing to log
        with self._lock:
            now = time.monotonic()
            self._unreachable = False
            if self._replica_since is not None:
                logger.info(
                    "gatekeep sessions: reads are served by the primary again "
                    "after %.3f s on a replica",
                    now - self._replica_since,
                    extra={
                        "gatekeep_event": "session_primary_reads",
                        "gatekeep_outage_s": round(now - self._replica_since, 3),
                    },
                )
                self._replica_since = None
            if writes and self._writes_failing_since is not None:
                outage = now - self._writes_failing_since
                logger.warning(
                    "gatekeep sessions: writes succeed again (failover seen, or the primary "
                    "is back) after %.3f s; %d write(s) failed meanwhile",
                    outage,
                    self._failed_writes,
                    extra={
                        "gatekeep_event": "session_failover_seen",
                        "gatekeep_outage_s": round(outage, 3),
                        "gatekeep_failed_writes": self._failed_writes,
                    },
                )
                self._writes_failing_since = None
                self._failed_writes = 0

    def _write_failed(self, cause: BaseException | None) -> SessionWriteFailed:
        self.counters["write_failures"] += 1
        with self._lock:
            self._failed_writes += 1
            if self._writes_failing_since is None:
                self._writes_failing_since = time.monotonic()
                logger.warning(
                    "gatekeep sessions: writes fail, no primary answers (%s)",
                    _why(cause),
                    extra={
                        "gatekeep_event": "session_writes_failing",
                        "gatekeep_reason": _why(cause),
                    },
                )
        err = SessionWriteFailed(
            f"the session could not be saved: no Redis primary answered ({_why(cause)})",
            retry_after=self._retry_after(),
        )
        err.__cause__ = cause
        return err

    def _read_failed(self, cause: BaseException | None) -> BaseException:
        self.counters["unreachable"] += 1
        with self._lock:
            if not self._unreachable:
                self._unreachable = True
                logger.warning(
                    "gatekeep sessions: the store is unreachable, sessions load empty (%s)",
                    _why(cause),
                    extra={
                        "gatekeep_event": "session_store_unreachable",
                        "gatekeep_reason": _why(cause),
                    },
                )
        if cause is not None:
            return cause
        return BackendUnavailable(
            "the session store is unavailable: the circuit breaker is open and there is no replica",
            retry_after=self._retry_after(),
        )

    def _from_replica(self, replies: list[Any]) -> list[Any]:
        self.counters["replica_reads"] += 1
        if self._replica_since is None:
            with self._lock:
                if self._replica_since is None:
                    self._replica_since = time.monotonic()
                    logger.warning(
                        "gatekeep sessions: the primary is away, sessions are read "
                        "from a replica (read-only: idle deadlines are not "
                        "extended, writes fail)",
                        extra={"gatekeep_event": "session_replica_reads"},
                    )
        return ReplicaReplies(normalize(r) for r in replies)

    def _done(self, replies: list[Any], acked: int, writes: bool) -> list[Any]:
        if writes and self.wait_replicas and acked < self.wait_replicas:
            self.counters["not_replicated"] += 1
            raise SessionNotReplicated(
                f"the session was saved on the primary, but {acked} of {self.wait_replicas} "
                f"replica(s) acknowledged it within {self.wait_ms} ms: a failover now could "
                "lose it",
                acknowledged=max(acked, 0),
                retry_after=1.0,
            )
        return [normalize(r) for r in replies]

    def _retry_after(self) -> float:
        if self.breaker is not None:
            return max(1.0, self.breaker.retry_after())
        return 1.0

    def watch_source(self) -> Callable[[], dict[str, Any]]:
        """The counters, for :meth:`gatekeep.metrics.Metrics.watch` (without keeping
        this executor alive)."""
        ref = weakref.ref(self)

        def read() -> dict[str, Any]:
            ex = ref()
            counters = dict(ex.counters) if ex is not None else {}
            return {"kind": "sessions", **counters}

        return read


def _why(exc: BaseException | None) -> str:
    if exc is None:
        return "the circuit breaker is open"
    return scrub(f"{type(exc).__name__}: {exc}")[:200]

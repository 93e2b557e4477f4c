"""Session scripts on Redis: the primary first, a replica while it is away, durable writes.

:class:`RedisExecutor` runs each batch a flow yields (see :mod:`._engine`) on the
primary, in one round trip. When the primary cannot be reached (connection
refused or lost, a timeout, ``READONLY``, ``LOADING``, no primary known to the
Sentinels, an open circuit breaker):

- a batch that only reads, or whose every call has a read-only stand-in (a load
  that would extend the idle deadline has one: the same load without the touch),
  runs again as ``EVALSHA_RO`` on a replica: on Sentinel and Cluster every replica
  of the shard in turn, within the breaker's deadline (:mod:`gatekeep.backends.replicas`),
  else a replica client given. The idle deadline is not extended then; the next load
  or save that reaches a primary extends it;
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

Each batch is judged under its shard's circuit breaker (:mod:`gatekeep.shards`: one
per Cluster primary): a failing shard sends only its own sessions to replicas and
fails only their writes. Counters and logs: :mod:`._outcomes`.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from typing import Any, NamedTuple

from ..backends._calls import Command, Replies, ScriptCall
from ..backends._replica_io import ReplicaReads
from ..backends.connect import DEFAULT_TIMEOUT
from ..backends.redis import RedisBackend
from ..breaker import CircuitBreaker
from ..errors import SessionNotReplicated
from ..flows import arun_flow, run_flow
from ..metrics import Metrics
from ..outage import is_outage
from ..shards import ShardBreakers
from ._engine import Call, normalize, session_script
from ._outcomes import Outcomes

__all__ = ["ReplicaReplies", "RedisExecutor"]

#: The I/O one step of the executor's flow asks for: ``(batch, read_only, wait)``, a
#: script call of the backend (``wait``: WAIT for that many replicas, that long);
#: the flow yields these, is sent their replies, and returns the replies.
IOStep = tuple[list[ScriptCall], bool, "tuple[int, int] | None"]


class ReplicaStep(NamedTuple):
    """The I/O of a read from a replica: ``batch`` (read-only), for ``key``'s shard,
    within ``deadline`` seconds."""

    batch: list[ScriptCall]
    key: str
    deadline: float


IOFlow = Generator["IOStep | ReplicaStep", list[Any], list[Any]]


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

    ``breakers``: the :class:`~gatekeep.shards.ShardBreakers` of a deployment (e.g. a
    ``FailoverBackend``'s, shared with the limiters), or ``breaker``: one
    :class:`~gatekeep.breaker.CircuitBreaker` (on a cluster, each shard gets one like
    it). A batch is judged under the breaker of its first key's shard: while that is
    open, its reads go straight to a replica and its writes fail at once; sessions on
    the other shards load and save as usual. ``wait_replicas`` / ``wait_timeout``
    (seconds): durable writes, see the module doc.
    """

    def __init__(
        self,
        backend: RedisBackend,
        *,
        breaker: CircuitBreaker | None = None,
        breakers: ShardBreakers | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
        metrics: Metrics | None = None,
    ) -> None:
        self.backend = backend
        if breakers is None and breaker is not None:
            breakers = ShardBreakers(breaker, backend.shard if backend.is_cluster else None)
        #: One breaker per shard (None: no breaker, every call tries the primary).
        self.breakers = breakers
        #: The breaker of a deployment with one shard (and the settings of every shard's).
        self.breaker = None if breakers is None else breakers.default
        self._sharded = breakers is not None and breakers.sharded
        self.wait_replicas = wait_replicas
        self.wait_ms = max(1, round(wait_timeout * 1000))
        self.metrics = metrics
        self._replica: dict[bool, bool] = {}
        #: Reads from every replica of the shard (Sentinel, Cluster), and whether they
        #: apply (per driver: True is sync), known on the first read from a replica.
        self.replicas: ReplicaReads = backend.replica_reads
        self._shard_replicas: dict[bool, bool] = {}
        #: Whether a peek may go as plain commands (not on a cluster); known on first use.
        self._plain: bool | None = None
        self.outcomes = Outcomes(metrics)
        #: Plain counters (also in metrics snapshots, under ``watched``).
        self.counters = self.outcomes.counters

    def breaker_for(self, calls: Sequence[Call], sync: bool = True) -> CircuitBreaker | None:
        """The breaker a batch is judged under: its first key's shard's (see
        :mod:`gatekeep.shards`; a batch whose keys span shards, a save that moves a
        user's index, is one round trip, judged with its session's shard)."""
        if not self._sharded:
            return self.breaker
        assert self.breakers is not None
        return self.breakers.for_key(calls[0].keys[0], not sync)

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
        breaker = self.breaker if not self._sharded else self.breaker_for(calls, sync)
        ticket = 0 if breaker is None else breaker.allow()
        out = self.outcomes
        cause: BaseException | None = None
        if ticket is not None:
            # only the breaker needs the elapsed time, and not where the async round
            # trip enforces the deadline itself (its clock discounts a stalled loop)
            timed = breaker is not None and (
                sync or not self.backend.times_out_async(breaker.deadline)
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
                cause = out.failed(breaker, ticket, exc)
            else:
                out.succeeded(
                    breaker, ticket, time.perf_counter() - started if timed else 0.0, writes
                )
                return self._done(replies, acked, writes)
        if writes:
            raise out.write_failed(breaker, cause)
        if not self._has_replica(sync=sync):
            raise out.read_failed(breaker, cause)
        calls = [_on_replica(c) for c in calls]
        split = plain and any(c.script == PEEK for c in calls)
        try:
            step = ReplicaStep(_batch(calls, now, split), calls[0].keys[0], self._deadline(breaker))
            replies = yield step
            if split:
                replies = _joined(calls, replies, now)
            _check(replies)
        except BaseException as exc:
            if is_outage(exc):
                raise out.read_failed(breaker, exc) from None
            raise
        out.from_replica(breaker, self.replicas.counters)
        return ReplicaReplies(normalize(r) for r in replies)

    def run(self, calls: list[Call], now: int | None) -> list[Any]:
        return run_flow(self._flow(calls, now, sync=True), self._io)

    def arun(self, calls: list[Call], now: int | None) -> Coroutine[Any, Any, list[Any]]:
        # not itself a coroutine: one frame less for every resumption after I/O
        return arun_flow(self._flow(calls, now, sync=False), self._aio)

    def _io(self, step: IOStep | ReplicaStep) -> list[Any]:
        if isinstance(step, ReplicaStep):
            if self._shard_replicas[True]:
                return self.replicas.read(step.key, step.batch, step.deadline)
            return self.backend.eval_batch(step.batch, read_only=True)
        batch, read_only, wait = step
        return self.backend.eval_batch(batch, read_only=read_only, wait=wait)

    def _aio(self, step: IOStep | ReplicaStep) -> Awaitable[list[Any]]:
        if isinstance(step, ReplicaStep):
            if self._shard_replicas[False]:
                return self.replicas.aread(step.key, step.batch, step.deadline)
            return self.backend.aeval_batch(step.batch, read_only=True)
        batch, read_only, wait = step
        return self.backend.aeval_batch(batch, read_only=read_only, wait=wait)

    async def aclose(self) -> None:
        """Close the backend's idle async connections (when the app shuts down)."""
        await self.backend.aclose()

    def _has_replica(self, *, sync: bool) -> bool:
        """Whether a read can go to a replica: every replica of the shard (Sentinel,
        Cluster: :mod:`gatekeep.backends.replicas`), or a replica client given."""
        known = self._replica.get(sync)
        if known is None:
            shard = self._shard_replicas[sync] = self.replicas.applies(sync)
            b = self.backend
            try:
                known = shard or (
                    (b.replica is not b.client) if sync else (b.areplica is not b.aclient)
                )
            except RuntimeError:  # only a sync (or only an async) client was given
                known = False
            self._replica[sync] = known
        return known

    def _deadline(self, breaker: CircuitBreaker | None) -> float:
        """Seconds a read from replicas may take: the breaker's deadline."""
        if breaker is not None:
            return breaker.deadline
        return self.backend.timeout or DEFAULT_TIMEOUT

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

    def watch_source(self) -> Callable[[], dict[str, Any]]:
        """The counters, for :meth:`gatekeep.metrics.Metrics.watch` (without keeping
        this executor alive)."""
        ref = weakref.ref(self)

        def read() -> dict[str, Any]:
            ex = ref()
            counters = dict(ex.counters) if ex is not None else {}
            for name, value in counters.items():  # a snapshot: nested counters copied too
                if isinstance(value, dict):
                    counters[name] = {
                        k: dict(v) if isinstance(v, dict) else v for k, v in value.items()
                    }
            return {"kind": "sessions", **counters}

        return read

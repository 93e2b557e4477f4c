"""``Rule(..., concurrency=N)``: a slot held for the whole response, taken in the same call
as the request's rate limits.

A request whose rules have concurrency limits makes one script call, ``lua/_leased.lua``
(the rate limits of every rule and one lease per concurrency limit, all or nothing:
one round trip, as without leases). The lease sets' keys carry the identity's hash tag,
so one rule's limits and lease sit in one cluster slot. An allowed request holds its
lease (renewed by the policy's heartbeat while the response runs) until its response
ends (the body sent, the client gone, or the app failed); the middleware then releases
it: one more round trip per concurrency rule, after the response is sent, outside the
request's latency. A release that fails leaves the slot to lapse with its lease.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Generator, Sequence
from typing import Any, NamedTuple

from ..algorithms import HIT
from ..algorithms.concurrency import ACQUIRE, PEEK, RELEASE, RENEW, run_concurrency, run_leased
from ..backends._split import slot_groups
from ..backends.base import Plan
from ..backends.failover import FailoverBackend
from ..backends.leases import LeaseCall, alease_run, lease_run
from ..backends.memory import MemoryStore
from ..backends.policies import allow_all
from ..backends.redis import RedisBackend
from ..concurrency import lease_id
from ..heartbeat import AsyncRenewer, Renewer, watch_source
from ..metrics import Metrics
from ..scripts import concurrency_script, leased_script
from .batch import Batch, LeaseSpec

__all__ = ["Held", "PolicyLeases", "leased_call", "split_flow"]

logger = logging.getLogger("gatekeep.ratelimit")


class Held(NamedTuple):
    """The leases one request holds: its lease id, and each lease set with its limit."""

    id: str
    keys: tuple[str, ...]
    specs: tuple[LeaseSpec, ...]


def leased_call(batch: Batch, keys: Sequence[str], lid: str) -> LeaseCall:
    """The one call of a request with leases: its rate limits and a lease on each set."""
    plan = batch.plan
    n = len(plan.rates)
    rate_keys, sets = list(keys[:n]), list(keys[n:])
    specs = [(s.limit, s.ttl_us) for s in batch.leases]

    def twin(store: MemoryStore, now: int, failover: FailoverBackend | None) -> list[int]:
        p, leases = plan, specs
        if failover is not None and failover.instances > 1:
            p = failover.share(plan)
            leases = [(max(1, limit // failover.instances), ttl) for limit, ttl in specs]
        return run_leased(p.twin, store, rate_keys, now, HIT, 1, p.params, sets, leases, lid)

    args = ("", HIT, 1, *plan.flat, *(x for s in specs for x in s), len(sets), lid)
    open_reply = allow_all(plan, HIT, 1)
    for limit, _ in specs:
        open_reply += (1, limit - 1, 0, 0)
    return LeaseCall(leased_script(plan.algorithm.name), keys, args, None, twin, open_reply)


def _one(mode: str, lid: str, key: str, spec: LeaseSpec) -> LeaseCall:
    def twin(store: MemoryStore, now: int, failover: FailoverBackend | None) -> list[int]:
        limit = spec.limit if failover is None else max(1, spec.limit // failover.instances)
        return run_concurrency(store, key, now, mode, limit, spec.ttl_us, lid)

    args = ("", mode, 1, spec.limit, spec.ttl_us, lid)
    return LeaseCall(concurrency_script(), (key,), args, None, twin, [1, spec.limit - 1, 0, 0])


#: A step of :func:`split_flow`: a lease call, or a limiter call ``(plan, keys, mode)``.
Step = LeaseCall | tuple[Plan, list[str], str]


def split_flow(batch: Batch, keys: Sequence[str], lid: str) -> Generator[Step, Any, list[int]]:
    """:func:`leased_call`'s reply made of several calls, for a Redis Cluster where the
    request's keys sit in several slots (rules keyed by different identities): each lease
    taken in turn, then the rates (split by slot themselves, see ``backends/_split``);
    what was taken is released when a later part denies. Not atomic: in between, another
    request may see a slot or a token briefly taken."""
    plan = batch.plan
    n = len(plan.rates)
    rate_keys, sets = list(keys[:n]), list(keys[n:])
    replies: list[list[int]] = []
    for key, spec in zip(sets, batch.leases, strict=True):
        reply = yield _one(ACQUIRE, lid, key, spec)
        replies.append(reply)
        if reply[0] != 1:
            break
    full = replies[-1][0] != 1
    if full:
        for key, spec in zip(sets, batch.leases[: len(replies) - 1], strict=False):
            yield _one(RELEASE, lid, key, spec)
        for key, spec in zip(sets[len(replies) :], batch.leases[len(replies) :], strict=True):
            replies.append((yield _one(PEEK, lid, key, spec)))
    rates: list[int] = (yield (plan, rate_keys, PEEK if full else HIT)) if n else []
    if not full and not all(rates[i] == 1 for i in range(0, len(rates), 4)):
        for key, spec in zip(sets, batch.leases, strict=True):
            yield _one(RELEASE, lid, key, spec)
    return rates + [x for reply in replies for x in reply]


class PolicyLeases:
    """The leases a policy's requests hold: taken, renewed, released."""

    def __init__(self, backend: Any, metrics: Metrics | None = None) -> None:
        self.backend = backend
        every = 10.0  # at most; the shortest held lease's third when shorter
        self._renewer: Renewer[Held] = Renewer(self._renew, every, self._lost)
        self._arenewer: AsyncRenewer[Held] = AsyncRenewer(self._arenew, every, self._lost)
        self._metrics = metrics  # watched from the first held lease on (see _watch)
        #: Leases whose renewal found them lapsed.
        self.lost = 0

    def new_id(self) -> str:
        return lease_id()

    def split(self, keys: Sequence[str]) -> bool:
        """Whether a call on ``keys`` must be split: a cluster, and keys in several slots."""
        backend = self.backend
        if isinstance(backend, FailoverBackend):
            backend = backend.primary
        return (
            isinstance(backend, RedisBackend)
            and backend.is_cluster
            and len(slot_groups(list(keys))) > 1
        )

    def io(self, step: Step) -> list[int]:
        """One step of :func:`split_flow`, blocking."""
        if isinstance(step, LeaseCall):
            return lease_run(self.backend, step)
        plan, keys, mode = step
        return self.backend.limit(plan, keys, None, mode, 1)  # type: ignore[no-any-return]

    def aio(self, step: Step) -> Awaitable[list[int]]:
        if isinstance(step, LeaseCall):
            return alease_run(self.backend, step)
        plan, keys, mode = step
        return self.backend.alimit(plan, keys, None, mode, 1)  # type: ignore[no-any-return]

    def held(self, batch: Batch, keys: Sequence[str], lid: str) -> Held:
        return Held(lid, tuple(keys[len(batch.plan.rates) :]), batch.leases)

    @property
    def held_now(self) -> int:
        """Requests holding slots (and renewed) in this process now."""
        return len(self._renewer) + len(self._arenewer)

    @property
    def renewals(self) -> int:
        """Renewals made by the heartbeat so far (sync and async holders)."""
        return self._renewer.renewals + self._arenewer.renewals

    def _watch(self) -> None:
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            metrics.watch("middleware:leases", watch_source(self._renewer, self._arenewer))

    def hold(self, held: Held) -> None:
        if self._metrics is not None:
            self._watch()
        # the shortest lease ever held sets the beat (a longer one is renewed early)
        self._renewer.every = min(self._renewer.every, _beat(held))
        self._renewer.add(held)

    def ahold(self, held: Held) -> None:
        if self._metrics is not None:
            self._watch()
        self._arenewer.every = min(self._arenewer.every, _beat(held))
        self._arenewer.add(held)

    def release(self, held: Held) -> None:
        """Give the slots back (one round trip per lease set); never raises. Also for a
        slot taken by the async path and released from a thread (Django closes a
        streaming response with ``sync_to_async``)."""
        self._renewer.discard(held)
        self._arenewer.forget(held)
        for key, spec in zip(held.keys, held.specs, strict=True):
            try:
                lease_run(self.backend, _one(RELEASE, held.id, key, spec))
            except Exception as exc:
                _release_failed(exc)

    async def arelease(self, held: Held) -> None:
        self._arenewer.discard(held)
        for key, spec in zip(held.keys, held.specs, strict=True):
            try:
                await alease_run(self.backend, _one(RELEASE, held.id, key, spec))
            except Exception as exc:
                _release_failed(exc)

    def _renew(self, held: Held) -> bool:
        kept = True
        for key, spec in zip(held.keys, held.specs, strict=True):
            kept = lease_run(self.backend, _one(RENEW, held.id, key, spec))[0] == 1 and kept
        return kept

    async def _arenew(self, held: Held) -> bool:
        kept = True
        for key, spec in zip(held.keys, held.specs, strict=True):
            reply = await alease_run(self.backend, _one(RENEW, held.id, key, spec))
            kept = reply[0] == 1 and kept
        return kept

    def _lost(self, held: Held) -> None:
        self.lost += 1
        logger.warning("gatekeep: a request's lease %s lapsed before it was renewed", held.id)


def _release_failed(exc: Exception) -> None:
    logger.warning(
        "gatekeep: releasing a request's slot failed (%s: %s); it frees when its lease lapses",
        type(exc).__name__,
        exc,
    )


def _beat(held: Held) -> float:
    """Seconds between renewals of ``held``: a third of its shortest lease."""
    return min(s.ttl_us for s in held.specs) / 3_000_000

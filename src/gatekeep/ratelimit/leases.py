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
from collections.abc import Sequence
from typing import Any, NamedTuple

from ..algorithms import HIT
from ..algorithms.concurrency import RELEASE, RENEW, run_concurrency, run_leased
from ..backends.failover import FailoverBackend
from ..backends.leases import LeaseCall, alease_run, lease_run
from ..backends.memory import MemoryStore
from ..backends.policies import allow_all
from ..concurrency import lease_id
from ..heartbeat import AsyncRenewer, Renewer
from ..scripts import concurrency_script, leased_script
from .batch import Batch, LeaseSpec

__all__ = ["Held", "PolicyLeases", "leased_call"]

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


def _one(mode: str, held: Held, key: str, spec: LeaseSpec) -> LeaseCall:
    def twin(store: MemoryStore, now: int, failover: FailoverBackend | None) -> list[int]:
        return run_concurrency(store, key, now, mode, spec.limit, spec.ttl_us, held.id)

    args = ("", mode, 1, spec.limit, spec.ttl_us, held.id)
    return LeaseCall(concurrency_script(), (key,), args, None, twin, [1, spec.limit, 0, 0])


class PolicyLeases:
    """The leases a policy's requests hold: taken, renewed, released."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        every = 10.0  # replaced by the shortest lease's third on first use
        self._renewer: Renewer[Held] = Renewer(self._renew, every, self._lost)
        self._arenewer: AsyncRenewer[Held] = AsyncRenewer(self._arenew, every, self._lost)
        #: Leases whose renewal found them lapsed.
        self.lost = 0

    def new_id(self) -> str:
        return lease_id()

    def held(self, batch: Batch, keys: Sequence[str], lid: str) -> Held:
        return Held(lid, tuple(keys[len(batch.plan.rates) :]), batch.leases)

    def hold(self, held: Held) -> None:
        self._renewer.every = min(s.ttl_us for s in held.specs) / 3_000_000
        self._renewer.add(held)

    def ahold(self, held: Held) -> None:
        self._arenewer.every = min(s.ttl_us for s in held.specs) / 3_000_000
        self._arenewer.add(held)

    def release(self, held: Held) -> None:
        """Give the slots back (one round trip per lease set); never raises."""
        self._renewer.discard(held)
        for key, spec in zip(held.keys, held.specs, strict=True):
            try:
                lease_run(self.backend, _one(RELEASE, held, key, spec))
            except Exception as exc:
                _release_failed(exc)

    async def arelease(self, held: Held) -> None:
        self._arenewer.discard(held)
        for key, spec in zip(held.keys, held.specs, strict=True):
            try:
                await alease_run(self.backend, _one(RELEASE, held, key, spec))
            except Exception as exc:
                _release_failed(exc)

    def _renew(self, held: Held) -> bool:
        kept = True
        for key, spec in zip(held.keys, held.specs, strict=True):
            kept = lease_run(self.backend, _one(RENEW, held, key, spec))[0] == 1 and kept
        return kept

    async def _arenew(self, held: Held) -> bool:
        kept = True
        for key, spec in zip(held.keys, held.specs, strict=True):
            reply = await alease_run(self.backend, _one(RENEW, held, key, spec))
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

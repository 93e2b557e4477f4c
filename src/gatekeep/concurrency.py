"""``ConcurrencyLimiter`` and ``AsyncConcurrencyLimiter``: at most N in flight per key.

>>> limiter = ConcurrencyLimiter(2)                  # in-process; pass backend= for Redis
>>> with limiter.slot("export:42"):
...     pass                                          # at most 2 of these at once, per key

Each holder takes a *lease* (``lua/concurrency.lua``: one sorted set per key, lease id
-> when it lapses, on the server's clock), renews it while it runs (a heartbeat every
``renew_every`` seconds, a third of ``ttl`` by default) and releases it at the end. A
holder that dies without releasing (SIGKILL, a lost host) frees its slot when its lease
lapses: ``ttl`` seconds after its last renewal, never later. Acquire is one round trip,
release one, renewals one per beat per held lease, off the holder's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

from .algorithms.concurrency import ACQUIRE, PEEK, RELEASE, RENEW, run_concurrency
from .backends.base import Backend
from .backends.failover import FailoverBackend
from .backends.leases import LeaseCall, alease_run, lease_run
from .backends.memory import MemoryBackend, MemoryStore
from .decision import Decision
from .errors import GatekeepError
from .heartbeat import AsyncRenewer, Renewer, watch_source
from .keys import make_prefix, tag
from .metrics import METRICS, Metrics
from .rates import Rate
from .scripts import concurrency_script

__all__ = [
    "AsyncConcurrencyLimiter",
    "AsyncSlot",
    "ConcurrencyLimitExceeded",
    "ConcurrencyLimiter",
    "Lease",
    "Slot",
    "lease_id",
]

logger = logging.getLogger("gatekeep.concurrency")

#: The suffix of a lease set's key, after the caller's tagged key.
SUFFIX = ":cc"


class ConcurrencyLimitExceeded(GatekeepError):
    """No slot was free for ``key`` (``decision`` says how many are held, and
    ``retry_after`` when the first lease lapses at the latest)."""

    def __init__(self, key: str, decision: Decision) -> None:
        super().__init__(f"all {decision.limit} slots of {key!r} are in use")
        self.key = key
        self.decision = decision


class Lease(NamedTuple):
    """One held slot: its id, the lease set's Redis key, the limit and the TTL (µs)."""

    id: str
    key: str
    limit: int
    ttl_us: int


_ids = itertools.count(1)
_process: tuple[int, str] = (0, "")


def lease_id() -> str:
    """A new lease id, ``host:pid:token:n``: unique across hosts and forks, and saying
    (to ``gatekeep inspect``) which process holds the slot."""
    global _process
    pid = os.getpid()
    if _process[0] != pid:  # first use, or a forked child
        _process = (pid, f"{socket.gethostname()[:32]}:{pid}:{secrets.token_hex(3)}")
    return f"{_process[1]}:{next(_ids)}"


class BaseConcurrencyLimiter:
    """Configuration and the I/O-free half of every call (keys, script calls, decisions)."""

    def __init__(
        self,
        limit: int,
        *,
        backend: Backend | None = None,
        ttl: float = 30.0,
        renew_every: float | None = None,
        prefix: str = "",
        name: str = "concurrency",
        metrics: Metrics | None = METRICS,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an int >= 1 (slots per key), got {limit!r}")
        if not isinstance(ttl, (int, float)) or not 0.01 <= ttl <= 86_400:
            raise ValueError(f"ttl must be between 0.01 and 86400 seconds, got {ttl!r}")
        every = ttl / 3 if renew_every is None else renew_every
        if not isinstance(every, (int, float)) or not 0 < every < ttl:
            raise ValueError(f"renew_every must be > 0 and < ttl ({ttl}), got {renew_every!r}")
        self.limit = limit
        self.ttl_us = round(ttl * 1_000_000)
        self.renew_every = float(every)
        self.backend: Backend = MemoryBackend() if backend is None else backend
        self.prefix = make_prefix(prefix)
        self.name = name
        #: The limit as a :class:`Rate` (``limit`` per lease TTL), for decisions and headers.
        self.rate = Rate(limit, self.ttl_us)
        #: Leases whose renewal found them lapsed (their slot may be another's now).
        self.lost = 0
        self._counters = None if metrics is None else metrics.rule(name)
        self._metrics = metrics
        self._renewer: Renewer[Lease] | AsyncRenewer[Lease]  # the shell's heartbeat

    def lease_key(self, key: str) -> str:
        """The Redis key of ``key``'s lease set (hash-tagged like the limiter's keys)."""
        if type(key) is not str or not key:
            raise ValueError(f"a concurrency key must be a non-empty string, got {key!r}")
        return self.prefix + tag(key) + SUFFIX

    def _call(self, mode: str, lease: Lease) -> LeaseCall:
        key, limit, ttl, lid = lease.key, lease.limit, lease.ttl_us, lease.id

        def twin(store: MemoryStore, now: int, failover: FailoverBackend | None) -> list[int]:
            share = limit if failover is None else max(1, limit // failover.instances)
            return run_concurrency(store, key, now, mode, share, ttl, lid)

        args = ("", mode, 1, limit, ttl, lid)
        return LeaseCall(concurrency_script(), (key,), args, None, twin, [1, limit - 1, 0, 0])

    @property
    def held(self) -> int:
        """Leases this limiter holds (and renews) in this process."""
        return len(self._renewer)

    @property
    def renewals(self) -> int:
        """Lease renewals made by the heartbeat so far."""
        return self._renewer.renewals

    def _waited(self, decision: Decision, deadline: float) -> float | None:
        """After a denied acquire: seconds to sleep before trying again, or None when
        ``deadline`` has passed (polling: a slot frees when a holder releases it, which
        no script can announce)."""
        left = deadline - time.monotonic()
        return None if left <= 0 else min(left, 0.05, max(0.001, decision.retry_after))

    def _decided(self, reply: list[int], counted: bool = True) -> Decision:
        decision = Decision.from_reply((self.rate,), reply)
        if counted and self._counters is not None:
            if decision.allowed:
                self._counters.allowed += 1
            else:
                self._counters.denied += 1
        return decision

    def _lost(self, lease: Lease) -> None:
        self.lost += 1
        logger.warning(
            "gatekeep: the lease %s on %s lapsed before it was renewed; its slot may be "
            "another holder's now (renew_every %.3g s, ttl %.3g s)",
            lease.id,
            lease.key,
            self.renew_every,
            lease.ttl_us / 1e6,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.limit}, ttl={self.ttl_us / 1e6:g}, "
            f"backend={self.backend!r})"
        )


class Slot:
    """A slot taken (``acquired``) or not, by :meth:`ConcurrencyLimiter.acquire`."""

    def __init__(self, limiter: ConcurrencyLimiter, lease: Lease, decision: Decision) -> None:
        self.lease = lease
        self.decision = decision
        self.acquired = decision.allowed
        self._limiter: ConcurrencyLimiter | None = limiter if decision.allowed else None

    def release(self) -> None:
        """Give the slot back (once; a second call does nothing)."""
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release(self.lease)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ConcurrencyLimiter(BaseConcurrencyLimiter):
    """At most ``limit`` holders per key at once, across every process sharing ``backend``.

    ``ttl``: seconds a lease lasts unless renewed (a dead holder's slot frees then);
    ``renew_every``: the heartbeat (``ttl / 3`` by default).
    """

    def __init__(self, limit: int, **options: Any) -> None:
        super().__init__(limit, **options)
        self._renewer: Renewer[Lease] = Renewer(self._renew, self.renew_every, self._lost)
        if self._metrics is not None:
            self._metrics.watch(f"{self.name}:leases", watch_source(self._renewer))

    def acquire(self, key: str, *, wait: float = 0.0) -> Slot:
        """Take a slot of ``key`` if one is free (polling up to ``wait`` seconds): a
        :class:`Slot`, ``acquired`` or not, to ``release()`` (or use as a ``with``)."""
        deadline = time.monotonic() + wait
        while True:
            lease = Lease(lease_id(), self.lease_key(key), self.limit, self.ttl_us)
            decision = self._decided(lease_run(self.backend, self._call(ACQUIRE, lease)))
            if decision.allowed:
                self._renewer.add(lease)
                return Slot(self, lease, decision)
            pause = self._waited(decision, deadline)
            if pause is None:
                return Slot(self, lease, decision)
            time.sleep(pause)

    @contextlib.contextmanager
    def slot(self, key: str, *, wait: float = 0.0) -> Iterator[Slot]:
        """``with limiter.slot(key):`` holds a slot for the block; raises
        :class:`ConcurrencyLimitExceeded` when none is free (within ``wait`` seconds)."""
        held = self.acquire(key, wait=wait)
        if not held.acquired:
            raise ConcurrencyLimitExceeded(key, held.decision)
        try:
            yield held
        finally:
            held.release()

    def release(self, lease: Lease) -> Decision:
        """Give ``lease`` back: one round trip."""
        self._renewer.discard(lease)
        return self._decided(lease_run(self.backend, self._call(RELEASE, lease)), False)

    def peek(self, key: str) -> Decision:
        """Would a slot of ``key`` be free now? Takes nothing."""
        lease = Lease("", self.lease_key(key), self.limit, self.ttl_us)
        return self._decided(lease_run(self.backend, self._call(PEEK, lease)), False)

    def _renew(self, lease: Lease) -> bool:
        return lease_run(self.backend, self._call(RENEW, lease))[0] == 1


class AsyncSlot:
    """A slot of :meth:`AsyncConcurrencyLimiter.acquire`; ``await slot.release()``."""

    def __init__(self, limiter: AsyncConcurrencyLimiter, lease: Lease, decision: Decision) -> None:
        self.lease = lease
        self.decision = decision
        self.acquired = decision.allowed
        self._limiter: AsyncConcurrencyLimiter | None = limiter if decision.allowed else None

    async def release(self) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            await limiter.release(self.lease)

    async def __aenter__(self) -> AsyncSlot:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


class AsyncConcurrencyLimiter(BaseConcurrencyLimiter):
    """The asyncio twin of :class:`ConcurrencyLimiter`: ``async with limiter.slot(key):``."""

    def __init__(self, limit: int, **options: Any) -> None:
        super().__init__(limit, **options)
        self._renewer: AsyncRenewer[Lease] = AsyncRenewer(self._renew, self.renew_every, self._lost)

    async def acquire(self, key: str, *, wait: float = 0.0) -> AsyncSlot:
        deadline = time.monotonic() + wait
        while True:
            lease = Lease(lease_id(), self.lease_key(key), self.limit, self.ttl_us)
            decision = self._decided(await alease_run(self.backend, self._call(ACQUIRE, lease)))
            if decision.allowed:
                self._renewer.add(lease)
                return AsyncSlot(self, lease, decision)
            pause = self._waited(decision, deadline)
            if pause is None:
                return AsyncSlot(self, lease, decision)
            await asyncio.sleep(pause)

    @contextlib.asynccontextmanager
    async def slot(self, key: str, *, wait: float = 0.0) -> AsyncIterator[AsyncSlot]:
        held = await self.acquire(key, wait=wait)
        if not held.acquired:
            raise ConcurrencyLimitExceeded(key, held.decision)
        try:
            yield held
        finally:
            await held.release()

    async def release(self, lease: Lease) -> Decision:
        self._renewer.discard(lease)
        return self._decided(await alease_run(self.backend, self._call(RELEASE, lease)), False)

    async def peek(self, key: str) -> Decision:
        lease = Lease("", self.lease_key(key), self.limit, self.ttl_us)
        return self._decided(await alease_run(self.backend, self._call(PEEK, lease)), False)

    async def _renew(self, lease: Lease) -> bool:
        return (await alease_run(self.backend, self._call(RENEW, lease)))[0] == 1

"""Keeping leases alive while their holders run: one renewer per limiter.

A held lease is renewed every ``every`` seconds (a third of its TTL by default) until
it is released; the renewer stops when nothing is held and starts again with the next
lease. :class:`Renewer` is a daemon thread, :class:`AsyncRenewer` an asyncio task in
the loop of the holders. A renewal that fails (Redis away, say) is logged and tried
again at the next beat; a lease that lapsed meanwhile is *lost* (its slot may be
someone else's now) and ``on_lost`` is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["AsyncRenewer", "Renewer", "watch_source"]

logger = logging.getLogger("gatekeep.concurrency")


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


L = TypeVar("L", bound=_HasId)


class _Beats(Generic[L]):
    """What both renewers share: the leases held, the counters, and what a renewal's
    answer means (no I/O)."""

    _held: dict[str, L]
    _on_lost: Callable[[L], None]
    renewals: int
    lost: int

    def __len__(self) -> int:
        return len(self._held)

    def discard(self, lease: L) -> None:
        raise NotImplementedError

    def _renewed(self, lease: L, kept: bool) -> None:
        """Counted; a lease that lapsed meanwhile (held here, gone from Redis) is lost."""
        self.renewals += 1
        if not kept and lease.id in self._held:
            self.discard(lease)
            self.lost += 1
            self._on_lost(lease)


class Renewer(_Beats[L]):
    """Renews every held lease with ``renew(lease) -> still held`` from one thread."""

    def __init__(
        self, renew: Callable[[L], bool], every: float, on_lost: Callable[[L], None]
    ) -> None:
        self._renew = renew
        self.every = every
        self._on_lost = on_lost
        self._held: dict[str, L] = {}
        #: Renewals made (each lease, each beat), and leases found lapsed.
        self.renewals = 0
        self.lost = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def add(self, lease: L) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's thread and leases are not ours
            self._held, self._thread, self._cond = {}, None, threading.Condition()
            self._pid = os.getpid()
        with self._cond:
            self._held[lease.id] = lease
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="gatekeep-lease-renewer", daemon=True
                )
                self._thread.start()

    def discard(self, lease: L) -> None:
        # (the thread ends at its next beat if nothing is held then: a holder that
        # comes and goes between beats starts no thread of its own)
        with self._cond:
            self._held.pop(lease.id, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._held:
                    self._cond.wait(self.every)
                if not self._held:
                    self._thread = None
                    return
                due = list(self._held.values())
            for lease in due:
                if lease.id not in self._held:  # released meanwhile
                    continue
                try:
                    kept = self._renew(lease)
                except Exception as exc:  # tried again at the next beat
                    _renew_failed(exc)
                    continue
                self._renewed(lease, kept)


class AsyncRenewer(_Beats[L]):
    """The same with ``await renew(lease)``, in a task of the running loop."""

    def __init__(
        self,
        renew: Callable[[L], Awaitable[bool]],
        every: float,
        on_lost: Callable[[L], None],
    ) -> None:
        self._renew = renew
        self.every = every
        self._on_lost = on_lost
        self._held: dict[str, L] = {}
        self.renewals = 0
        self.lost = 0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    def add(self, lease: L) -> None:
        self._held[lease.id] = lease
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(self._wake), name="gatekeep-lease-renewer")

    def discard(self, lease: L) -> None:
        self._held.pop(lease.id, None)
        if not self._held and self._wake is not None:
            # the task ends now (a task is cheap to start again, unlike a thread), and
            # leaves no pending task behind when the loop closes
            self._wake.set()

    def forget(self, lease: L) -> None:
        """Stop renewing ``lease``, from any thread (its task ends at its next beat if
        nothing else is held: an Event may not be set from another thread)."""
        self._held.pop(lease.id, None)

    async def _run(self, wake: asyncio.Event) -> None:
        while self._held:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), self.every)
            wake.clear()
            if not self._held:
                break
            for lease in list(self._held.values()):
                if lease.id not in self._held:
                    continue
                try:
                    kept = await self._renew(lease)
                except Exception as exc:  # tried again at the next beat
                    _renew_failed(exc)
                    continue
                self._renewed(lease, kept)


def _renew_failed(exc: Exception) -> None:
    logger.warning("gatekeep: renewing a lease failed (%s: %s)", type(exc).__name__, exc)


def watch_source(*renewers: Renewer[Any] | AsyncRenewer[Any]) -> Callable[[], dict[str, Any]]:
    """A reader for :meth:`gatekeep.metrics.Metrics.watch`: the leases ``renewers`` hold
    and have lost (kind ``leases``), without keeping them alive."""
    refs = [weakref.ref(r) for r in renewers]

    def read() -> dict[str, Any]:
        alive = [r for r in (ref() for ref in refs) if r is not None]
        return {
            "kind": "leases",
            "held": sum(len(r) for r in alive),
            "lost": sum(r.lost for r in alive),
        }

    return read

"""The local cache of denied keys: a denial answered again in process until it ends.

When the backend answers that a hit is denied until T (a penalty block, or a cost
that cannot fit before T), the limiter keeps ``(T, cost, decision)`` for that key and
answers the same key's hits of at least that cost itself until T: no round trip, a
few µs of Python. A flood from one key then costs Redis one command, not one per
request. It only ever denies, and only what the backend said it denies until T:

- every algorithm needs at least as long for a larger cost, so a hit of at least the
  denied cost is denied until T too (a smaller cost asks the backend);
- T is taken on this process's monotonic clock from *before* the call was sent, so it
  falls before the backend's own T, never after;
- ``reset`` and ``refund`` in this process forget the key's entry. Another process's
  ``reset`` or ``refund`` is not seen here: this process keeps denying that key until
  T (at most the block, or the wait the backend announced).

Bounded: at most ``max_keys`` entries (the oldest go first), an entry is dropped
when it is read after its end. Only hits on the server's clock (``now`` not given)
are cached; the in-process backend, already local, has no cache.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from time import monotonic_ns
from typing import Any

from .decision import Decision

__all__ = ["DenialCache"]

_new = tuple.__new__
_INF = math.inf


class DenialCache:
    """Denied keys of one limiter, until their denials end (see the module doc)."""

    __slots__ = ("__weakref__", "entries", "evictions", "local_denials", "max_keys")

    def __init__(self, max_keys: int = 10_000) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"the denial cache's max_keys must be a positive int, got {max_keys}")
        self.max_keys = max_keys
        #: ``(plan, *keys) -> (until ns, cost, decision, sent ns)``. Empty: nothing to check.
        self.entries: dict[tuple[Any, ...], tuple[int, int, Decision, int]] = {}
        #: Hits denied here without a round trip.
        self.local_denials = 0
        #: Entries dropped to stay under ``max_keys``.
        self.evictions = 0

    @classmethod
    def configure(
        cls, option: bool | int | None, in_process: bool, metrics: Any, name: str
    ) -> DenialCache | None:
        """A limiter's cache: ``option`` None (the default) is on, but for an
        ``in_process`` backend (already local); False is off; an int, on with that size.
        Watched by ``metrics`` (when not None) as ``<name>:denials``."""
        if option is None:
            option = not in_process
        if option is False:
            return None
        cache = cls(10_000 if option is True else option)
        if metrics is not None:
            metrics.watch(f"{name}:denials", cache.watch_source())
        return cache

    def check(self, plan: Any, keys: Sequence[str], cost: int) -> Decision | None:
        """The denial of this hit, if the backend's last answer still holds; else None."""
        ck = (plan, *keys)
        entry = self.entries.get(ck)
        if entry is None:
            return None
        until, denied_cost, decision, sent = entry
        now = monotonic_ns()
        if now >= until:
            self.entries.pop(ck, None)
            return None
        if cost < denied_cost:  # a smaller cost may fit sooner: ask the backend
            return None
        self.local_denials += 1
        return _aged(decision, (now - sent) / 1e9)

    def remember(
        self, plan: Any, keys: Sequence[str], cost: int, decision: Decision, sent: int
    ) -> None:
        """Keep the backend's denial ``decision`` of a hit sent at ``sent`` (monotonic ns)."""
        retry = decision.retry_after
        if not 0 < retry < _INF:  # allowed, or a cost that never fits: nothing to hold
            return
        entries = self.entries
        ck = (plan, *keys)
        if ck not in entries and len(entries) >= self.max_keys:
            try:  # the oldest goes (another thread may be at it too: then nothing to do)
                entries.pop(next(iter(entries)), None)
                self.evictions += 1
            except (StopIteration, RuntimeError):
                pass
        entries[ck] = (sent + int(retry * 1e9), cost, decision, sent)

    def forget(self, plan: Any, keys: Sequence[str]) -> None:
        """Drop the entry of ``keys`` under ``plan`` (a reset or refund in this process)."""
        self.entries.pop((plan, *keys), None)

    def clear(self) -> None:
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)

    def watch_source(self) -> Callable[[], dict[str, Any]]:
        """A reader for :meth:`gatekeep.metrics.Metrics.watch` (does not keep the cache)."""
        ref = weakref.ref(self)

        def read() -> dict[str, Any]:
            cache = ref()
            if cache is None:
                return {"kind": "denial_cache", "keys": 0, "local_denials": 0, "evictions": 0}
            return {
                "kind": "denial_cache",
                "keys": len(cache),
                "local_denials": cache.local_denials,
                "evictions": cache.evictions,
            }

        return read


def _aged(d: Decision, elapsed: float) -> Decision:
    """``d`` as it stands ``elapsed`` seconds later (its waits shorter by as much)."""
    details = tuple(_aged(x, elapsed) for x in d.details) if d.details else ()
    reset = d.reset_after - elapsed
    retry = d.retry_after - elapsed
    return _new(
        Decision,
        (
            d.allowed,
            d.limit,
            d.remaining,
            reset if reset > 0 else 0.0,
            retry if retry > 0 else 0.0,
            d.rate,
            details,
        ),
    )

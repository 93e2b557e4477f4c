"""The demo's last part: a concurrency limit (``ConcurrencyLimiter``) on one key, explained."""

from __future__ import annotations

from typing import TextIO

from ..backends.base import Backend
from ..concurrency import ConcurrencyLimiter

__all__ = ["slots"]


def slots(backend: Backend, prefix: str, out: TextIO) -> None:
    """Three holders want one of 2 slots of a key; one releases; the third gets in."""
    limiter = ConcurrencyLimiter(2, backend=backend, prefix=prefix, ttl=5.0, metrics=None)
    print(
        "\n8. Concurrency: ConcurrencyLimiter(2, ttl=5.0): at most 2 holders of 'report' "
        "at once, in every process sharing the backend",
        file=out,
    )
    held = [limiter.acquire("report") for _ in range(3)]
    for i, slot in enumerate(held, 1):
        d = slot.decision
        if slot.acquired:
            print(
                f"  holder {i}: got a slot ({d.remaining} left), lease {slot.lease.id}",
                file=out,
            )
        else:
            print(
                f"  holder {i}: refused: both slots are held; one frees when a holder "
                f"releases, or at the latest in {d.retry_after:.1f} s if it died "
                "(its lease lapses unless its heartbeat renews it)",
                file=out,
            )
    held[0].release()
    print("  holder 1: released its slot", file=out)
    again = limiter.acquire("report")
    print(f"  holder 3, again: {'got a slot' if again.acquired else 'refused'}", file=out)
    for slot in (held[1], again):
        slot.release()
    print(f"  all released: {limiter.peek('report').remaining} of 2 slots free", file=out)

"""gatekeep: rate limiting and server-side sessions on Redis.

>>> from gatekeep import Limiter
>>> limiter = Limiter("5/second")
>>> limiter.hit("client-1").allowed
True
"""

from __future__ import annotations

from ._version import __version__
from .algorithms import ALGORITHMS
from .backends import Backend, FailoverBackend, MemoryBackend, RedisBackend, connect
from .blocks import Block
from .breaker import CircuitBreaker
from .concurrency import AsyncConcurrencyLimiter, ConcurrencyLimiter, ConcurrencyLimitExceeded
from .decision import Decision
from .errors import BackendUnavailable, GatekeepError
from .limiter import AsyncLimiter, Limiter, Limits
from .metrics import METRICS, Metrics
from .rates import Rate, parse_rate, parse_rates
from .reservations import AsyncReservation, Reservation, ReservationSettled
from .sessions import Session, SessionStore, SessionTooLarge

__all__ = [
    "ALGORITHMS",
    "AsyncConcurrencyLimiter",
    "AsyncLimiter",
    "AsyncReservation",
    "Backend",
    "BackendUnavailable",
    "Block",
    "CircuitBreaker",
    "ConcurrencyLimitExceeded",
    "ConcurrencyLimiter",
    "Decision",
    "FailoverBackend",
    "GatekeepError",
    "Limiter",
    "Limits",
    "METRICS",
    "MemoryBackend",
    "Metrics",
    "Rate",
    "RedisBackend",
    "Reservation",
    "ReservationSettled",
    "Session",
    "SessionStore",
    "SessionTooLarge",
    "__version__",
    "connect",
    "parse_rate",
    "parse_rates",
    "stats",
]


def stats() -> dict[str, object]:
    """A snapshot of gatekeep's own metrics (:data:`METRICS`): see :mod:`gatekeep.metrics`."""
    return METRICS.stats()

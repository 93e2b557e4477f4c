"""gatekeep: rate limiting and server-side sessions on Redis.

>>> from gatekeep import Limiter
>>> limiter = Limiter("5/second")
>>> limiter.hit("client-1").allowed
True
"""

from __future__ import annotations

from ._version import __version__
from .algorithms import ALGORITHMS
from .backends import Backend, MemoryBackend, RedisBackend
from .decision import Decision
from .limiter import AsyncLimiter, Limiter, Limits
from .rates import Rate, parse_rate, parse_rates

__all__ = [
    "ALGORITHMS",
    "AsyncLimiter",
    "Backend",
    "Decision",
    "Limiter",
    "Limits",
    "MemoryBackend",
    "Rate",
    "RedisBackend",
    "__version__",
    "parse_rate",
    "parse_rates",
]

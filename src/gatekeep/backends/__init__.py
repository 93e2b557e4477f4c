"""Backends: where limiter state lives.

:class:`MemoryBackend` runs the Python twins in-process; :class:`RedisBackend`
runs the Lua scripts on Redis (standalone, Sentinel or Cluster, see
:func:`connect`); :class:`FailoverBackend` puts Redis behind a circuit breaker
with an in-process fallback.
"""

from __future__ import annotations

from .base import Backend, Plan
from .connect import connect
from .failover import FailoverBackend, local_share
from .memory import MemoryBackend, MemoryStore
from .redis import RedisBackend

__all__ = [
    "Backend",
    "FailoverBackend",
    "MemoryBackend",
    "MemoryStore",
    "Plan",
    "RedisBackend",
    "connect",
    "local_share",
]

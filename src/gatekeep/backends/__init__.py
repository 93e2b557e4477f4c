"""Backends: where limiter state lives. :class:`MemoryBackend` runs the Python
twins in-process; :class:`RedisBackend` runs the Lua scripts on Redis."""

from __future__ import annotations

from .base import Backend, Plan
from .memory import MemoryBackend, MemoryStore
from .redis import RedisBackend

__all__ = ["Backend", "MemoryBackend", "MemoryStore", "Plan", "RedisBackend"]

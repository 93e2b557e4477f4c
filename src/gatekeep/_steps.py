"""The steps a limiter's flows yield (see :mod:`gatekeep.flows`): a backend
:class:`Call`, or a :class:`Wait`. ``Limiter`` makes them blocking, ``AsyncLimiter``
awaits them; the operations themselves are written once."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple, TypeVar

from .backends.base import Plan

__all__ = ["DELETE", "Call", "LimitFlow", "Wait"]

T = TypeVar("T")


class Call(NamedTuple):
    """A backend call of a limiter: ``backend.limit(plan, keys, now, mode, cost)`` (with
    ``many``, ``keys`` is a list of key lists: ``limit_many``; with mode :data:`DELETE`,
    ``backend.delete(keys)``); ``t0``: when it was started, if its latency is one to
    sample, else 0."""

    plan: Plan
    keys: Any
    now: int | None
    mode: str
    cost: int
    t0: int
    many: bool = False


class Wait(NamedTuple):
    """Sleep ``seconds`` (``time.sleep`` in ``Limiter``, ``asyncio.sleep`` in
    ``AsyncLimiter``): the wait a script's ``retry_after`` asks for."""

    seconds: float


#: The mode of a :class:`Call` that forgets its keys (``reset``).
DELETE = "delete"

#: An operation of a limiter, written once: it yields the steps it needs.
LimitFlow = Generator[Call | Wait, Any, T]

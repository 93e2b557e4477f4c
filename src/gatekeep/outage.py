"""The one rule for "Redis cannot serve now", used by every caller.

The limiters' failover backend and the session executor both ask
:func:`classify` what an error means; what they then do differs by design (a
limiter decides in process, a session read goes to a replica, a session write
answers 503), but the verdict on the error is the same everywhere:

=====================================================  =======  ======  =======
error                                                  outage   severe  timeout
=====================================================  =======  ======  =======
connection refused / reset, ``OSError``, auth errors   yes
``MasterNotFoundError`` (Sentinel knows no primary)    yes      yes
read timeouts (redis-py's, ``TimeoutError``)           yes              yes
``READONLY`` (a demoted primary)                       yes      yes
``OOM`` (maxmemory under ``noeviction``)               yes      yes
``LOADING`` (a restarted server reading its data)      yes      yes
``CLUSTERDOWN``, ``MASTERDOWN``                        yes      yes
``NOREPLICAS`` (``min-replicas-to-write`` unmet)       yes      yes
``TRYAGAIN`` (a cluster slot being migrated)           yes
cluster set-up errors (no node answers, slot unknown)  yes
:class:`~gatekeep.errors.BackendUnavailable`           yes
any other reply error (a script error, ``WRONGTYPE``)  no
not a Redis error at all (``TypeError``, ...)          ``None``: a bug, re-raised
=====================================================  =======  ======  =======

*Outage*: the store cannot serve this call now; it counts against the circuit
breaker. *Severe*: nor any call to come until something changes (a failover,
an operator): the breaker opens at once. *Timeout*: the call may or may not
have run. A store error that is not an outage (the store is up and answered
this one call with an error) is survived by the caller like an outage, but
never opens the breaker: the next call may well succeed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import MasterNotFoundError

from .errors import BackendUnavailable

__all__ = ["STORE_ERRORS", "Verdict", "classify", "is_outage"]

#: Every error a call to the store can end with (the caller survives each one).
STORE_ERRORS: tuple[type[BaseException], ...] = (
    RedisError,
    RedisClusterException,
    OSError,
    asyncio.TimeoutError,
    BackendUnavailable,
)

_TIMEOUTS: tuple[type[BaseException], ...] = (RedisTimeoutError, TimeoutError, asyncio.TimeoutError)
# MasterNotFoundError is a ConnectionError: listed first so it is severe.
_SEVERE: tuple[type[BaseException], ...] = (
    MasterNotFoundError,
    ReadOnlyError,
    OutOfMemoryError,
    BusyLoadingError,
    ClusterDownError,
)
_OUTAGE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    OSError,
    TryAgainError,
    RedisClusterException,
    BackendUnavailable,
)
# Replies redis-py leaves as a plain ResponseError.
_SEVERE_REPLIES = ("NOREPLICAS",)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a store error says about the store (see the module's table)."""

    outage: bool
    severe: bool = False
    timeout: bool = False


_FAULT = Verdict(False)
_SEVERE_OUTAGE = Verdict(True, severe=True)
_TIMEOUT = Verdict(True, timeout=True)
_PLAIN_OUTAGE = Verdict(True)


def classify(exc: BaseException) -> Verdict | None:
    """The verdict on ``exc``; None when it is not a store error (a bug: re-raise it)."""
    if isinstance(exc, _SEVERE):
        return _SEVERE_OUTAGE
    if isinstance(exc, _TIMEOUTS):
        return _TIMEOUT
    if isinstance(exc, _OUTAGE):
        return _PLAIN_OUTAGE
    if isinstance(exc, ResponseError):
        return _SEVERE_OUTAGE if str(exc).startswith(_SEVERE_REPLIES) else _FAULT
    if isinstance(exc, STORE_ERRORS):
        return _FAULT
    return None


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the store cannot serve now (rather than a bug or bad data)."""
    verdict = classify(exc)
    return verdict is not None and verdict.outage

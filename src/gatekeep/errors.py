"""gatekeep's exceptions.

Redis errors never reach the application through a
:class:`~gatekeep.backends.failover.FailoverBackend` unless it was configured to fail
closed; then the app gets :class:`BackendUnavailable`, which the middleware turns
into a ``503 Service Unavailable``.
"""

from __future__ import annotations

__all__ = ["BackendUnavailable", "GatekeepError", "SessionNotReplicated", "SessionWriteFailed"]


class GatekeepError(Exception):
    """The base of every exception gatekeep raises on purpose."""


class BackendUnavailable(GatekeepError):
    """Redis could not decide within the deadline and the policy is to fail closed.

    The original Redis error, when there was one, is ``__cause__``; it is None when
    the circuit breaker was already open and Redis was not even asked.
    ``retry_after`` is a hint, in seconds, for a ``Retry-After`` header: when the
    breaker will next try Redis.
    """

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SessionWriteFailed(BackendUnavailable):
    """A session write (save, regenerate, destroy) did not reach a Redis primary.

    Raised by :class:`~gatekeep.sessions.SessionStore` when no primary answered
    within the deadline (connection refused or lost, timeout, ``READONLY``, no
    primary known to the Sentinels, an open circuit breaker). Nothing is retried:
    after a timeout the write may or may not have happened. The session
    middleware turns it into ``503 Service Unavailable`` with ``Retry-After``.
    ``__cause__`` is the Redis error (None when the breaker was open).
    """


class SessionNotReplicated(SessionWriteFailed):
    """A durable write (``SessionStore(wait_replicas=N)``) reached the primary, but
    fewer than N replicas acknowledged it within ``wait_timeout``.

    The write *was* applied on the primary; a failover before the replicas catch
    up may lose it. ``acknowledged`` is how many replicas did confirm it.
    """

    def __init__(self, message: str, *, acknowledged: int, retry_after: float = 1.0) -> None:
        super().__init__(message, retry_after=retry_after)
        self.acknowledged = acknowledged

"""gatekeep's exceptions.

Redis errors never reach the application through a
:class:`~gatekeep.backends.failover.FailoverBackend` unless it was configured to fail
closed; then the app gets :class:`BackendUnavailable`, which the middleware turns
into a ``503 Service Unavailable``.
"""

from __future__ import annotations

__all__ = ["BackendUnavailable", "GatekeepError"]


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

"""A session's times as the app reads them: when it was created, last seen, and ends.

The store keeps them as microseconds since the epoch (``created_us`` ...); the
:class:`SessionTimes` mixin of :class:`~.session.Session` reads them as UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ._states import ADOPTED, NEW

__all__ = ["SessionTimes", "as_datetime"]


def as_datetime(us: int | None) -> datetime | None:
    """Microseconds since the epoch as a UTC datetime (None stays None)."""
    return None if us is None else datetime.fromtimestamp(us / 1e6, timezone.utc)


class SessionTimes:
    """The datetimes of a session's timestamps (a mixin: it holds nothing itself)."""

    __slots__ = ()

    state: str
    created_us: int | None
    last_seen_us: int | None
    expires_us: int | None
    absolute_expires_us: int | None

    @property
    def is_new(self) -> bool:
        """Not in the store yet."""
        return self.state in (NEW, ADOPTED)

    @property
    def created_at(self) -> datetime | None:
        return as_datetime(self.created_us)

    @property
    def last_seen_at(self) -> datetime | None:
        return as_datetime(self.last_seen_us)

    @property
    def expires_at(self) -> datetime | None:
        """When the session ends unless it is used again (idle or absolute, the sooner)."""
        return as_datetime(self.expires_us)

    @property
    def absolute_expires_at(self) -> datetime | None:
        """When the session ends however much it is used."""
        return as_datetime(self.absolute_expires_us)

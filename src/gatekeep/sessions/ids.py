"""Session ids and keys, and what the store tells about a session: no I/O."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from ..keys import ROOT

__all__ = ["SessionMeta", "UserSession", "id_hash", "is_session_id", "new_id", "split_key"]

_ID_RE = re.compile(r"[A-Za-z0-9_-]{47}\Z")
_KEY_RE = re.compile(
    r"(?P<prefix>" + re.escape(ROOT) + r"(?:[A-Za-z0-9_.:\-]*:)?)s:"
    r"\{(?P<tag>[A-Za-z0-9_-]{4})\}(?P<rest>[A-Za-z0-9_-]{43})\Z"
)


def new_id(tag: str | None = None) -> str:
    """A session id: a 4-character slot tag (kept by ``regenerate``) + 256 random bits."""
    return (tag or secrets.token_urlsafe(3)) + secrets.token_urlsafe(32)


def is_session_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.match(value) is not None


def split_key(key: str) -> tuple[str, str] | None:
    """A session key back into ``(app prefix, session id)``; None when it is not one.

    >>> split_key("gk:shop:s:{abcd}" + "x" * 43)
    ('shop', 'abcdxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')
    """
    m = _KEY_RE.match(key)
    if m is None:
        return None
    return m["prefix"][len(ROOT) :].rstrip(":"), m["tag"] + m["rest"]


def id_hash(session_id: str) -> str:
    """A short, stable, non-secret name for a session (to show in "your devices")."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SessionMeta:
    """What :meth:`SessionStore.meta` tells about a session: never its data."""

    id_hash: str
    created_at: datetime
    last_seen_at: datetime
    #: When it ends unless used again (idle or absolute expiry, the sooner).
    expires_at: datetime
    absolute_expires_at: datetime
    #: :func:`id_hash` of the user id, or None when no user is associated.
    user_id_hash: str | None
    #: Seconds until ``expires_at``, by the clock of the call (``now``, or this process's).
    ttl: float


@dataclass(frozen=True, slots=True)
class UserSession:
    """One entry of :meth:`SessionStore.sessions_of`."""

    id_hash: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    absolute_expires_at: datetime

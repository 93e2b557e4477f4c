"""Logging for sessions: the ``gatekeep.sessions`` logger, and ids never in clear.

A session id is a bearer credential: whoever reads it in a log can log in as its
owner. Wherever a log line would name a session (or a user), it names
:func:`log_id` instead: sha256 of a per-process random salt and the id,
truncated. Lines of one process can be correlated; the id cannot be recovered,
and the same id hashes differently in another process (so hashes are not a
stable handle across a fleet: :func:`~gatekeep.sessions.id_hash` is, for UIs).

:func:`scrub` replaces anything shaped like a session id or a session key in a
text (an error message) with its ``log_id``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets

__all__ = ["log_id", "logger", "scrub"]

logger = logging.getLogger("gatekeep.sessions")

_SALT = secrets.token_bytes(16)

#: A session id (4-character tag + 43), bare or inside a key (``{tag}rest``).
_ID_IN_TEXT = re.compile(r"\{?([A-Za-z0-9_-]{4})\}?([A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])")


def log_id(value: str) -> str:
    """A salted, truncated hash of a session id (or user id) for log lines."""
    return hashlib.sha256(_SALT + value.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def scrub(text: str) -> str:
    """``text`` with every session id (or key) in it replaced by ``<session:log_id>``."""
    return _ID_IN_TEXT.sub(lambda m: f"<session:{log_id(m[1] + m[2])}>", text)

"""Server-side sessions: a TTL store in Lua (with in-process twins), signed cookies,
and ASGI / WSGI middleware (``gatekeep.sessions.asgi`` / ``gatekeep.sessions.wsgi``).

>>> from gatekeep.sessions import SessionStore
>>> store = SessionStore()                       # in-process; pass a RedisBackend for Redis
>>> session = store.create({"theme": "dark"})
>>> store.load(session.id)["theme"]
'dark'
"""

from __future__ import annotations

from .session import Changes, Session, SessionNotLoaded, SessionTooLarge
from .store import (
    SessionMeta,
    SessionStore,
    UserSession,
    id_hash,
    is_session_id,
    new_id,
    split_key,
)

__all__ = [
    "Changes",
    "Session",
    "SessionMeta",
    "SessionNotLoaded",
    "SessionStore",
    "SessionTooLarge",
    "UserSession",
    "id_hash",
    "is_session_id",
    "new_id",
    "split_key",
]

"""A session's states, as the store and the middleware see them, and what a save sends.

The vocabulary shared by :class:`~.session.Session`, the store's operations and the
middleware: the states (``NEW`` ... ``UNAVAILABLE``), the :class:`Changes` one request
made (what the save script takes), and the placeholder key of a session not loaded yet.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ADOPTED",
    "GONE",
    "LOADED",
    "NEW",
    "NOT_LOADED",
    "PENDING",
    "UNAVAILABLE",
    "Changes",
    "SessionNotLoaded",
]

# The states of a session, as the store and the middleware see it.
NEW = "new"  # no usable cookie: an id is drawn when it is first saved
PENDING = "pending"  # a valid cookie: the record is loaded on first use
LOADED = "loaded"  # read from the store
ADOPTED = "adopted"  # non-strict store: a signed id the store did not know
GONE = "gone"  # destroyed, or found destroyed / regenerated elsewhere
UNAVAILABLE = "unavailable"  # the store could not be reached: empty, never saved


class SessionNotLoaded(RuntimeError):
    """The session was used before it was loaded (``SessionMiddleware(lazy=True)``)."""


@dataclass(slots=True)
class Changes:
    """What one request did to a session, as the save script takes it."""

    #: Top-level keys written, with their JSON text.
    set: dict[str, str]
    #: Top-level keys removed.
    delete: list[str]
    #: Every key was removed first (``clear()``).
    clear: bool
    #: ``''`` unchanged, ``'-'`` no user any more, ``'+<id>'`` this user.
    user: str
    #: Move the data to a new id.
    regenerate: bool
    #: Bytes of JSON (keys and values) of the whole session as this request sees it.
    size: int

    def __bool__(self) -> bool:
        return bool(self.set or self.delete or self.clear or self.user or self.regenerate)


#: The one key a session holds before it is loaded. json's C encoder writes an empty
#: dict as ``{}`` without calling any method: with this key it calls ``items()``, which
#: loads the session (or raises SessionNotLoaded). Code that reads a dict's storage
#: without its methods (orjson, ``dict.__repr__(s)``) sees this key, not a silent ``{}``.
NOT_LOADED = "<gatekeep: session not loaded>"

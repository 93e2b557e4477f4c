"""The session object an app sees: a ``dict`` of JSON values that knows what changed.

It does no I/O itself: a :class:`~gatekeep.sessions.SessionStore` fills it and
saves it, and a middleware may give it a loader so that it loads on first use. Its
states, and the :class:`Changes` a save writes, are defined in :mod:`._states`; its
times as datetimes (``created_at``, ``expires_at``, ...) in :mod:`._times`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from itertools import islice
from typing import Any

from ._json import dump_value, load_value, scan
from ._states import (
    ADOPTED,
    GONE,
    LOADED,
    NEW,
    NOT_LOADED,
    PENDING,
    UNAVAILABLE,
    Changes,
    SessionNotLoaded,
)
from ._times import SessionTimes
from ._tracked import SCALARS, SessionTooLarge, TrackedDict, size_of

_set = dict.__setitem__
_len = dict.__len__
_items = dict.items
_keys = dict.keys

__all__ = [
    "ADOPTED",
    "GONE",
    "LOADED",
    "NEW",
    "NOT_LOADED",
    "PENDING",
    "UNAVAILABLE",
    "Changes",
    "Session",
    "SessionNotLoaded",
    "SessionTooLarge",
    "dump_value",
    "load_value",
]


class Session(TrackedDict, SessionTimes):
    """A server-side session: a ``dict`` of JSON values that knows what changed.

    >>> session["cart"] = ["apple"]
    >>> session["cart"].append("pear")        # in-place changes are saved too
    >>> session.set_user("42")                # log in: associate, and a new id
    >>> session.destroy()                     # log out

    It is a real ``dict`` (``json.dumps``, ``JSONResponse``, ``|``, ``|=``, ``copy``,
    ``==``, ``isinstance(s, dict)`` work as with any dict): the data lives in the dict
    itself. ``accessed`` is set by any read or write through its methods;
    ``modified`` compares the JSON of every value with what was loaded, so nested
    in-place changes count. A session not loaded yet (a middleware's lazy load) loads
    on first use where that needs no ``await``, and raises :class:`SessionNotLoaded`
    otherwise; code that reads a dict's storage without calling its methods
    (C extensions such as orjson) sees only the key
    :data:`NOT_LOADED` until it is loaded.
    Writes are checked at once: a value that is not JSON raises ``TypeError``, and one
    that makes the session exceed the store's ``max_size`` raises
    :class:`SessionTooLarge`, with nothing changed.
    """

    __slots__ = (
        "_aloader",
        "_destroy",
        "_loader",
        "_regenerate",
        "_saved",
        "_user",
        "_user_saved",
        "absolute_expires_us",
        "created_us",
        "expires_us",
        "from_replica",
        "id",
        "last_seen_us",
        "save_error",
        "signed_at_us",
        "state",
    )

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        state: str = NEW,
        max_size: int | None = None,
    ) -> None:
        super().__init__(max_size)
        #: JSON text of each top-level value as the store has it.
        self._saved: dict[str, str] = {}
        self._regenerate = False
        #: Set by destroy(): the id it had (None if never stored) and its user.
        self._destroy: tuple[str | None, str | None] | None = None
        self._user: str | None = None
        self._user_saved: str | None = None
        self._loader: Callable[[], None] | None = None
        self._aloader: Callable[[], Awaitable[None]] | None = None
        #: The session id, or None until a new session is first saved.
        self.id = id
        self.state = state
        self.created_us: int | None = None
        self.last_seen_us: int | None = None
        self.expires_us: int | None = None
        self.absolute_expires_us: int | None = None
        #: When the cookie carrying ``id`` was signed (for a non-strict store's adoption).
        self.signed_at_us: int | None = None
        #: Loaded from a replica while the primary was away: readable, but changes will
        #: most likely fail to save (and its idle deadline was not extended).
        self.from_replica = False
        #: Why the last save (or destroy) failed (a
        #: :class:`~gatekeep.errors.SessionWriteFailed`), or None.
        self.save_error: BaseException | None = None
        if state == PENDING:
            _set(self, NOT_LOADED, None)
        elif data:
            self.update(data)
            self.accessed = False

    # -- loading ---------------------------------------------------------------------

    def _use(self) -> None:
        self.accessed = True
        if self.state == PENDING:
            self._load_now()

    def _load_now(self) -> None:
        if self._loader is None:
            raise SessionNotLoaded(
                "the session is not loaded yet: `await request.session.aload()` first, "
                "or use SessionMiddleware(lazy=False)"
            )
        self._loader()

    def mark_accessed(self) -> None:
        """Starlette's ``request.session`` calls this: the session counts as used, and
        is loaded if that needs no ``await`` (never raises :class:`SessionNotLoaded`)."""
        self.accessed = True
        if self.state == PENDING and self._loader is not None:
            self._loader()

    def set_loaders(
        self, load: Callable[[], None] | None, aload: Callable[[], Awaitable[None]] | None
    ) -> None:
        """How a PENDING session loads: ``load`` on first use (no ``await`` possible),
        ``aload`` by :meth:`aload`. For middleware."""
        self._loader, self._aloader = load, aload

    @property
    def save_failed(self) -> bool:
        """The middleware could not write this session's changes (see ``save_error``)."""
        return self.save_error is not None

    @property
    def unsaved_changes(self) -> bool:
        """Changes (or a destroy) that a save would have to write, in any state: also
        for a session the store could not load (``UNAVAILABLE``), whose changes are lost."""
        if self._destroy is not None and self._destroy[0] is not None:
            return True
        if self.state == UNAVAILABLE:
            return self.accessed and bool(
                _len(self) or self._cleared or self._regenerate or self._user is not None
            )
        return self.modified

    @property
    def loaded(self) -> bool:
        return self.state != PENDING

    @property
    def empty(self) -> bool:
        """No data (read without counting as a use, nor loading)."""
        return _len(self) == 0

    def load(self) -> None:
        """Load now (a WSGI middleware also does it on first use)."""
        if self.state == PENDING and self._loader is not None:
            self._loader()

    async def aload(self) -> None:
        """Load now: with ``SessionMiddleware(lazy=True)``, await this before using it."""
        if self.state == PENDING:
            if self._aloader is not None:
                await self._aloader()
            elif self._loader is not None:
                self._loader()

    def fill(self, reply: list[Any]) -> None:
        """Take a load reply (``{1, created, seen, expires, absolute, user, k, v, ...}``)."""
        dict.clear(self)
        self.state = LOADED
        self.created_us, self.last_seen_us, self.expires_us, self.absolute_expires_us = (
            int(reply[1]),
            int(reply[2]),
            int(reply[3]),
            int(reply[4]),
        )
        self._user = self._user_saved = reply[5] or None
        saved, sizes, texts = self._saved, self._sizes, self._texts
        total = 0
        pairs = islice(reply, 6, None)
        for key, text in zip(pairs, pairs, strict=False):  # (key, text) pairs
            try:  # scan(): load_value's fast path, inline (a call less for each value)
                value, end = scan(text, 0)
            except (StopIteration, ValueError):
                end = -1
            if end != len(text):
                try:
                    value = load_value(text)
                except ValueError:
                    continue  # not written by gatekeep: leave it out, it will not be saved back
            _set(self, key, value)
            saved[key] = text
            if type(value) in SCALARS:
                texts[key] = text
            size = sizes[key] = len(text) + (
                len(key) if key.isascii() else len(key.encode("utf-8", "surrogatepass"))
            )
            total += size
        self._size = total

    def mark_saved(self, changes: Changes, reply: list[Any]) -> None:
        """After a successful save (``{1, created, seen, expires, absolute}``)."""
        self.created_us, self.last_seen_us, self.expires_us, self.absolute_expires_us = (
            int(reply[1]),
            int(reply[2]),
            int(reply[3]),
            int(reply[4]),
        )
        if changes.clear:
            self._saved.clear()
        self._saved.update(changes.set)
        for key in changes.delete:
            self._saved.pop(key, None)
        self._cleared = self._regenerate = False
        self._user_saved = self._user
        self.state = LOADED

    def reset(self, state: str) -> None:
        """Forget everything: the session is ``state`` (GONE, UNAVAILABLE) and empty."""
        dict.clear(self)
        self._saved.clear()
        self._sizes.clear()
        self._texts.clear()
        self._size = 0
        self._cleared = self._regenerate = False
        self._user = self._user_saved = None
        self.created_us = self.last_seen_us = self.expires_us = None
        self.absolute_expires_us = None
        self.state = state

    def __repr__(self) -> str:
        keys = [] if self.state == PENDING else sorted(_keys(self))
        return f"<Session {self.state} keys={keys!r}>"

    # -- operations --------------------------------------------------------------------

    def regenerate(self) -> None:
        """Give the session a new id when it is saved; the old id stops working.

        Call it on every privilege change (log in, sudo mode) to defeat fixation.
        """
        self._use()
        self._regenerate = True

    def destroy(self) -> None:
        """Log out: the session is deleted when the response goes out, and its cookie too.

        Keys set afterwards go into a new session, with a new id.
        """
        self._use()
        if self._destroy is None:
            # UNAVAILABLE: the id is known, the store was not reachable; trying (and
            # failing, reported) beats leaving a session alive the user thinks is gone.
            stored = self.state in (LOADED, ADOPTED, UNAVAILABLE)
            self._destroy = (self.id if stored else None, self._user_saved)
        self.reset(NEW)
        self.id = None

    def take_destroy(self) -> tuple[str | None, str | None] | None:
        """The destroy requested (the id it had, its user), once; None when there was none.
        For middleware."""
        destroyed, self._destroy = self._destroy, None
        return destroyed

    def set_user(self, user_id: str | int | None, *, regenerate: bool = True) -> None:
        """Associate the session with ``user_id`` (None: with nobody) for the per-user index.

        Regenerates the id by default, as a log-in should.
        """
        self._use()
        if user_id is not None:
            user_id = str(user_id)
            if not user_id:
                raise ValueError("user_id must be a non-empty string or None")
        self._user = user_id
        if regenerate:
            self._regenerate = True

    @property
    def user_id(self) -> str | None:
        return self._user

    @property
    def saved_user_id(self) -> str | None:
        """The user the store has for this session (before this request's changes)."""
        return self._user_saved

    @property
    def destroy_requested(self) -> bool:
        return self._destroy is not None

    @property
    def modified(self) -> bool:
        """Whether a save would write anything (nested in-place changes included)."""
        if not self.accessed or self.state in (GONE, UNAVAILABLE, PENDING):
            return False
        if self._cleared or self._regenerate or self._user != self._user_saved:
            return True
        saved = self._saved
        if saved.keys() != _keys(self):
            return True
        texts = self._texts  # scalars: their text is known, no need to encode them again
        for key, value in _items(self):
            text = texts.get(key)
            if saved[key] != (dump_value(key, value) if text is None else text):
                return True
        return False

    def changes(self, max_size: int | None = None) -> Changes:
        """What a save sends: the keys that differ from the store's copy, and more.
        Each key is measured again (the sizes are exact after it): past ``max_size``
        raises :class:`SessionTooLarge`."""
        saved, texts, measured = self._saved, self._texts, self._sizes
        written: dict[str, str] = {}
        sizes: dict[str, int] = {}
        size = 0
        cleared = self._cleared
        for key, value in _items(self):
            text = texts.get(key)
            if text is None:  # a list or a dict: it may have changed in place
                text = dump_value(key, value)
                one = sizes[key] = size_of(key, text)
            else:  # a scalar: measured when it was set or loaded
                one = sizes[key] = measured.get(key) or size_of(key, text)
            size += one
            if cleared or saved.get(key) != text:
                written[key] = text
        self._sizes, self._size = sizes, size
        if max_size is not None and size > max_size:
            raise SessionTooLarge(
                f"the session holds {size} bytes of JSON, over max_size={max_size}: keep "
                "large data elsewhere and its key in the session (nested values grown in "
                "place are measured when the session is saved)"
            )
        removed = [] if self._cleared else [k for k in saved if k not in sizes]
        if self._user == self._user_saved:
            user = ""
        else:
            user = "-" if self._user is None else "+" + self._user
        return Changes(written, removed, self._cleared, user, self._regenerate, size)

"""The session object an app sees: a ``dict`` of JSON values that knows what changed.

It does no I/O itself: a :class:`~gatekeep.sessions.SessionStore` fills it and
saves it, and a middleware may give it a loader so that it loads on first use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, ItemsView, Iterator, KeysView, ValuesView
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, SupportsIndex

from ._json import ERRORS as _ERRORS
from ._json import FAST_ENCODE as _FAST_ENCODE
from ._json import dump_value, load_value

__all__ = ["NOT_LOADED", "Changes", "Session", "SessionNotLoaded", "SessionTooLarge", "dump_value",
           "load_value"]

# The states of a session, as the store and the middleware see it.
NEW = "new"                  # no usable cookie: an id is drawn when it is first saved
PENDING = "pending"          # a valid cookie: the record is loaded on first use
LOADED = "loaded"            # read from the store
ADOPTED = "adopted"          # non-strict store: a signed id the store did not know
GONE = "gone"                # destroyed, or found destroyed / regenerated elsewhere
UNAVAILABLE = "unavailable"  # the store could not be reached: empty, never saved


class SessionNotLoaded(RuntimeError):
    """The session was used before it was loaded (``SessionMiddleware(lazy=True)``)."""


class SessionTooLarge(ValueError):
    """A session's JSON would exceed the store's ``max_size``."""


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


def _datetime(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, timezone.utc)


def _size_of(key: str, text: str) -> int:
    """Bytes of JSON a key and its value's text take (``text`` is ASCII)."""
    try:
        return len(key.encode()) + len(text)
    except UnicodeEncodeError:
        raise TypeError(f"session key {key!r} cannot be saved: it is not valid "
                        "Unicode (a lone surrogate)") from None


# The dict's own methods: what the session holds lives in the dict itself (so the C
# fast paths that read a dict's storage see it), and these read or write it without
# marking the session accessed or loading it.
_get = dict.get
_set = dict.__setitem__
_len = dict.__len__
_items = dict.items
_keys = dict.keys
_MISSING: Any = object()

#: The one key a session holds before it is loaded. json's C encoder writes an empty
#: dict as ``{}`` without calling any method: with this key it calls ``items()``, which
#: loads the session (or raises SessionNotLoaded). Code that reads a dict's storage
#: without its methods (orjson, ``dict.__repr__(s)``) sees this key, not a silent ``{}``.
NOT_LOADED = "<gatekeep: session not loaded>"


class Session(dict[str, Any]):
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

    __slots__ = ("_aloader", "_cleared", "_destroy", "_loader", "_regenerate", "_saved",
                 "_size", "_sizes", "_user", "_user_saved", "absolute_expires_us", "accessed",
                 "created_us", "expires_us", "from_replica", "id", "last_seen_us", "max_size",
                 "save_error", "signed_at_us", "state")

    def __init__(self, data: dict[str, Any] | None = None, *, id: str | None = None,
                 state: str = NEW, max_size: int | None = None) -> None:
        #: JSON text of each top-level value as the store has it.
        self._saved: dict[str, str] = {}
        #: Bytes of JSON of each key as last measured (set, loaded or saved): in-place
        #: changes of nested values are measured again at save time only.
        self._sizes: dict[str, int] = {}
        self._size = 0
        self._cleared = False
        self._regenerate = False
        #: Set by destroy(): the id it had (None if never stored) and its user.
        self._destroy: tuple[str | None, str | None] | None = None
        self._user: str | None = None
        self._user_saved: str | None = None
        self._loader: Callable[[], None] | None = None
        self._aloader: Callable[[], Awaitable[None]] | None = None
        #: Bytes of JSON (keys and values) the session may hold; None: no limit here.
        self.max_size = max_size
        #: The session id, or None until a new session is first saved.
        self.id = id
        self.state = state
        #: Set by any read or write of the data.
        self.accessed = False
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
                "or use SessionMiddleware(lazy=False)")
        self._loader()

    def mark_accessed(self) -> None:
        """Starlette's ``request.session`` calls this: the session counts as used, and
        is loaded if that needs no ``await`` (never raises :class:`SessionNotLoaded`)."""
        self.accessed = True
        if self.state == PENDING and self._loader is not None:
            self._loader()

    def set_loaders(self, load: Callable[[], None] | None,
                    aload: Callable[[], Awaitable[None]] | None) -> None:
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
            return self.accessed and bool(_len(self) or self._cleared or self._regenerate
                                          or self._user is not None)
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
            int(reply[1]), int(reply[2]), int(reply[3]), int(reply[4]))
        self._user = self._user_saved = reply[5] or None
        saved, sizes = self._saved, self._sizes
        total = 0
        for i in range(6, len(reply), 2):
            key, text = reply[i], reply[i + 1]
            try:
                _set(self, key, load_value(text))
            except ValueError:
                continue  # not written by gatekeep: leave it out, it will not be saved back
            saved[key] = text
            size = sizes[key] = len(key.encode("utf-8", "surrogatepass")) + len(text)
            total += size
        self._size = total

    def mark_saved(self, changes: Changes, reply: list[Any]) -> None:
        """After a successful save (``{1, created, seen, expires, absolute}``)."""
        self.created_us, self.last_seen_us, self.expires_us, self.absolute_expires_us = (
            int(reply[1]), int(reply[2]), int(reply[3]), int(reply[4]))
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
        self._size = 0
        self._cleared = self._regenerate = False
        self._user = self._user_saved = None
        self.created_us = self.last_seen_us = self.expires_us = None
        self.absolute_expires_us = None
        self.state = state

    # -- writes: measured before they happen -----------------------------------------------

    def _measure(self, key: Any, value: Any) -> int:
        if not isinstance(key, str):
            raise TypeError(f"session keys must be str, not {type(key).__name__}")
        return _size_of(key, dump_value(key, value))

    def _too_large(self, total: int, key: str) -> SessionTooLarge:
        return SessionTooLarge(
            f"setting session[{key!r}] would make the session {total} bytes of JSON, over "
            f"max_size={self.max_size}: keep large data elsewhere and its key in the "
            "session (nothing was changed)")

    def __setitem__(self, key: str, value: Any) -> None:
        self.accessed = True
        if self.state == PENDING:
            self._load_now()
        size = self._measure(key, value)
        sizes = self._sizes
        total = self._size - sizes.get(key, 0) + size
        if self.max_size is not None and total > self.max_size:
            raise self._too_large(total, key)
        _set(self, key, value)
        sizes[key] = size
        self._size = total

    def update(self, *args: Any, **kwargs: Any) -> None:
        """``dict.update``, all or nothing: checked in full before any key is set."""
        self._use()
        new = dict(*args, **kwargs)
        sizes = self._sizes
        measured = {key: self._measure(key, value) for key, value in new.items()}
        total = self._size + sum(size - sizes.get(key, 0) for key, size in measured.items())
        if self.max_size is not None and total > self.max_size and measured:
            raise self._too_large(total, next(iter(measured)))
        dict.update(self, new)
        sizes.update(measured)
        self._size = total

    def __ior__(self, other: Any) -> Session:  # type: ignore[override]
        self.update(other)
        return self

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._use()
        value = _get(self, key, _MISSING)
        if value is _MISSING:
            self[key] = value = default
        return value

    def _forget(self, key: str) -> None:
        self._size -= self._sizes.pop(key, 0)

    def __delitem__(self, key: str) -> None:
        self._use()
        dict.__delitem__(self, key)
        self._forget(key)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        self._use()
        if default is _MISSING:
            value = dict.pop(self, key)
        else:
            value = dict.pop(self, key, _MISSING)
            if value is _MISSING:
                return default
        self._forget(key)
        return value

    def popitem(self) -> tuple[str, Any]:
        """The last key set, and its value (LIFO, as ``dict.popitem``)."""
        self._use()
        item = dict.popitem(self)
        self._forget(item[0])
        return item

    def clear(self) -> None:
        """Remove every key, including those another request may have added meanwhile."""
        self._use()
        dict.clear(self)
        self._sizes.clear()
        self._size = 0
        self._cleared = True

    # -- reads -----------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        if self.state == PENDING:
            self._load_now()
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        if self.state == PENDING:
            self._load_now()
        return _get(self, key, default)

    def __contains__(self, key: object) -> bool:
        self._use()
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._use()
        return dict.__iter__(self)

    def __reversed__(self) -> Iterator[str]:
        self._use()
        return dict.__reversed__(self)

    def __len__(self) -> int:
        self._use()
        return _len(self)

    def keys(self) -> KeysView[str]:  # type: ignore[override]
        self._use()
        return _keys(self)

    def values(self) -> ValuesView[Any]:  # type: ignore[override]
        self._use()
        return dict.values(self)

    def items(self) -> ItemsView[str, Any]:  # type: ignore[override]
        self._use()
        return _items(self)

    def copy(self) -> dict[str, Any]:
        """A plain ``dict`` of the data (as ``dict.copy`` gives for a subclass)."""
        self._use()
        return dict(_items(self))

    def __or__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]
        if not isinstance(other, dict):
            return NotImplemented
        new = self.copy()
        new.update(other)
        return new

    def __ror__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]
        if not isinstance(other, dict):
            return NotImplemented
        new = dict(other)
        new.update(self.copy())
        return new

    def __eq__(self, other: object) -> bool:
        self._use()
        if isinstance(other, Session):
            other._use()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        # copy.copy, copy.deepcopy and pickle give a plain dict of the data: the id,
        # the state and the loaders belong to this request only.
        return (dict, (self.copy(),))

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
        encode = _FAST_ENCODE
        if encode is not None:
            try:
                return any(saved[key] != encode(value) for key, value in _items(self))
            except _ERRORS:
                pass  # dump_value below raises it, with its message
        return any(saved[key] != dump_value(key, value) for key, value in _items(self))

    def changes(self, max_size: int | None = None) -> Changes:
        """What a save sends: the keys that differ from the store's copy, and more.
        Each key is measured again (the sizes are exact after it): past ``max_size``
        raises :class:`SessionTooLarge`."""
        saved = self._saved
        written: dict[str, str] = {}
        sizes: dict[str, int] = {}
        size = 0
        for key, value in _items(self):
            text = dump_value(key, value)
            one = sizes[key] = _size_of(key, text)
            size += one
            if self._cleared or saved.get(key) != text:
                written[key] = text
        self._sizes, self._size = sizes, size
        if max_size is not None and size > max_size:
            raise SessionTooLarge(
                f"the session holds {size} bytes of JSON, over max_size={max_size}: keep "
                "large data elsewhere and its key in the session (nested values grown in "
                "place are measured when the session is saved)")
        removed = [] if self._cleared else [k for k in saved if k not in sizes]
        if self._user == self._user_saved:
            user = ""
        else:
            user = "-" if self._user is None else "+" + self._user
        return Changes(written, removed, self._cleared, user, self._regenerate, size)

    # -- expiry ------------------------------------------------------------------------

    @property
    def is_new(self) -> bool:
        """Not in the store yet."""
        return self.state in (NEW, ADOPTED)

    @property
    def created_at(self) -> datetime | None:
        return _datetime(self.created_us)

    @property
    def last_seen_at(self) -> datetime | None:
        return _datetime(self.last_seen_us)

    @property
    def expires_at(self) -> datetime | None:
        """When the session ends unless it is used again (idle or absolute, the sooner)."""
        return _datetime(self.expires_us)

    @property
    def absolute_expires_at(self) -> datetime | None:
        """When the session ends however much it is used."""
        return _datetime(self.absolute_expires_us)

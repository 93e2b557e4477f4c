"""The session object an app sees: a dict of JSON values that knows what changed.

It does no I/O itself: a :class:`~gatekeep.sessions.SessionStore` fills it and
saves it, and a middleware may give it a loader so that it loads on first use.
"""

from __future__ import annotations

import json
import json.encoder
import json.scanner
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

__all__ = ["Changes", "Session", "SessionNotLoaded", "dump_value"]

# The states of a session, as the store and the middleware see it.
NEW = "new"                  # no usable cookie: an id is drawn when it is first saved
PENDING = "pending"          # a valid cookie: the record is loaded on first use
LOADED = "loaded"            # read from the store
ADOPTED = "adopted"          # non-strict store: a signed id the store did not know
GONE = "gone"                # destroyed, or found destroyed / regenerated elsewhere
UNAVAILABLE = "unavailable"  # the store could not be reached: empty, never saved


class SessionNotLoaded(RuntimeError):
    """The session was used before it was loaded (``SessionMiddleware(lazy=True)``)."""


def _refuse(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


# ASCII output: every value is valid UTF-8 on the wire, lone surrogates included.
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False,
                            default=_refuse)
_ERRORS = (TypeError, ValueError, RecursionError)


def _fast_encoder() -> Callable[[Any], str] | None:
    """``_ENCODER.encode`` without its per-call setup: the C encoder it builds on each
    call, built once. It has no circular-reference bookkeeping (shared state, unsafe
    across threads): whatever fails here is encoded again by ``_ENCODER``, which
    raises the error it always did."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    ascii_ = json.encoder.encode_basestring_ascii
    try:  # CPython's private constructor: should its signature change, use json's own path
        iterencode = make(None, _refuse, ascii_, None, ":", ",", False, False, False)
    except TypeError:
        return None

    def encode(value: Any) -> str:
        if type(value) is str:
            return ascii_(value)
        return "".join(iterencode(value, 0))

    return encode


_FAST_ENCODE = _fast_encoder()


def dump_value(key: str, value: Any) -> str:
    """``value`` as the JSON text the store keeps; a clear ``TypeError`` when it cannot be."""
    if _FAST_ENCODE is not None:
        try:
            return _FAST_ENCODE(value)
        except _ERRORS:
            pass  # the same error, with its usual message, from _ENCODER below
    try:
        return _ENCODER.encode(value)
    except _ERRORS as exc:
        raise TypeError(
            f"session[{key!r}] cannot be saved: {exc}. Sessions hold JSON values only "
            "(str, int, float, bool, None, and lists and dicts of them); store a datetime "
            "as isoformat(), a set as a list, an object as a dict"
        ) from None


_DECODER = json.JSONDecoder()
# The C scanner where there is one (typeshed has it as a class taking a "context").
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]


def load_value(text: str) -> Any:
    """``json.loads(text)``, without its per-call layers for the texts ``dump_value``
    makes (one value, nothing around it); anything else goes to ``json.loads``."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # not a value at 0 (space first?): json.loads decides
        return json.loads(text)
    if end != len(text):  # something after it: json.loads decides
        return json.loads(text)
    return value


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


class Session(MutableMapping[str, Any]):
    """A server-side session: dict semantics over JSON values.

    >>> session["cart"] = ["apple"]
    >>> session["cart"].append("pear")        # in-place changes are saved too
    >>> session.set_user("42")                # log in: associate, and a new id
    >>> session.destroy()                     # log out

    ``accessed`` is set by any read or write, ``modified`` compares the JSON of
    every value with what was loaded, so nested in-place changes count.
    """

    __slots__ = ("_aloader", "_cleared", "_data", "_destroy", "_loader", "_regenerate",
                 "_saved", "_user", "_user_saved", "absolute_expires_us", "accessed", "created_us",
                 "expires_us", "from_replica", "id", "last_seen_us", "save_error",
                 "signed_at_us", "state")

    def __init__(self, data: dict[str, Any] | None = None, *, id: str | None = None,
                 state: str = NEW) -> None:
        self._data: dict[str, Any] = {}
        #: JSON text of each top-level value as the store has it.
        self._saved: dict[str, str] = {}
        self._cleared = False
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
        if data:
            self.update(data)
            self.accessed = False

    # -- loading ---------------------------------------------------------------------

    def _use(self) -> dict[str, Any]:
        self.accessed = True
        if self.state == PENDING:
            if self._loader is None:
                raise SessionNotLoaded(
                    "the session is not loaded yet: `await request.session.aload()` first, "
                    "or use SessionMiddleware(lazy=False)")
            self._loader()
        return self._data

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
            return self.accessed and bool(self._data or self._cleared or self._regenerate
                                          or self._user is not None)
        return self.modified

    @property
    def loaded(self) -> bool:
        return self.state != PENDING

    def load(self) -> None:
        """Load now (a WSGI middleware also does it on first use)."""
        if self.state == PENDING and self._loader is not None:
            self._loader()

    async def aload(self) -> None:
        """Load now: with ``SessionMiddleware(lazy=True)``, await this before using it."""
        if self.state == PENDING and self._aloader is not None:
            await self._aloader()

    def fill(self, reply: list[Any]) -> None:
        """Take a load reply (``{1, created, seen, expires, absolute, user, k, v, ...}``)."""
        self.state = LOADED
        self.created_us, self.last_seen_us, self.expires_us, self.absolute_expires_us = (
            int(reply[1]), int(reply[2]), int(reply[3]), int(reply[4]))
        self._user = self._user_saved = reply[5] or None
        data, saved = self._data, self._saved
        for i in range(6, len(reply), 2):
            key, text = reply[i], reply[i + 1]
            try:
                data[key] = load_value(text)
            except ValueError:
                continue  # not written by gatekeep: leave it out, it will not be saved back
            saved[key] = text

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
        self._data.clear()
        self._saved.clear()
        self._cleared = self._regenerate = False
        self._user = self._user_saved = None
        self.created_us = self.last_seen_us = self.expires_us = None
        self.absolute_expires_us = None
        self.state = state

    # -- dict semantics ----------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._use()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"session keys must be str, not {type(key).__name__}")
        self._use()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._use()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._use())

    def __len__(self) -> int:
        return len(self._use())

    def __contains__(self, key: object) -> bool:
        return key in self._use()

    def get(self, key: str, default: Any = None) -> Any:
        return self._use().get(key, default)

    def clear(self) -> None:
        """Remove every key, including those another request may have added meanwhile."""
        self._use().clear()
        self._cleared = True

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Session):
            return self._use() == other._use()
        return self._use() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Session {self.state} keys={sorted(self._data)!r}>"

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
        if saved.keys() != self._data.keys():
            return True
        encode = _FAST_ENCODE
        if encode is not None:
            try:
                return any(saved[key] != encode(value) for key, value in self._data.items())
            except _ERRORS:
                pass  # dump_value below raises it, with its message
        return any(saved[key] != dump_value(key, value) for key, value in self._data.items())

    def changes(self) -> Changes:
        """What a save sends: the keys that differ from the store's copy, and more."""
        saved = self._saved
        written: dict[str, str] = {}
        size = 0
        for key, value in self._data.items():
            text = dump_value(key, value)
            try:
                size += len(key.encode()) + len(text)
            except UnicodeEncodeError:
                raise TypeError(f"session key {key!r} cannot be saved: it is not valid "
                                "Unicode (a lone surrogate)") from None
            if self._cleared or saved.get(key) != text:
                written[key] = text
        removed = [] if self._cleared else [k for k in saved if k not in self._data]
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

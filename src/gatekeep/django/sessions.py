"""Django session engine: ``SESSION_ENGINE = "gatekeep.django.sessions"``.

The engine is storage only: Django's ``SessionMiddleware`` still reads and sets its
cookie (``SESSION_COOKIE_*``), and ``django.contrib.auth`` logs in (``cycle_key``) and
out (``flush``) through the usual ``SessionBase`` contract. The sessions live in
gatekeep's :class:`~gatekeep.sessions.SessionStore` (Redis, or in-process for one
process)::

    SESSION_ENGINE = "gatekeep.django.sessions"
    GATEKEEP = {"sessions": {"url": "redis://localhost:6379/0", "prefix": "shop",
                             "idle_timeout": 14 * 86400, "absolute_timeout": 30 * 86400}}

What differs from Django's database engine, and why:

- Keys are drawn by the store: 47 characters, 256 random bits after a 4-character
  Redis Cluster hash tag. A cookie of any other shape is ignored without a round trip,
  and a key the store did not draw is never used (no session fixation).
- Expiry is a TTL. A session lives ``get_expiry_age()`` seconds after its last save,
  as in Django (``set_expiry()`` per session; ``SESSION_SAVE_EVERY_REQUEST`` for a
  sliding expiry; ``idle_timeout`` is the default age and the cookie's), and never
  longer than ``absolute_timeout`` after it was created. ``clear_expired()``
  (``manage.py clearsessions``) has nothing to do: it is a no-op.
- ``cycle_key()`` moves the data to a new key in one atomic script: the old key
  stops working at once.
- Values are JSON (the semantics of Django's default ``JSONSerializer``, whatever
  ``SESSION_SERIALIZER`` says; never pickle): anything else raises ``TypeError``.
- A save writes only the top-level keys that changed, so concurrent requests changing
  different keys both persist; a save after a concurrent log-out raises
  ``UpdateError`` (Django answers 400, ``SessionInterrupted``) instead of bringing
  the session back.
- The logged-in user (``_auth_user_id``) is indexed: ``get_store().destroy_all(user.pk)``
  logs a user out everywhere, ``get_store().sessions_of(user.pk)`` lists their sessions.
- Redis errors never reach the view: a session that cannot be loaded is empty and is
  not saved, a failed save or delete is logged (``gatekeep.sessions``).

Every operation is one round trip, except a save that shortens the session's
expiry (two: the write, then the shorter TTL).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from django.contrib.sessions.backends.base import SessionBase, UpdateError  # type: ignore[import-untyped]
from django.core.signals import setting_changed  # type: ignore[import-untyped]

from ..sessions import Session
from ..sessions import SessionStore as GatekeepStore
from ..sessions._engine import Flow
from ..sessions.core import STORE_ERRORS, logger
from ..sessions.store import is_session_id, new_id
from .conf import build_session_store

__all__ = ["SessionStore", "get_store"]

T = TypeVar("T")

#: Keys ``django.contrib`` keeps in the session.
EXPIRY_KEY = "_session_expiry"
USER_KEY = "_auth_user_id"

_lock = threading.Lock()
_get = dict.get
_MISSING: Any = object()
_store: GatekeepStore | None = None


def get_store() -> GatekeepStore:
    """The engine's :class:`~gatekeep.sessions.SessionStore`, built from
    ``settings.GATEKEEP["sessions"]`` on first use (rebuilt when the settings change)."""
    global _store
    store = _store
    if store is None:
        with _lock:
            if _store is None:
                _store = build_session_store()
            store = _store
    return store


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    global _store
    if setting in ("GATEKEEP", "SESSION_COOKIE_AGE"):
        _store = None


setting_changed.connect(_settings_changed)


#: Each store's variants with another idle timeout, made once (a copy of the store
#: per request cost more than the rest of a load's client side).
_variants: weakref.WeakKeyDictionary[GatekeepStore, dict[int, GatekeepStore]] = (
    weakref.WeakKeyDictionary()
)


def _with_idle(store: GatekeepStore, idle_us: int) -> GatekeepStore:
    """``store`` with an idle timeout of ``idle_us`` (a session's own ``set_expiry``)."""
    if idle_us == store.idle_us:
        return store
    known = _variants.get(store)
    if known is None:
        known = _variants[store] = {}
    variant = known.get(idle_us)
    if variant is None:
        if len(known) >= 64:  # expiries given as datetimes: a new timeout each time
            known.clear()
        variant = known[idle_us] = store.with_idle_timeout(idle_us / 1_000_000)
    return variant


def _fetch(store: GatekeepStore, session_id: str) -> Flow[Session | None]:
    """Read a session without moving its deadline (Django's expiry runs from the
    last save); None when there is none."""
    # The idle check of the read uses the absolute timeout: the key's TTL, set by
    # the last save with that session's own expiry, is what ends it.
    return (yield from _with_idle(store, store.absolute_us).peek_flow(session_id))


class SessionStore(SessionBase):  # type: ignore[misc]
    """``SessionBase`` over gatekeep's store; see the module docstring."""

    _session_key: str | None  # SessionBase's validating property

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        #: The gatekeep session behind ``session_key``, once loaded or saved.
        self._gk: Session | None = None
        #: The idle timeout (µs) the store's TTL was last set with for ``_gk``.
        self._stored_us = 0
        #: The store could not be reached when loading: the session is not saved.
        self._unavailable = False

    # -- keys and expiry ---------------------------------------------------------------

    def _validate_session_key(self, key: Any) -> bool:
        return is_session_id(key)

    def _get_new_session_key(self) -> str:
        return new_id()

    async def _aget_new_session_key(self) -> str:
        return new_id()

    def get_session_cookie_age(self) -> int:
        return get_store().idle_us // 1_000_000

    def _age_us(self, expiry: Any, since_us: int | None) -> int:
        """µs a session with this ``_session_expiry`` lives after ``since_us`` (None: now)."""
        store = get_store()
        if since_us is None:
            since_us = time.time_ns() // 1000
        if isinstance(expiry, str):
            try:
                # naive: local time, as Django's timezone.now() without USE_TZ
                return round(datetime.fromisoformat(expiry).timestamp() * 1e6) - since_us
            except (ValueError, OverflowError, OSError):
                return store.idle_us
        if isinstance(expiry, (int, float)) and not isinstance(expiry, bool) and expiry:
            return round(min(expiry, store.absolute_us / 1e6) * 1_000_000)
        return store.idle_us

    # -- flows: each operation once, without I/O ----------------------------------------

    def _load_flow(self) -> Flow[dict[str, Any]]:
        self._gk = None
        sid = self.session_key
        gk = None if sid is None else (yield from _fetch(get_store(), sid))
        if gk is None:
            self._session_key = None
            return {}
        data = dict(gk)
        self._gk = gk
        self._stored_us = self._age_us(data.get(EXPIRY_KEY), gk.last_seen_us)
        return data

    def _write_flow(self, gk: Session, data: dict[str, Any]) -> Flow[bool]:
        """Save ``data`` as ``gk`` (changed keys only), with the session's own expiry."""
        store = get_store()
        for key in [k for k in gk if k not in data]:  # (a use: gk.modified looks)
            del gk[key]
        for key, value in data.items():
            # The same object (the load shares them with data) needs no write: the save
            # compares lists and dicts with the store's copy, and measures them again.
            if _get(gk, key, _MISSING) is not value:
                gk[key] = value
        uid = data.get(USER_KEY)
        user = str(uid) if isinstance(uid, (str, int)) and str(uid) else None
        if user != gk.user_id:
            gk.set_user(user, regenerate=False)
        age_us = min(self._age_us(data.get(EXPIRY_KEY), None), store.absolute_us)
        if age_us <= 0:  # an expiry in the past: the session is over
            yield from store.destroy_flow(gk)
            return True
        # The store drops a session idle longer than the timeout a call carries: write
        # with the longer of the old and the new timeouts, then shorten the TTL.
        check_us = max(age_us, self._stored_us)
        writer = _with_idle(store, check_us)
        if gk.id is None or gk.modified:
            ok = yield from writer.save_flow(gk)
        else:  # nothing changed (SESSION_SAVE_EVERY_REQUEST): extend the TTL only
            ok = yield from writer.touch_flow(gk.id or "")
        if not ok:
            return False
        if age_us < check_us:
            yield from _with_idle(store, age_us).touch_flow(gk.id or "")
        self._stored_us = age_us
        return True

    def _save_flow(self, data: dict[str, Any]) -> Flow[None]:
        gk = self._gk
        if gk is None or gk.id != self.session_key:
            # The data was replaced without being read (e.g. clear()): fetch the record.
            sid = self.session_key
            gk = None if sid is None else (yield from _fetch(get_store(), sid))
            if gk is None:
                raise UpdateError
            self._gk = gk
            self._stored_us = self._age_us(gk.get(EXPIRY_KEY), gk.last_seen_us)
        if not (yield from self._write_flow(gk, data)):
            self._gk = None
            raise UpdateError

    def _create_flow(self, data: dict[str, Any]) -> Flow[None]:
        store = get_store()
        gk = store.new()
        self._stored_us = 0
        self._gk = None
        if not (yield from self._write_flow(gk, data)):
            raise RuntimeError("the store refused a new session")  # never: ids are fresh
        self._session_key = gk.id or new_id()  # an expiry in the past: a key never stored
        self._gk = gk if gk.id else None
        self.modified = True

    def _cycle_flow(self, data: dict[str, Any]) -> Flow[None]:
        gk, old = self._gk, self.session_key
        if gk is not None and old is not None and gk.id == old:
            gk.regenerate()  # one script moves the data; the old key is refused from now on
            if (yield from self._write_flow(gk, data)):
                self._session_key = gk.id or new_id()
                self._gk = gk if gk.id else None
                self.modified = True
                return
        yield from self._create_flow(data)
        if old is not None:
            yield from get_store().destroy_flow(old)

    def _delete_flow(self, session_key: str | None) -> Flow[None]:
        key = self.session_key if session_key is None else session_key
        if key is None:
            return
        gk = self._gk
        mine = gk is not None and gk.id == key
        yield from get_store().destroy_flow(key, gk.user_id if gk is not None and mine else None)
        if mine:
            self._gk = None

    # -- drivers -------------------------------------------------------------------------

    def _run(self, flow: Flow[T], failed: Callable[[BaseException], T]) -> T:
        try:
            return get_store().run(flow)
        except STORE_ERRORS as exc:
            return failed(exc)

    async def _arun(self, flow: Flow[T], failed: Callable[[BaseException], T]) -> T:
        try:
            return await get_store().arun(flow)
        except STORE_ERRORS as exc:
            return failed(exc)

    def _load_failed(self, exc: BaseException) -> dict[str, Any]:
        logger.warning(
            "session store unavailable, continuing with an empty session that "
            "will not be saved: %r",
            exc,
        )
        self._unavailable = True
        return {}

    def _save_failed(self, exc: BaseException) -> None:
        logger.warning("session store unavailable, the session was not saved: %r", exc)
        if self.session_key is None:
            self._session_key = new_id()  # never stored: the next request starts afresh
            self.modified = True

    @staticmethod
    def _delete_failed(exc: BaseException) -> None:
        logger.warning("session store unavailable, the session was not deleted: %r", exc)

    def _skip_unavailable(self) -> bool:
        if self._unavailable:
            logger.warning("session not saved: the store was unavailable when it was loaded")
        return bool(self._unavailable)

    # -- the SessionBase contract ----------------------------------------------------------

    def load(self) -> dict[str, Any]:
        return self._run(self._load_flow(), self._load_failed)

    async def aload(self) -> dict[str, Any]:
        return await self._arun(self._load_flow(), self._load_failed)

    def exists(self, session_key: str) -> bool:
        store = get_store()
        try:
            return _with_idle(store, store.absolute_us).exists(session_key)
        except STORE_ERRORS:
            return False

    async def aexists(self, session_key: str) -> bool:
        store = get_store()
        try:
            return await _with_idle(store, store.absolute_us).aexists(session_key)
        except STORE_ERRORS:
            return False

    def create(self) -> None:
        """Save the current data under a new key the store draws."""
        self._run(self._create_flow(self._get_session(no_load=True)), self._save_failed)

    async def acreate(self) -> None:
        data = await self._aget_session(no_load=True)
        await self._arun(self._create_flow(data), self._save_failed)

    def save(self, must_create: bool = False) -> None:
        """Write what changed. ``must_create``: a new session, under a new key (the store
        never takes a key from outside). ``UpdateError`` when the session is gone."""
        if self.session_key is None or must_create:
            return self.create()
        data = self._get_session()
        if self._skip_unavailable():
            return None
        self._run(self._save_flow(data), self._save_failed)
        return None

    async def asave(self, must_create: bool = False) -> None:
        if self.session_key is None or must_create:
            return await self.acreate()
        data = await self._aget_session()
        if self._skip_unavailable():
            return None
        await self._arun(self._save_flow(data), self._save_failed)
        return None

    def delete(self, session_key: str | None = None) -> None:
        self._run(self._delete_flow(session_key), self._delete_failed)

    async def adelete(self, session_key: str | None = None) -> None:
        await self._arun(self._delete_flow(session_key), self._delete_failed)

    def cycle_key(self) -> None:
        """A new key for the same data, atomically (``django.contrib.auth.login``)."""
        data = self._get_session()
        self._run(self._cycle_flow(data), self._save_failed)
        self._session_cache = data

    async def acycle_key(self) -> None:
        data = await self._aget_session()
        await self._arun(self._cycle_flow(data), self._save_failed)
        self._session_cache = data

    # flush / aflush: SessionBase's (clear, delete, forget the key) over the above.

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: every session key carries a TTL, Redis expires them."""

    @classmethod
    async def aclear_expired(cls) -> None:
        """Nothing to do: every session key carries a TTL, Redis expires them."""

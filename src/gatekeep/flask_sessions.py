"""Flask: ``flask.session`` backed by gatekeep's server-side store.

>>> from gatekeep.flask_sessions import GatekeepSessionInterface
>>> GatekeepSessionInterface(SessionStore(RedisBackend(url))).init_app(app)  # doctest: +SKIP

(or ``app.session_interface = GatekeepSessionInterface(...)``; ``init_app`` also
checks the configuration at once). ``session`` works unchanged: a dict of JSON
values, ``session.permanent``, ``session.modified`` (in-place changes of nested
values are detected, so setting it is never needed). It also has gatekeep's
operations:

>>> session.regenerate()        # a new id, same data: on every privilege change
>>> session.set_user(user.id)   # log in: index the session under the user, new id
>>> session.destroy()           # log out (session.clear() ends the session too)

The cookie holds only the session id, signed (itsdangerous, HMAC-SHA256) with
``SECRET_KEY``; ``SECRET_KEY_FALLBACKS`` and ``secret_keys=`` also verify, for key
rotation. It is set with the defaults of gatekeep's middleware, HttpOnly,
``SameSite=Lax`` and ``Secure``, and takes ``SESSION_COOKIE_NAME``, ``_DOMAIN``,
``_PATH`` and ``_SAMESITE`` from Flask's config. Flask's ``SESSION_COOKIE_SECURE``
defaults to False, which cannot be told from an explicit False: the cookie is Secure
unless ``https_only=False`` is passed (for local development over plain http).
``Set-Cookie`` goes out only when the id changes (new session, regenerate), when
``permanent`` changes, or to delete the cookie when the session ends; a tampered,
expired or unknown cookie gives a fresh session. A permanent session's cookie lasts
until the session's absolute expiry, a non-permanent one until the browser closes;
the store ends sessions idle for ``PERMANENT_SESSION_LIFETIME`` (when the interface
builds the store) whatever the cookie says.

The session loads on first use (one round trip; a request that never touches it
costs none), and is saved, when changed, after the response is built (one round
trip), never after a 5xx. Store errors are never a 500: a session that cannot be
loaded is empty; one that cannot be written turns the response into a 503 with
``Retry-After`` (``on_write_error="ignore"`` keeps the view's response).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin

from .sessions.cookies import cookie_values
from .sessions.core import SAVE_ERRORS, STORE_ERRORS, RequestState, SessionCore
from .sessions.session import LOADED, NEW, PENDING, UNAVAILABLE, Session
from .sessions.store import DAY, SessionStore

__all__ = ["FlaskSession", "GatekeepSessionInterface"]

_EXT = "gatekeep.sessions"


class FlaskSession(Session, SessionMixin):
    """A gatekeep :class:`~gatekeep.sessions.Session` with Flask's ``SessionMixin``."""

    __slots__ = ("_forced", "_had_cookie")

    def __init__(self, data: dict[str, Any] | None = None, *, id: str | None = None,
                 state: str = NEW, max_size: int | None = None) -> None:
        super().__init__(data, id=id, state=state, max_size=max_size)
        self._forced = False
        #: The request carried a cookie of our name (emptying the session deletes it).
        self._had_cookie = False

    @property
    def new(self) -> bool:  # type: ignore[override]
        """Not stored yet."""
        return self.state == NEW

    @property
    def modified(self) -> bool:
        """Whether a save would write anything (nested in-place changes included)."""
        return self._forced or bool(Session.modified.fget(self))  # type: ignore[attr-defined]

    @modified.setter
    def modified(self, value: bool) -> None:
        # Flask code sets it after changing a nested value; changes are found anyway.
        self._forced = bool(value)


@dataclass(frozen=True, slots=True)
class _AppState:
    interface: GatekeepSessionInterface
    #: Sets a cookie with Max-Age (permanent sessions); the other, a browser-session one.
    persistent: SessionCore
    transient: SessionCore

    @property
    def store(self) -> SessionStore:
        return self.persistent.store


class GatekeepSessionInterface(SessionInterface):
    """Flask sessions in a :class:`~gatekeep.sessions.SessionStore`.

    - ``store``: a :class:`SessionStore`, a Redis URL, or None (in-process: one
      process only). A URL or None builds a store whose idle timeout is
      ``PERMANENT_SESSION_LIFETIME`` and absolute timeout ``absolute_timeout``
      (30 days, or the idle timeout if longer);
    - ``secret_keys``: more keys that verify cookies (old keys being retired);
      ``SECRET_KEY`` signs;
    - ``https_only``: False drops ``Secure`` (plain-http development);
    - ``host_prefix``: name the cookie ``__Host-<SESSION_COOKIE_NAME>``;
    - ``lazy``: load on first use (default) rather than when the request starts;
    - ``on_write_error``: when the store cannot write a changed session, ``"503"``
      (default) answers 503 with ``Retry-After`` instead of the view's response (the
      user is not told "logged in" or "logged out" when it did not happen), as
      gatekeep's middleware do; ``"ignore"`` sends the view's response
      (``session.save_failed`` is set).
    """

    pickle_based = False

    def __init__(self, store: SessionStore | str | None = None, *,
                 secret_keys: Sequence[str | bytes] = (), https_only: bool = True,
                 host_prefix: bool = False, lazy: bool = True,
                 absolute_timeout: float | None = None, on_write_error: str = "503") -> None:
        if not isinstance(store, (SessionStore, str)) and store is not None:
            raise TypeError("store must be a SessionStore, a Redis URL or None (in-process), "
                            f"not {type(store).__name__}")
        if isinstance(secret_keys, (str, bytes)):
            secret_keys = [secret_keys]
        self.store = store
        self.secret_keys = list(secret_keys)
        self.https_only = bool(https_only)
        self.host_prefix = bool(host_prefix)
        self.lazy = bool(lazy)
        self.absolute_timeout = absolute_timeout
        self.on_write_error = on_write_error

    def init_app(self, app: Flask) -> None:
        """Install on ``app`` and check its configuration now (raises on a bad one)."""
        app.session_interface = self
        if self._state(app) is None:
            raise RuntimeError("gatekeep sessions need app.secret_key (SECRET_KEY): generate "
                               "one with `python -c 'import secrets; "
                               "print(secrets.token_urlsafe(32))'`")

    def _state(self, app: Flask) -> _AppState | None:
        state: _AppState | None = app.extensions.get(_EXT)
        if state is not None and state.interface is self:
            return state
        if not app.secret_key:
            return None  # Flask's NullSession explains what is missing
        keys = [app.secret_key, *self.secret_keys,
                *(app.config.get("SECRET_KEY_FALLBACKS") or ())]
        store = self.store
        if not isinstance(store, SessionStore):
            idle = app.permanent_session_lifetime.total_seconds()
            absolute = self.absolute_timeout or max(30 * DAY, idle)
            store = SessionStore(store, idle_timeout=idle, absolute_timeout=absolute)
        same_site = (self.get_cookie_samesite(app) or "lax").lower()
        options: dict[str, Any] = dict(
            session_cookie=self.get_cookie_name(app), path=self.get_cookie_path(app),
            same_site=same_site, https_only=self.https_only,
            domain=self.get_cookie_domain(app), store=store, host_prefix=self.host_prefix,
            on_write_error=self.on_write_error)
        state = _AppState(self, SessionCore(keys, **options),
                          SessionCore(keys, max_age=None, **options))
        app.extensions[_EXT] = state
        return state

    # -- the SessionInterface contract ----------------------------------------------------

    def open_session(self, app: Flask, request: Request) -> FlaskSession | None:
        state = self._state(app)
        if state is None:
            return None
        core = state.persistent
        values = cookie_values([request.environ.get("HTTP_COOKIE", "")],
                               core.policy.cookie_name)
        picked = core.signer.pick(values, core.cookie_max_age)
        if picked is None:
            session = FlaskSession(max_size=state.store.max_size)
        else:
            session = FlaskSession(id=picked[0], state=PENDING, max_size=state.store.max_size)
            session.signed_at_us = round(picked[1] * 1_000_000)
            session._loader = lambda: self._load(state.store, session)
            if not self.lazy:
                self._load(state.store, session)
        session._had_cookie = bool(values)
        return session

    @staticmethod
    def _load(store: SessionStore, session: Session) -> None:
        try:
            store.load_into(session)
        except STORE_ERRORS as exc:
            SessionCore.load_failed(RequestState(session, True), exc)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        state = self._state(app)
        if state is None or not isinstance(session, FlaskSession):
            return
        if session.accessed:
            response.vary.add("Cookie")
        if session.state in (PENDING, UNAVAILABLE):
            return
        permanent = dict.get(session, "_permanent") is True
        was_permanent = session._saved.get("_permanent") == "true"
        core = state.persistent if permanent else state.transient
        try:
            cookies = state.store.run(core.finish(RequestState(session, session._had_cookie),
                                                  response.status_code))
        except SAVE_ERRORS as exc:
            failed = core.save_failed(RequestState(session, session._had_cookie), exc)
            if failed is not None:  # on_write_error="503": this response instead
                code, headers, body = failed
                response.status_code = code
                response.set_data(body)
                for name, value in headers:
                    response.headers[name] = value
            return
        if (not cookies and permanent != was_permanent and session.state == LOADED
                and session.id and response.status_code < 500):
            # Same id, another lifetime: the cookie is sent again with it.
            max_age = None
            if permanent and session.absolute_expires_us and session.last_seen_us:
                max_age = (session.absolute_expires_us - session.last_seen_us) // 1_000_000
            cookies = [core.policy.set(core.signer.sign(session.id), max_age)]
        for cookie in cookies:
            response.headers.add("Set-Cookie", cookie)

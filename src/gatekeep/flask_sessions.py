"""Flask: ``flask.session`` backed by gatekeep's server-side store.

>>> from gatekeep.flask_sessions import GatekeepSessionInterface
>>> GatekeepSessionInterface(SessionStore(RedisBackend(url))).init_app(app)  # doctest: +SKIP

(or ``app.session_interface = GatekeepSessionInterface(...)``; ``init_app`` also
checks the configuration at once). ``session`` works unchanged: a dict of JSON
values, ``session.permanent``, ``session.modified`` (in-place changes of nested
values are detected, so setting it is never needed), ``session.accessed`` (and
``Vary: Cookie``). It also has gatekeep's operations:

>>> session.regenerate()        # a new id, same data: on every privilege change
>>> session.set_user(user.id)   # log in: index the session under the user, new id
>>> session.destroy()           # log out (session.clear() ends the session too)

The cookie holds only the session id, signed (itsdangerous, HMAC-SHA256) with
``SECRET_KEY``; ``SECRET_KEY_FALLBACKS`` and ``secret_keys=`` also verify, for key
rotation. It follows Flask's ``SESSION_COOKIE_NAME``, ``_DOMAIN``, ``_PATH`` (else
``APPLICATION_ROOT``), ``_HTTPONLY``, ``_SECURE``, ``_SAMESITE`` and
``_PARTITIONED``, read when ``init_app`` runs (or at the first request), with two
deliberate differences: ``SameSite=Lax`` when Flask's is unset, and ``Secure``
unless ``https_only=False`` is passed (Flask's ``SESSION_COOKIE_SECURE`` defaults to
False, which cannot be told from an explicit False; True always makes it Secure).

A permanent session's cookie expires with the session (``PERMANENT_SESSION_LIFETIME``
of idleness, the store's idle timeout when the interface builds the store, or its
absolute lifetime, the sooner); a non-permanent one ends with the browser. As in
Flask, a permanent session's cookie is sent again on every response while
``SESSION_REFRESH_EACH_REQUEST`` is True, and only when the session changed while it
is False. A request that never touches the session refreshes its cookie without
asking the store (the cookie's signature says the session is permanent), so the
server's idle deadline does not move for it. A non-permanent session's cookie goes
out only when the id changes (new session, regenerate) or the session ends (Flask's
cookie carries the data, so Flask sends it on every change). A tampered, expired or
unknown cookie gives a fresh session.

The session loads on first use (one read-only round trip; a request that never
touches it costs none), and is saved, when changed, after the response is built (one
round trip), never after a 5xx. Its idle deadline moves with the save, or with a
touch once a tenth of the idle timeout has passed since it last moved (as in the
ASGI middleware). Store errors are never a 500: a session that cannot be
loaded is empty; one that cannot be written turns the response into a 503 with
``Retry-After`` (``on_write_error="ignore"`` keeps the view's response).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin

from .sessions.cookies import CookieSigner, cookie_values
from .sessions.core import SAVE_ERRORS, STORE_ERRORS, RequestState, SessionCore
from .sessions.session import ADOPTED, LOADED, NEW, PENDING, Session
from .sessions.store import DAY, SessionStore

__all__ = ["FlaskSession", "GatekeepSessionInterface"]

_EXT = "gatekeep.sessions"
#: Cookies of permanent sessions are signed with this salt, those of the others with
#: CookieSigner's own: the cookie alone tells whether to refresh it.
PERMANENT_SALT = "gatekeep.session.permanent"


class FlaskSession(Session, SessionMixin):
    """A gatekeep :class:`~gatekeep.sessions.Session` with Flask's ``SessionMixin``."""

    __slots__ = ("_forced", "cookie_old_key", "cookie_permanent", "cookie_value", "had_cookie")

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        state: str = NEW,
        max_size: int | None = None,
    ) -> None:
        super().__init__(data, id=id, state=state, max_size=max_size)
        self._forced = False
        #: The request carried a cookie of our name (emptying the session deletes it).
        self.had_cookie = False
        #: The request's cookie was signed as a permanent session's.
        self.cookie_permanent = False
        #: The request's valid cookie value, sent back as is when it is refreshed.
        self.cookie_value: str | None = None
        #: That cookie was signed with an old key: it is re-signed on the way out.
        self.cookie_old_key = False

    @property
    def new(self) -> bool:  # type: ignore[override]
        """Not stored yet."""
        return self.state == NEW

    @property
    def modified(self) -> bool:
        """Whether a save would write anything (nested in-place changes included)."""
        return self._forced or super().modified

    @modified.setter
    def modified(self, value: bool) -> None:
        # Flask code sets it after changing a nested value; changes are found anyway.
        self._forced = bool(value)


@dataclass(frozen=True, slots=True)
class _Cookie:
    """Flask's cookie settings, as ``Response.set_cookie`` takes them."""

    name: str
    domain: str | None
    path: str
    httponly: bool
    secure: bool
    samesite: str
    partitioned: bool

    def set(self, response: Response, value: str, max_age: int | None) -> None:
        response.set_cookie(
            self.name,
            value,
            max_age=max_age,
            domain=self.domain,
            path=self.path,
            secure=self.secure,
            httponly=self.httponly,
            samesite=self.samesite,
            partitioned=self.partitioned,
        )
        _vary_cookie(response)

    def delete(self, response: Response) -> None:
        response.delete_cookie(
            self.name,
            domain=self.domain,
            path=self.path,
            secure=self.secure,
            httponly=self.httponly,
            samesite=self.samesite,
            partitioned=self.partitioned,
        )
        _vary_cookie(response)


@dataclass(frozen=True, slots=True)
class _AppState:
    interface: GatekeepSessionInterface
    core: SessionCore
    #: Signs and verifies the cookies of permanent sessions (core.signer: the others).
    permanent_signer: CookieSigner
    cookie: _Cookie
    refresh: bool

    @property
    def store(self) -> SessionStore:
        return self.core.store

    def signer(self, permanent: bool) -> CookieSigner:
        return self.permanent_signer if permanent else self.core.signer


class GatekeepSessionInterface(SessionInterface):
    """Flask sessions in a :class:`~gatekeep.sessions.SessionStore`.

    - ``store``: a :class:`SessionStore`, a Redis URL, or None (in-process: one
      process only). A URL or None builds a store whose idle timeout is
      ``PERMANENT_SESSION_LIFETIME`` and absolute timeout ``absolute_timeout``
      (30 days, or the idle timeout if longer);
    - ``secret_keys``: more keys that verify cookies (old keys being retired);
      ``SECRET_KEY`` signs;
    - ``https_only``: False drops ``Secure`` unless ``SESSION_COOKIE_SECURE`` is True
      (plain-http development);
    - ``host_prefix``: name the cookie ``__Host-<SESSION_COOKIE_NAME>``;
    - ``lazy``: load on first use (default) rather than when the request starts;
    - ``on_write_error``: when the store cannot write a changed session, ``"503"``
      (default) answers 503 with ``Retry-After`` instead of the view's response (the
      user is not told "logged in" or "logged out" when it did not happen), as
      gatekeep's middleware do; ``"ignore"`` sends the view's response
      (``session.save_failed`` is set).
    """

    pickle_based = False

    def __init__(
        self,
        store: SessionStore | str | None = None,
        *,
        secret_keys: Sequence[str | bytes] = (),
        https_only: bool = True,
        host_prefix: bool = False,
        lazy: bool = True,
        absolute_timeout: float | None = None,
        on_write_error: str = "503",
    ) -> None:
        if not isinstance(store, (SessionStore, str)) and store is not None:
            raise TypeError(
                "store must be a SessionStore, a Redis URL or None (in-process), "
                f"not {type(store).__name__}"
            )
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
            raise RuntimeError(
                "gatekeep sessions need app.secret_key (SECRET_KEY): generate "
                "one with `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`"
            )

    def _state(self, app: Flask) -> _AppState | None:
        state: _AppState | None = app.extensions.get(_EXT)
        if state is not None and state.interface is self:
            return state
        if not app.secret_key:
            return None  # Flask's NullSession explains what is missing
        keys = [app.secret_key, *self.secret_keys, *(app.config.get("SECRET_KEY_FALLBACKS") or ())]
        store = self.store
        if not isinstance(store, SessionStore):
            idle = app.permanent_session_lifetime.total_seconds()
            absolute = self.absolute_timeout or max(30 * DAY, idle)
            store = SessionStore(store, idle_timeout=idle, absolute_timeout=absolute)
        same_site = (self.get_cookie_samesite(app) or "lax").lower()
        # Flask >= 3.1 has SESSION_COOKIE_PARTITIONED (and a hook to override).
        hook = getattr(self, "get_cookie_partitioned", None)
        partitioned = bool(hook(app) if hook else app.config.get("SESSION_COOKIE_PARTITIONED"))
        # A Partitioned cookie is always Secure (browsers require it; Werkzeug sets it).
        secure = self.https_only or bool(self.get_cookie_secure(app)) or partitioned
        domain = self.get_cookie_domain(app) or None
        # SessionCore checks the settings (name, SameSite=None needs Secure, __Host-).
        core = SessionCore(
            keys,
            session_cookie=self.get_cookie_name(app),
            path=self.get_cookie_path(app),
            same_site=same_site,
            https_only=secure,
            domain=domain,
            store=store,
            host_prefix=self.host_prefix,
            on_write_error=self.on_write_error,
        )
        cookie = _Cookie(
            core.policy.cookie_name,
            domain,
            core.policy.path,
            bool(self.get_cookie_httponly(app)),
            secure,
            same_site.title(),
            partitioned,
        )
        state = _AppState(
            self,
            core,
            CookieSigner(keys, salt=PERMANENT_SALT),
            cookie,
            bool(app.config.get("SESSION_REFRESH_EACH_REQUEST", True)),
        )
        app.extensions[_EXT] = state
        return state

    # -- the SessionInterface contract ----------------------------------------------------

    def open_session(self, app: Flask, request: Request) -> FlaskSession | None:
        state = self._state(app)
        if state is None:
            return None
        values = cookie_values([request.environ.get("HTTP_COOKIE", "")], state.cookie.name)
        max_age = state.core.cookie_max_age
        permanent = False
        picked = state.core.signer.pick(values, max_age) if values else None
        if picked is None and values:
            picked = state.permanent_signer.pick(values, max_age)
            permanent = picked is not None
        max_size = state.store.max_size
        if picked is None:
            session = FlaskSession(max_size=max_size)
        else:
            session = FlaskSession(id=picked[0], state=PENDING, max_size=max_size)
            session.signed_at_us = round(picked[1] * 1_000_000)
            session.cookie_permanent = permanent
            session.cookie_old_key = picked[2]
            session.cookie_value = values[0] if len(values) == 1 and not picked[2] else None
            session.set_loaders(lambda: self._load(state.store, session), None)
            if not self.lazy:
                self._load(state.store, session)
        session.had_cookie = bool(values)
        return session

    @staticmethod
    def _load(store: SessionStore, session: Session) -> None:
        try:
            # a read without the touch: finish() touches it if due (RequestState.peeked)
            store.run(store.load_flow(session, touch=False))
        except STORE_ERRORS as exc:
            SessionCore.load_failed(RequestState(session, True), exc)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        state = self._state(app)
        if state is None or not isinstance(session, FlaskSession):
            return
        if session.accessed:
            _vary_cookie(response)
        if response.status_code >= 500:
            return  # nothing is saved, nor refreshed, after a server error
        if session.state == PENDING:  # never used by this request: never loaded
            # (modified: the app set session.modified = True without using it)
            if session.cookie_permanent and (state.refresh or session.modified):
                self._refresh_unloaded(state, session, response)
            return
        if session.state == NEW and not session.accessed:
            return
        permanent = session.permanent
        # Flask's rule (should_set_cookie): a permanent session's cookie goes out on
        # every response with SESSION_REFRESH_EACH_REQUEST, else when it changed.
        resend = permanent and (state.refresh or session.modified)
        request_state = RequestState(session, session.had_cookie, peeked=True)
        try:
            cookies = state.store.run(state.core.finish(request_state, response.status_code))
        except SAVE_ERRORS as exc:
            failed = state.core.save_failed(request_state, exc)
            if failed is not None:  # on_write_error="503": this response instead
                code, headers, body = failed
                response.status_code = code
                response.set_data(body)
                for name, value in headers:
                    response.headers[name] = value
            return
        if cookies and cookies[-1].startswith(state.cookie.name + "=;"):
            state.cookie.delete(response)  # the session ended
            return
        if session.state not in (LOADED, ADOPTED) or session.id is None:
            return  # gone meanwhile (destroyed or regenerated elsewhere): leave it be
        # A new id, another lifetime than the cookie says, a refresh, or a cookie signed
        # with an old key (so that the key can be retired): the cookie.
        if not (
            cookies or permanent != session.cookie_permanent or resend or session.cookie_old_key
        ):
            return
        signed = session.cookie_value
        if cookies or permanent != session.cookie_permanent or signed is None:
            signed = state.signer(permanent).sign(session.id)
        state.cookie.set(response, signed, _lifetime(session) if permanent else None)

    @staticmethod
    def _refresh_unloaded(state: _AppState, session: FlaskSession, response: Response) -> None:
        """Send a permanent session's cookie again without asking the store: its
        lifetime is the idle timeout from now, capped by the absolute lifetime counted
        from the signature (never earlier than the session's creation: the cap may be
        late, never early, and the store ends the session on time whatever the cookie
        says)."""
        assert session.signed_at_us is not None and session.id is not None
        store = state.store
        now_us = time.time_ns() // 1000
        left_us = min(store.idle_us, session.signed_at_us + store.absolute_us - now_us)
        if left_us <= 0:
            return
        value = session.cookie_value or state.permanent_signer.sign(session.id)
        state.cookie.set(response, value, left_us // 1_000_000)


def _vary_cookie(response: Response) -> None:
    """``response.vary.add("Cookie")`` without building werkzeug's HeaderSet (which
    cost as much as the rest of a read-only request's save): the same header."""
    headers = response.headers
    vary = headers.get("Vary")
    if not vary:
        headers["Vary"] = "Cookie"
    elif "cookie" not in [t.strip().lower() for t in vary.split(",")]:
        headers["Vary"] = vary + ", Cookie"


def _lifetime(session: Session) -> int | None:
    """Seconds the session lives unless used again (idle or absolute expiry)."""
    if session.expires_us is None or session.last_seen_us is None:
        return None
    return max(0, (session.expires_us - session.last_seen_us) // 1_000_000)

"""What the ASGI and WSGI session middleware share: everything but the I/O.

A request goes through three steps: :meth:`SessionCore.begin` reads the cookie
(pure), :meth:`SessionCore.load` fills the session (a flow: one round trip), and
:meth:`SessionCore.finish` decides what to write and which cookie to send (a
flow: at most one round trip, two when a log-out also leaves data for a new
session). The middleware drive these flows with their own I/O and only adapt
headers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SessionWriteFailed
from ..outage import STORE_ERRORS as _STORE_ERRORS
from ..outage import is_outage
from ._engine import Flow
from .cookies import CookiePolicy, CookieSigner, cookie_values
from .logs import logger, scrub
from .session import ADOPTED, LOADED, NEW, PENDING, UNAVAILABLE, Session, SessionTooLarge
from .store import DAY, SessionStore

__all__ = [
    "DEFAULT",
    "ON_WRITE_ERROR",
    "REFRESH_SHARE",
    "SAVE_ERRORS",
    "STORE_ERRORS",
    "RequestState",
    "SessionCore",
    "logger",
    "unavailable_response",
]

#: Errors of the store that a request survives. On load: the session is then
#: unavailable (empty, not saved). On save: the middleware answers 503 (a
#: :class:`~gatekeep.errors.SessionWriteFailed`), or lets the response go with
#: ``session.save_failed`` set (``on_write_error="ignore"``).
#: (:data:`gatekeep.outage.STORE_ERRORS`, the one list for limiters and sessions.)
STORE_ERRORS = _STORE_ERRORS

#: Errors of a save the middleware turn into a response (never a 500): the store's,
#: and a session grown past ``max_size`` by in-place changes of nested values (the
#: writes that can be checked when made raise :class:`SessionTooLarge` in the view).
SAVE_ERRORS: tuple[type[BaseException], ...] = (*STORE_ERRORS, SessionTooLarge)

#: What the middleware do when a session cannot be written.
ON_WRITE_ERROR = ("503", "ignore")

_BODY_503 = (
    b"Service Unavailable: your session could not be saved just now. "
    b"Please try again in a moment.\n"
)


_BODY_507 = (
    b"Insufficient Storage: this request's session changes are too large to be "
    b"stored, and were not saved.\n"
)


def unavailable_response(exc: BaseException) -> tuple[int, list[tuple[str, str]], bytes]:
    """The 503 that replaces a response whose session could not be written (507, with
    no Retry-After, when the session is too large: trying again will not help)."""
    if isinstance(exc, SessionTooLarge):
        return (
            507,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(_BODY_507))),
                ("Cache-Control", "no-store"),
            ],
            _BODY_507,
        )
    retry = getattr(exc, "retry_after", 1.0)
    return (
        503,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(_BODY_503))),
            ("Retry-After", str(max(1, math.ceil(retry)))),
            ("Cache-Control", "no-store"),
        ],
        _BODY_503,
    )


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


#: ``max_age`` left at its default (14 days, Starlette's).
DEFAULT: Any = _Default()


#: A cookie is sent again (re-signed, same id) once more than this share of ``max_age``
#: has passed since it was signed; a session loaded without a touch has its idle deadline
#: moved when more than this share of the idle timeout has passed since it was last seen.
REFRESH_SHARE = 0.1


@dataclass(slots=True)
class RequestState:
    session: Session
    #: The request carried a cookie of our name (so emptying the session deletes it).
    had_cookie: bool
    #: When the valid cookie was signed (seconds), or None.
    signed_at: float | None = None
    #: That cookie was signed with a key other than the first (re-signed on the way out).
    old_key: bool = False
    #: The session was read without moving its idle deadline (an eager load): the touch,
    #: if the app uses it, comes with the response.
    peeked: bool = False


class SessionCore:
    """Configuration and the I/O-free half of both session middleware.

    Parameters that Starlette's ``SessionMiddleware`` also has mean the same here:
    ``secret_key`` (or a list: the first signs, all verify), ``session_cookie``,
    ``max_age`` (seconds a session lives without being used; None: a cookie that
    ends with the browser session; 0 or less: the session ends at once, as the
    cookie Starlette sends then), ``path``, ``same_site``, ``https_only`` (on by
    default: pass False for local http), ``domain``, ``partitioned`` (CHIPS: needs
    ``https_only``). Also:

    - ``store``: a :class:`SessionStore`, a Redis URL, or None (in-process, for one
      process only). With a store, its ``idle_timeout`` replaces ``max_age``;
    - ``absolute_max_age``: seconds after which a session ends however much it is
      used (when the middleware builds the store);
    - ``host_prefix``: name the cookie ``__Host-<session_cookie>``;
    - ``strict``: never adopt an id the store does not know (when the middleware
      builds the store);
    - ``rolling``: the cookie's Max-Age is ``max_age`` and the cookie is sent again
      when it is stale (see :data:`REFRESH_SHARE`), as Starlette's is; False (Flask):
      it lasts until the session's absolute expiry;
    - ``spelling``: ``"starlette"`` writes the cookie attributes as Starlette does
      (``path=``, ``httponly``, ...), ``"title"`` as Werkzeug does (``Path=``, ...).
    """

    def __init__(
        self,
        secret_key: str | bytes | Sequence[str | bytes],
        session_cookie: str = "session",
        max_age: int | None = DEFAULT,
        path: str = "/",
        same_site: str = "lax",
        https_only: bool = True,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        store: SessionStore | str | None = None,
        absolute_max_age: int = 30 * DAY,
        host_prefix: bool = False,
        strict: bool = True,
        on_write_error: str = "503",
        rolling: bool = False,
        spelling: str = "title",
    ) -> None:
        if on_write_error not in ON_WRITE_ERROR:
            raise ValueError(
                f"on_write_error must be '503' (answer 503 Service Unavailable "
                f"with Retry-After) or 'ignore' (send the app's response, with "
                f"session.save_failed set), got {on_write_error!r}"
            )
        self.on_write_error = on_write_error
        self.signer = CookieSigner(secret_key)
        self.policy = CookiePolicy(
            session_cookie,
            path,
            domain,
            same_site,
            bool(https_only),
            bool(host_prefix),
            bool(partitioned),
            spelling,
        )
        #: The cookie's name (``__Host-`` included), read on every request.
        self.cookie_name = self.policy.cookie_name
        if (
            max_age is not DEFAULT
            and max_age is not None
            and (isinstance(max_age, bool) or not isinstance(max_age, int))
        ):
            raise ValueError(f"max_age must be an int of seconds or None, got {max_age!r}")
        if isinstance(store, SessionStore):
            if max_age is not DEFAULT and max_age is not None:
                raise ValueError(
                    "with store=, set the idle timeout on the SessionStore "
                    "(idle_timeout=) instead of max_age; max_age=None still "
                    "makes a browser-session cookie"
                )
            self.store = store
        else:
            idle = 14 * DAY if max_age is DEFAULT else max_age
            # max_age <= 0: Starlette's cookie ends at once; so does the record (1 s).
            self.store = SessionStore(
                store,
                idle_timeout=absolute_max_age if idle is None else max(idle, 1),
                absolute_timeout=absolute_max_age,
                strict=strict,
            )
        #: The cookie's Max-Age (None: a browser-session cookie).
        self.max_age: int | None = (
            None
            if max_age is None
            else (self.store.idle_us // 1_000_000 if max_age is DEFAULT else max_age)
        )
        self.rolling = bool(rolling)
        #: Whether the cookie carries Max-Age (else it ends with the browser session).
        self.persistent = max_age is not None
        #: A cookie signed longer ago than this is refused without asking the store: the
        #: absolute lifetime (the idle timeout is the store's to enforce, so a cookie
        #: issued before rolling cookies existed still works while its session lives),
        #: or with ``rolling`` and ``max_age`` <= 0, that (Starlette's "ends at once").
        self.cookie_max_age: float = self.store.absolute_us / 1e6
        if self.rolling and self.max_age is not None and self.max_age <= 0:
            self.cookie_max_age = self.max_age

    # -- step 1: read the cookie (pure) ---------------------------------------------------

    def begin(self, cookie_headers: Iterable[str]) -> RequestState:
        values = cookie_values(cookie_headers, self.cookie_name)
        picked = self.signer.pick(values, self.cookie_max_age)
        if picked is None:
            return RequestState(self.store.new(), bool(values))
        sid, signed_at, old_key = picked
        return RequestState(self.store.open(sid, signed_at=signed_at), True, signed_at, old_key)

    # -- step 2: load (one round trip) ----------------------------------------------------

    def load(self, state: RequestState, *, touch: bool = True) -> Flow[None]:
        """Fill the session; ``touch=False`` reads it without moving its idle deadline."""
        state.peeked = not touch
        return self.store.load_flow(state.session, touch=touch)

    @staticmethod
    def load_failed(state: RequestState, exc: BaseException) -> None:
        # An outage is logged once by the store (state changes); anything else (a
        # misconfigured server, a foreign key) is worth a warning each time.
        level = 10 if is_outage(exc) else 30
        logger.log(
            level,
            "gatekeep sessions: store error on load, continuing with an empty session: %s",
            scrub(f"{type(exc).__name__}: {exc}"),
            extra={"gatekeep_event": "session_load_failed"},
        )
        state.session.reset(UNAVAILABLE)

    # -- step 3: save, and the cookie to send ------------------------------------------------

    def finish(self, state: RequestState, status: int) -> Flow[list[str]]:
        """The ``Set-Cookie`` values for the response (none when nothing changed)."""
        session = state.session
        if status >= 500 or session.state == PENDING:
            return []
        if session.state == UNAVAILABLE:
            if session.unsaved_changes:
                raise SessionWriteFailed(
                    "the session store could not be reached when this "
                    "session was loaded: its changes were not saved"
                )
            return []
        destroyed = session.take_destroy()
        if destroyed is not None and destroyed[0] is not None:
            yield from self.store.destroy_flow(destroyed[0], destroyed[1])
        if not session.modified:
            if destroyed and state.had_cookie:
                return [self.policy.delete()]
            if session.state == LOADED and session.accessed:
                if (
                    state.peeked
                    and session.id is not None
                    and self._due(session.last_seen_us, self.store.idle_us / 1e6)
                ):
                    try:
                        yield from self.store.touch_flow(session.id)
                    except STORE_ERRORS as exc:  # best effort: the read went through
                        logger.debug(
                            "gatekeep sessions: touch failed: %s",
                            scrub(f"{type(exc).__name__}: {exc}"),
                            extra={"gatekeep_event": "session_touch_failed"},
                        )
                return self._refreshed(state)
            return []
        if session.empty and session.user_id is None:
            # Emptied: the session goes, and its cookie too.
            if session.state in (LOADED, ADOPTED):
                yield from self.store.destroy_flow(session)
            return [self.policy.delete()] if state.had_cookie else []
        before = session.id if session.state != NEW else None
        if not (yield from self.store.save_flow(session)):
            return []  # gone meanwhile (log-out, regenerate elsewhere): leave the cookie be
        if session.id == before:
            return self._refreshed(state)
        assert session.id is not None
        return [self._set_cookie(session)]

    @staticmethod
    def _due(since_us: float | None, period: float) -> bool:
        """More than :data:`REFRESH_SHARE` of ``period`` (s) has passed since ``since_us``."""
        return since_us is not None and time.time() - since_us / 1e6 > period * REFRESH_SHARE

    def _refreshed(self, state: RequestState) -> list[str]:
        """The cookie again, re-signed, when it was signed with an old key or (rolling)
        is stale; else nothing."""
        session = state.session
        if state.signed_at is None or session.id is None or session.state != LOADED:
            return []
        if state.old_key or (
            self.rolling
            and self.max_age is not None
            and self.max_age > 0
            and self._due(state.signed_at * 1e6, self.max_age)
        ):
            return [self._set_cookie(session)]
        return []

    def _set_cookie(self, session: Session) -> str:
        assert session.id is not None
        max_age = self.max_age if self.persistent and self.rolling else None
        if (
            self.persistent
            and not self.rolling
            and session.absolute_expires_us
            and session.last_seen_us
        ):
            max_age = (session.absolute_expires_us - session.last_seen_us) // 1_000_000
        return self.policy.set(self.signer.sign(session.id), max_age)

    def save_failed(
        self, state: RequestState, exc: BaseException
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """Record a failed write on the session; the response to send instead, if any."""
        if isinstance(exc, SessionTooLarge):  # a bug of the app's: nothing was written
            state.session.save_error = exc
            logger.error(
                "gatekeep sessions: the session was not saved: %s",
                exc,
                extra={"gatekeep_event": "session_too_large"},
            )
            return unavailable_response(exc) if self.on_write_error == "503" else None
        if not isinstance(exc, SessionWriteFailed):
            err = SessionWriteFailed(
                f"the session could not be saved: {scrub(f'{type(exc).__name__}: {exc}')}"
            )
            err.__cause__ = exc
            exc = err
        state.session.save_error = exc
        level = 10 if is_outage(exc.__cause__ or exc) else 30
        logger.log(
            level,
            "gatekeep sessions: the session was not saved: %s",
            scrub(str(exc)),
            extra={"gatekeep_event": "session_save_failed"},
        )
        if self.on_write_error == "503":
            return unavailable_response(exc)
        return None

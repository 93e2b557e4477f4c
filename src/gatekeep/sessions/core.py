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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from ..errors import BackendUnavailable, SessionWriteFailed
from ._engine import Flow
from ._redis import is_unavailable
from .cookies import CookiePolicy, CookieSigner, cookie_values
from .logs import logger, scrub
from .session import ADOPTED, LOADED, NEW, PENDING, UNAVAILABLE, Session
from .store import DAY, SessionStore

__all__ = ["DEFAULT", "ON_WRITE_ERROR", "STORE_ERRORS", "RequestState", "SessionCore",
           "logger", "unavailable_response"]

#: Errors of the store that a request survives. On load: the session is then
#: unavailable (empty, not saved). On save: the middleware answers 503 (a
#: :class:`~gatekeep.errors.SessionWriteFailed`), or lets the response go with
#: ``session.save_failed`` set (``on_write_error="ignore"``).
STORE_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError,
                                                 BackendUnavailable)

#: What the middleware do when a session cannot be written.
ON_WRITE_ERROR = ("503", "ignore")

_BODY_503 = (b"Service Unavailable: your session could not be saved just now. "
             b"Please try again in a moment.\n")


def unavailable_response(exc: BaseException) -> tuple[int, list[tuple[str, str]], bytes]:
    """The 503 that replaces a response whose session could not be written."""
    retry = getattr(exc, "retry_after", 1.0)
    return 503, [("Content-Type", "text/plain; charset=utf-8"),
                 ("Content-Length", str(len(_BODY_503))),
                 ("Retry-After", str(max(1, math.ceil(retry)))),
                 ("Cache-Control", "no-store")], _BODY_503


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


#: ``max_age`` left at its default (14 days, Starlette's).
DEFAULT: Any = _Default()


@dataclass(slots=True)
class RequestState:
    session: Session
    #: The request carried a cookie of our name (so emptying the session deletes it).
    had_cookie: bool


class SessionCore:
    """Configuration and the I/O-free half of both session middleware.

    Parameters that Starlette's ``SessionMiddleware`` also has mean the same here:
    ``secret_key`` (or a list: the first signs, all verify), ``session_cookie``,
    ``max_age`` (seconds a session lives without being used; None: a cookie that
    ends with the browser session), ``path``, ``same_site``, ``https_only`` (on by
    default: pass False for local http), ``domain``. Also:

    - ``store``: a :class:`SessionStore`, a Redis URL, or None (in-process, for one
      process only). With a store, its ``idle_timeout`` replaces ``max_age``;
    - ``absolute_max_age``: seconds after which a session ends however much it is
      used (when the middleware builds the store);
    - ``host_prefix``: name the cookie ``__Host-<session_cookie>``;
    - ``strict``: never adopt an id the store does not know (when the middleware
      builds the store).
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
        *,
        store: SessionStore | str | None = None,
        absolute_max_age: int = 30 * DAY,
        host_prefix: bool = False,
        strict: bool = True,
        on_write_error: str = "503",
    ) -> None:
        if on_write_error not in ON_WRITE_ERROR:
            raise ValueError(f"on_write_error must be '503' (answer 503 Service Unavailable "
                             f"with Retry-After) or 'ignore' (send the app's response, with "
                             f"session.save_failed set), got {on_write_error!r}")
        self.on_write_error = on_write_error
        self.signer = CookieSigner(secret_key)
        self.policy = CookiePolicy(session_cookie, path, domain, same_site, bool(https_only),
                                   bool(host_prefix))
        if isinstance(store, SessionStore):
            if max_age is not DEFAULT and max_age is not None:
                raise ValueError("with store=, set the idle timeout on the SessionStore "
                                 "(idle_timeout=) instead of max_age; max_age=None still "
                                 "makes a browser-session cookie")
            self.store = store
        else:
            idle = 14 * DAY if max_age is DEFAULT else max_age
            self.store = SessionStore(store, idle_timeout=idle or absolute_max_age,
                                      absolute_timeout=absolute_max_age, strict=strict)
        #: Whether the cookie carries Max-Age (else it ends with the browser session).
        self.persistent = max_age is not None
        #: A cookie signed longer ago than this is refused without asking the store.
        self.cookie_max_age = self.store.absolute_us / 1e6

    # -- step 1: read the cookie (pure) ---------------------------------------------------

    def begin(self, cookie_headers: Iterable[str]) -> RequestState:
        values = cookie_values(cookie_headers, self.policy.cookie_name)
        picked = self.signer.pick(values, self.cookie_max_age)
        if picked is None:
            return RequestState(self.store.new(), bool(values))
        return RequestState(self.store.open(picked[0], signed_at=picked[1]), True)

    # -- step 2: load (one round trip) ----------------------------------------------------

    def load(self, state: RequestState) -> Flow[None]:
        return self.store.load_flow(state.session)

    @staticmethod
    def load_failed(state: RequestState, exc: BaseException) -> None:
        # An outage is logged once by the store (state changes); anything else (a
        # misconfigured server, a foreign key) is worth a warning each time.
        level = 10 if is_unavailable(exc) else 30
        logger.log(level, "gatekeep sessions: store error on load, continuing with an empty "
                   "session: %s", scrub(f"{type(exc).__name__}: {exc}"),
                   extra={"gatekeep_event": "session_load_failed"})
        state.session.reset(UNAVAILABLE)

    # -- step 3: save, and the cookie to send ------------------------------------------------

    def finish(self, state: RequestState, status: int) -> Flow[list[str]]:
        """The ``Set-Cookie`` values for the response (none when nothing changed)."""
        session = state.session
        if status >= 500 or session.state == PENDING:
            return []
        if session.state == UNAVAILABLE:
            if session.unsaved_changes:
                raise SessionWriteFailed("the session store could not be reached when this "
                                         "session was loaded: its changes were not saved")
            return []
        destroyed = session.take_destroy()
        if destroyed is not None and destroyed[0] is not None:
            yield from self.store.destroy_flow(destroyed[0], destroyed[1])
        if not session.modified:
            return [self.policy.delete()] if destroyed and state.had_cookie else []
        if session.empty and session.user_id is None:
            # Emptied: the session goes, and its cookie too.
            if session.state in (LOADED, ADOPTED):
                yield from self.store.destroy_flow(session)
            return [self.policy.delete()] if state.had_cookie else []
        before = session.id if session.state != NEW else None
        if not (yield from self.store.save_flow(session)):
            return []  # gone meanwhile (log-out, regenerate elsewhere): leave the cookie be
        if session.id == before:
            return []
        assert session.id is not None
        max_age = None
        if self.persistent and session.absolute_expires_us and session.last_seen_us:
            max_age = (session.absolute_expires_us - session.last_seen_us) // 1_000_000
        return [self.policy.set(self.signer.sign(session.id), max_age)]

    def save_failed(self, state: RequestState, exc: BaseException
                    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """Record a failed write on the session; the response to send instead, if any."""
        if not isinstance(exc, SessionWriteFailed):
            err = SessionWriteFailed(f"the session could not be saved: "
                                     f"{scrub(f'{type(exc).__name__}: {exc}')}")
            err.__cause__ = exc
            exc = err
        state.session.save_error = exc
        level = 10 if is_unavailable(exc.__cause__ or exc) else 30
        logger.log(level, "gatekeep sessions: the session was not saved: %s",
                   scrub(str(exc)), extra={"gatekeep_event": "session_save_failed"})
        if self.on_write_error == "503":
            return unavailable_response(exc)
        return None

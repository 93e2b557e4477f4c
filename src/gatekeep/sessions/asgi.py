"""Pure ASGI session middleware: ``request.session`` backed by a :class:`SessionStore`.

>>> from gatekeep.sessions import SessionStore
>>> from gatekeep.sessions.asgi import SessionMiddleware
>>> app.add_middleware(SessionMiddleware, secret_key=KEY,
...                    store=SessionStore(RedisBackend(url)))      # doctest: +SKIP

Switching from Starlette's cookie ``SessionMiddleware`` changes the import (and
adds ``store=``): the parameters it has mean the same here, and Starlette's own
tests of its middleware pass against this one with ``https_only=False``
(``tests/conformance``). One difference: ``https_only`` is True by default, so
over plain http (local development) pass ``https_only=False``, or browsers will
not send the cookie back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from ._engine import MemoryExecutor
from .core import DEFAULT, SAVE_ERRORS, STORE_ERRORS, RequestState, SessionCore
from .session import PENDING
from .store import SessionStore

__all__ = ["SessionMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SessionMiddleware:
    """Server-side sessions for any ASGI app (Starlette, FastAPI, ...).

    The session is in ``scope["session"]`` (``request.session``), a ``dict``. With a
    valid cookie:

    - in-process store (``store=None``): loaded on first use (no I/O to await), so a
      request that never touches it costs nothing and does not extend it;
    - Redis, ``lazy=False`` (default): read before the app runs (one round trip,
      needed because a sync ``request.session[...]`` cannot await), without moving
      its idle deadline; the deadline moves when the app used the session: by the
      save if it changed it, else by a touch at response time, either once a
      tenth of the idle timeout has passed since it was last moved (a WebSocket's
      read moves it at once: there is no response to do it with);
    - Redis, ``lazy=True``: nothing before the app; it awaits
      ``request.session.aload()`` (one round trip, which moves the deadline) where
      it needs the session, and requests that do not pay nothing.

    It is saved (one round trip) only when changed, never after a 5xx response;
    ``Set-Cookie`` goes out when the id changes, when the session ends, when the
    cookie is more than a tenth of ``max_age`` old (Max-Age is ``max_age``, as in
    Starlette), or when an old key signed it; ``Vary: Cookie`` whenever it was used.
    See :class:`~gatekeep.sessions.core.SessionCore` for the parameters.

    When the changes cannot be written (no Redis primary: a failover under way),
    the app's response is replaced by ``503 Service Unavailable`` with
    ``Retry-After``; with ``on_write_error="ignore"`` it goes out as the app made
    it, and ``request.session.save_failed`` is set. Either way the failure is
    counted and logged, never dropped silently. A session grown past the store's
    ``max_size`` by in-place changes of nested values (which cannot be checked when
    made) is not saved, and the response is ``507 Insufficient Storage`` (kept as
    the app made it with ``on_write_error="ignore"``); every other write past it
    raises :class:`~gatekeep.sessions.SessionTooLarge` in the view.
    """

    def __init__(
        self,
        app: ASGIApp,
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
        absolute_max_age: int = 30 * 24 * 3600,
        host_prefix: bool = False,
        strict: bool = True,
        lazy: bool = False,
        on_write_error: str = "503",
    ) -> None:
        self.app = app
        self.core = SessionCore(
            secret_key,
            session_cookie,
            max_age,
            path,
            same_site,
            https_only,
            domain,
            partitioned,
            store=store,
            absolute_max_age=absolute_max_age,
            host_prefix=host_prefix,
            strict=strict,
            on_write_error=on_write_error,
            rolling=True,
            spelling="starlette",
        )
        self.store = self.core.store
        self.lazy = lazy
        #: The in-process store does no I/O: its sessions load on first use, sync.
        self.in_process = isinstance(self.store.executor, MemoryExecutor)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                send = self._on_shutdown(send)
            await self.app(scope, receive, send)
            return
        state = self.core.begin(
            # names are lowercase in ASGI; any other spelling still counts
            [
                v.decode("latin-1")
                for k, v in scope["headers"]
                if len(k) == 6 and k.lower() == b"cookie"
            ]
        )
        session = scope["session"] = state.session
        if session.state == PENDING:
            if self.in_process:
                session.set_loaders(lambda: self._load_now(state), None)
            elif self.lazy:
                session.set_loaders(None, lambda: self._load(state))
            else:  # read now: the session is never PENDING for the app. Not touched,
                # but for a WebSocket: no response will come to touch it with.
                # (self._load inline: one coroutine frame less to resume after the I/O)
                try:
                    await self.store.arun(self.core.load(state, touch=kind == "websocket"))
                except STORE_ERRORS as exc:
                    self.core.load_failed(state, exc)
        if kind == "websocket":  # no response headers to set a cookie on
            await self.app(scope, receive, send)
            return

        replaced = False

        async def send_wrapper(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the app's body, after a 503 went out in its place
            if message["type"] == "http.response.start":
                instead = await self._finish(state, message)
                if instead is not None:
                    replaced = True
                    status, headers, body = instead
                    await send(
                        {
                            "type": "http.response.start",
                            "status": status,
                            "headers": [
                                (k.lower().encode("latin-1"), v.encode("latin-1"))
                                for k, v in headers
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _on_shutdown(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.store.aclose()
            await send(message)

        return wrapped

    async def _load(self, state: RequestState, *, touch: bool = True) -> None:
        try:
            await self.store.arun(self.core.load(state, touch=touch))
        except STORE_ERRORS as exc:
            self.core.load_failed(state, exc)

    def _load_now(self, state: RequestState) -> None:
        try:
            self.store.run(self.core.load(state))
        except STORE_ERRORS as exc:
            self.core.load_failed(state, exc)

    async def _finish(
        self, state: RequestState, message: Message
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        try:
            cookies = await self.store.arun(self.core.finish(state, message["status"]))
        except SAVE_ERRORS as exc:
            instead = self.core.save_failed(state, exc)
            if instead is not None:
                return instead
            cookies = []
        if not cookies and not state.session.accessed:
            return None
        headers = list(message.get("headers", ()))
        if state.session.accessed:
            _add_vary_cookie(headers)
        headers += [(b"set-cookie", c.encode("latin-1")) for c in cookies]
        message["headers"] = headers
        return None


def _add_vary_cookie(headers: list[tuple[bytes, bytes]]) -> None:
    for i, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            tokens = [t.strip().lower() for t in value.split(b",")]
            if b"cookie" not in tokens and b"*" not in tokens:
                headers[i] = (name, value + b", Cookie")
            return
    headers.append((b"vary", b"Cookie"))

"""WSGI session middleware: ``environ["gatekeep.session"]`` backed by a :class:`SessionStore`.

>>> app.wsgi_app = SessionMiddleware(app.wsgi_app, secret_key=KEY,
...                                  store=SessionStore(RedisBackend(url)))  # doctest: +SKIP

It behaves as the ASGI middleware does (same parameters, same core), loading
lazily by default: on the first use of the session (one read-only round trip),
so a request that never touches it costs no round trip and does not extend it.
``lazy=False`` reads it before the app runs. Either way the read does not move the
idle deadline: as in ASGI, the save moves it, or a touch with the response once a
tenth of the idle timeout has passed since it last moved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .core import DEFAULT, SAVE_ERRORS, STORE_ERRORS, RequestState, SessionCore
from .session import PENDING
from .store import SessionStore

__all__ = ["SessionMiddleware"]

_REASONS = {503: "Service Unavailable", 507: "Insufficient Storage"}

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SessionMiddleware:
    """Server-side sessions for any WSGI app; see the ASGI one for the behaviour and
    :class:`~gatekeep.sessions.core.SessionCore` for the parameters."""

    def __init__(
        self,
        app: WSGIApp,
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
        lazy: bool = True,
        environ_key: str = "gatekeep.session",
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
        self.environ_key = environ_key

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        state = self.core.begin([environ.get("HTTP_COOKIE", "")])
        session = environ[self.environ_key] = state.session
        if session.state == PENDING:
            # a read without the touch (the response touches it if due, as ASGI's)
            session.set_loaders(lambda: self._load(state, touch=False), None)
            if not self.lazy:
                self._load(state, touch=False)
        finished = False
        instead: list[bytes] = []  # the 503 body, when it replaces the app's response

        def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal finished
            if not finished:
                finished = True
                failed = self._finish(state, status, list(headers))
                if isinstance(failed, tuple):
                    code, headers, body = failed
                    instead.append(body)
                    status = f"{code} {_REASONS.get(code, 'Service Unavailable')}"
                else:
                    headers = failed
            return start_response(status, headers, exc_info)

        result = self.app(environ, wrapped)
        if finished:
            if instead:
                _close(result)
                return instead
            return result
        return _replaced_if_failed(result, instead)  # start_response not called yet

    def _load(self, state: RequestState, *, touch: bool = True) -> None:
        try:
            self.store.run(self.core.load(state, touch=touch))
        except STORE_ERRORS as exc:
            self.core.load_failed(state, exc)

    def _finish(
        self, state: RequestState, status: str, headers: list[tuple[str, str]]
    ) -> list[tuple[str, str]] | tuple[int, list[tuple[str, str]], bytes]:
        try:
            code = int(status.split(None, 1)[0])
        except ValueError:
            code = 500
        try:
            cookies = self.store.run(self.core.finish(state, code))
        except SAVE_ERRORS as exc:
            failed = self.core.save_failed(state, exc)
            if failed is not None:
                return failed
            cookies = []
        if state.session.accessed:
            for i, (name, value) in enumerate(headers):
                if name.lower() == "vary":
                    tokens = [t.strip().lower() for t in value.split(",")]
                    if "cookie" not in tokens and "*" not in tokens:
                        headers[i] = (name, value + ", Cookie")
                    break
            else:
                headers.append(("Vary", "Cookie"))
        headers += [("Set-Cookie", c) for c in cookies]
        return headers


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _replaced_if_failed(result: Iterable[bytes], instead: list[bytes]) -> Iterator[bytes]:
    """The app's body, unless the session write made at its first chunk failed."""
    try:
        for chunk in result:
            if instead:
                yield instead[0]
                return
            yield chunk
        if instead:  # start_response came with an empty body
            yield instead[0]
    finally:
        _close(result)

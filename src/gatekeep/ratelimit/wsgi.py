"""``RateLimitMiddleware`` for any WSGI app: the same rules and headers as ASGI."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from .core import Outcome, RateLimitPolicy, merge_headers
from .drivers import check_sync, settle_sync
from .headers import Denial
from .request import WSGIRequest

__all__ = ["RateLimitMiddleware", "Releasing", "settling", "status_line"]

_SLASHES = re.compile(r"/{2,}")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Denied"


class RateLimitMiddleware:
    """Rate limits for a WSGI app (Flask, Django, Bottle, Pyramid...).

    >>> app.wsgi_app = RateLimitMiddleware(app.wsgi_app, default="100/minute")

    Takes the options of :class:`~gatekeep.ratelimit.core.RateLimitPolicy` or a
    ``policy=``. Key functions must be plain functions here (no ``async def``).
    Rules match ``PATH_INFO``, the path inside the app (``SCRIPT_NAME`` is where it
    is mounted), with runs of slashes merged: this middleware cannot see the app's
    routing, and Werkzeug routes ``//login`` to ``/login``, so a doubled slash must
    not dodge a rule (an app that answers 404 there only spends a request more). Behind
    Flask, ``gatekeep.flask.RateLimiter`` matches the path Flask routed, exactly.
    """

    def __init__(self, app: WSGIApp, policy: RateLimitPolicy | None = None, **options: Any) -> None:
        if not callable(app):
            raise TypeError(f"app must be a WSGI application, got {app!r}")
        if policy is not None and options:
            raise TypeError("pass either policy= or the policy's options, not both")
        self.app = app
        self.policy = policy if policy is not None else RateLimitPolicy(**options)
        if self.policy.has_async_keys():
            raise TypeError(
                "a WSGI app cannot await an async key function; "
                "make the key functions plain functions"
            )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = WSGIRequest(environ)
        policy = self.policy
        # rules see the app-relative path, as behind ASGI (root_path stripped)
        path = request.route_path
        if "//" in path:
            path = _SLASHES.sub("/", path)
        rules = policy.match(request.method, path)
        if rules is None:
            return self.app(environ, start_response)
        outcome = check_sync(policy, request, rules)
        if not outcome.allowed:
            return deny_wsgi(outcome, environ, start_response)
        if outcome.pending is not None:  # a settle= rule (never with concurrency: core.py)
            return settling(self.app, environ, start_response, outcome, policy)
        if outcome.headers:
            start_response = with_headers(start_response, outcome.headers)
        if outcome.held is None:
            return self.app(environ, start_response)
        try:  # a slot held until the server closes the response (sent, or the client gone)
            body = self.app(environ, start_response)
        except BaseException:
            policy.leases.release(outcome.held)
            raise
        return Releasing(body, lambda: policy.leases.release(outcome.held))


def with_headers(start_response: StartResponse, extra: Iterable[tuple[str, str]]) -> StartResponse:
    extra = list(extra)

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        own = {n.lower() for n, _ in headers}
        headers = [*headers, *((n, v) for n, v in extra if n.lower() not in own)]
        if exc_info is None:
            return start_response(status, headers)
        return start_response(status, headers, exc_info)

    return start


def deny_wsgi(
    outcome: Outcome, environ: dict[str, Any], start_response: StartResponse
) -> Iterable[bytes]:
    denial = outcome.denial
    if not isinstance(denial, Denial):
        # A framework response (werkzeug's Response is a WSGI app of its own).
        return denial(environ, with_headers(start_response, outcome.headers))  # type: ignore[no-any-return]
    headers = merge_headers(denial, outcome.headers)
    headers.append(("Content-Length", str(len(denial.body))))
    start_response(status_line(denial.status), headers)
    return [denial.body]


def settling(
    app: WSGIApp,
    environ: dict[str, Any],
    start_response: StartResponse,
    outcome: Outcome,
    policy: RateLimitPolicy,
) -> Iterable[bytes]:
    """Run ``app``, then settle ``outcome.pending`` when the server closes the response
    (after its body has been sent, a streamed one included)."""
    answer: list[Any] = []

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer[:] = [int(status.split(None, 1)[0]), [(n.lower(), v) for n, v in headers]]
        if exc_info is None:
            return start_response(status, headers)
        return start_response(status, headers, exc_info)

    inner = with_headers(start, outcome.headers) if outcome.headers else start
    body = app(environ, inner)

    def done() -> None:
        if answer:
            settle_sync(policy, outcome.pending, answer[0], answer[1])

    return Releasing(body, done)


class Releasing:
    """A WSGI response that calls ``release`` once the server closes it (PEP 3333: after
    the last byte is sent, or when the client went away), after the app's own close."""

    def __init__(self, body: Iterable[bytes], release: Callable[[], None]) -> None:
        self._body = body
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def __len__(self) -> int:
        # the body's own, when it has one: a server sets Content-Length from a
        # one-item list (wsgiref); a generator raises TypeError, as servers expect
        return len(self._body)  # type: ignore[arg-type]

    def close(self) -> None:
        release, self._release = self._release, None
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if release is not None:
                release()

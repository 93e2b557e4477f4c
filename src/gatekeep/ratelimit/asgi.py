"""``RateLimitMiddleware`` for any ASGI app (Starlette, FastAPI, Quart, Django ASGI...).

Pure ASGI: no ``BaseHTTPMiddleware``, no request object, and headers are added by
wrapping ``send``. HTTP requests and WebSocket handshakes are limited; lifespan
and any other scope pass straight through.

Rules match the app-relative route path (:func:`~gatekeep.ratelimit.routes.route_path`).
In front of a Starlette or FastAPI app, the middleware also asks the app's router
which endpoint the request will reach, and checks that route's own limits
(``Depends(RateLimit(...))``, ``@limit``) with its rules: one check, one round
trip, one set of headers; the dependency then finds its answer in the scope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .core import Outcome, RateLimitPolicy, merge_headers
from .drivers import check_async, settle_async
from .headers import Denial
from .request import ASGIRequest
from .routes import NOTHING, STATE, RouteCheck, RouteTable, find_router, route_path
from .shaping import Pending

__all__ = ["RateLimitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_NAMES: dict[str, bytes] = {}


def _name(name: str) -> bytes:
    """A header name as ASGI carries it (lowercase bytes), cached: a few names recur."""
    encoded = _NAMES.get(name)
    if encoded is None:
        encoded = name.lower().encode("latin-1")
        if len(_NAMES) < 64:
            _NAMES[name] = encoded
    return encoded


#: Close code for a refused WebSocket handshake when the server cannot send a response.
WS_POLICY_VIOLATION = 1008


class RateLimitMiddleware:
    """Rate limits for an ASGI app.

    >>> app = RateLimitMiddleware(app, default="100/minute",
    ...                           rules=[Rule("5/minute", "POST /login", name="login")],
    ...                           key=client_ip(trusted=["10.0.0.0/8"]),
    ...                           backend="redis://localhost:6379/0")

    Every keyword of :class:`~gatekeep.ratelimit.core.RateLimitPolicy` is
    accepted, or pass a ready ``policy=``. Configuration errors raise here, at
    start-up. A backend error never reaches the app: ``on_error="allow"`` lets
    the request through, ``"deny"`` answers 503.
    """

    def __init__(self, app: ASGIApp, policy: RateLimitPolicy | None = None, **options: Any) -> None:
        if not callable(app):
            raise TypeError(f"app must be an ASGI application, got {app!r}")
        if policy is not None and options:
            raise TypeError("pass either policy= or the policy's options, not both")
        self.app = app
        self.policy = policy if policy is not None else RateLimitPolicy(**options)
        router = find_router(app)
        self._table = None if router is None else RouteTable(router)
        self.check_routes()

    def check_routes(self) -> None:
        """Raise ``ValueError`` when a route's own limit cannot be checked by this
        policy (e.g. a burst under a window algorithm). Runs when the middleware is
        built and again at the app's start-up (lifespan), once every route is added."""
        if self._table is not None:
            for provider in self._table.providers():
                self.policy.check_rule(provider.rule)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            method = scope["method"]
        elif kind == "websocket":
            method = "WEBSOCKET"
        else:
            if kind == "lifespan":
                self.check_routes()
            await self.app(scope, receive, send)
            return
        policy = self.policy
        table = self._table
        path = route_path(scope)
        if table is None:
            rules = policy.match_routed(method, path)
            check = None
        else:
            try:
                resolved = table.resolve(scope, method)
            except Exception:  # a router we cannot ask: the path rules still apply
                resolved = NOTHING
            check = None
            if resolved.covered:  # the route's dependencies find the outcome here
                check = scope[STATE] = RouteCheck(resolved.covered)
            rules = (
                None
                if resolved.exempt
                else (policy.match_routed if resolved.routed else policy.match)(
                    method, path, resolved.rules
                )
            )
        if rules is None:
            await self.app(scope, receive, send)
            return
        outcome = await check_async(policy, ASGIRequest(scope), rules)
        if check is not None:
            check.outcome = outcome
        if not outcome.allowed:
            await self._deny(outcome, scope, receive, send)
            return
        if outcome.pending is not None and kind == "http":
            send = settling(policy, outcome.pending, send)
        if outcome.held is None:
            await self._pass(outcome, kind, scope, receive, send)
            return
        try:  # a slot held for the whole response: the body sent, the client gone, or an error
            await self._pass(outcome, kind, scope, receive, send)
        finally:
            await policy.leases.arelease(outcome.held)

    async def _pass(
        self, outcome: Outcome, kind: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if not outcome.headers or kind != "http":
            await self.app(scope, receive, send)
            return
        names = _NAMES
        extra = [(names.get(n) or _name(n), v.encode("latin-1")) for n, v in outcome.headers]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _deny(self, outcome: Outcome, scope: Scope, receive: Receive, send: Send) -> None:
        denial = outcome.denial
        if not isinstance(denial, Denial):
            # A framework response (Starlette's Response is an ASGI app): add our headers.
            async def send_denial(message: Message) -> None:
                if message["type"] in ("http.response.start", "websocket.http.response.start"):
                    own = {k.lower() for k, _ in message.get("headers", ())}
                    message["headers"] = [
                        *message.get("headers", ()),
                        *(
                            (n.lower().encode("latin-1"), v.encode("latin-1"))
                            for n, v in outcome.headers
                            if n.lower().encode("latin-1") not in own
                        ),
                    ]
                await send(message)

            if scope["type"] == "websocket":
                if "websocket.http.response" not in scope.get("extensions", {}):
                    await self._close_websocket(receive, send)
                    return
                if (await receive())["type"] != "websocket.connect":
                    return
            # On a websocket scope, Starlette's Response sends websocket.http.response.*.
            await denial(scope, receive, send_denial)
            return
        headers = [
            (n.lower().encode("latin-1"), v.encode("latin-1"))
            for n, v in merge_headers(denial, outcome.headers)
        ]
        headers.append((b"content-length", str(len(denial.body)).encode()))
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": denial.status, "headers": headers})
            await send({"type": "http.response.body", "body": denial.body})
            return
        if "websocket.http.response" in scope.get("extensions", {}):
            # The handshake is refused with a real HTTP response (ASGI extension).
            message = await receive()
            if message["type"] != "websocket.connect":
                return
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": denial.status,
                    "headers": headers,
                }
            )
            await send({"type": "websocket.http.response.body", "body": denial.body})
            return
        await self._close_websocket(receive, send)

    @staticmethod
    async def _close_websocket(receive: Receive, send: Send) -> None:
        # Without the extension, closing before accept makes the server answer 403.
        message = await receive()
        if message["type"] == "websocket.connect":
            await send(
                {"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": "rate limited"}
            )


def settling(policy: RateLimitPolicy, pending: Pending, send: Send) -> Send:
    """``send``, then the settlements ``pending`` once the response body has ended
    (after its last message: the client has its answer, a streamed one included)."""
    status = 0
    headers: list[tuple[str, str]] = []

    async def send_then_settle(message: Message) -> None:
        nonlocal status, headers
        kind = message["type"]
        if kind == "http.response.start":
            status = message["status"]
            headers = [
                (k.decode("latin-1").lower(), v.decode("latin-1"))
                for k, v in message.get("headers", ())
            ]
        await send(message)
        if kind == "http.response.body" and status and not message.get("more_body", False):
            answered, status = status, 0  # once
            await settle_async(policy, pending, answered, headers)

    return send_then_settle

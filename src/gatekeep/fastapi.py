"""FastAPI and Starlette: per-route limits next to the endpoint they protect.

>>> limiter = RateLimit("5/minute")                          # a dependency
>>> @app.post("/login", dependencies=[Depends(limiter)])     # doctest: +SKIP
... async def login(): ...

>>> @app.get("/search")                                      # doctest: +SKIP
... @limit("30/minute")                                      # a route decorator
... async def search(q: str): ...

A route limit is a rule. Behind :class:`gatekeep.asgi.RateLimitMiddleware`, the
middleware finds the route before the app runs and checks its limits together
with its own rules: one script call, all-or-nothing (a request the route limit
denies spends no other budget, and ``default`` does not apply to a route that has
limits of its own), one set of headers, also on a ``Response`` the endpoint
returns itself; the middleware's backend, prefix and options apply. Without the
middleware, the dependency checks alone with its own ``policy=`` (or options).

The counter is named after the route (``"GET /items/{id}"``, a digest for a long
or non-ASCII one) unless ``name=`` is given. A denial answers 429 with
``Retry-After`` and the rate-limit headers (alone, by raising
:class:`RateLimitExceeded`, an ``HTTPException``).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the signature of the
# dependency FastAPI is given, ``RateLimit.__call__(request: Request, response:
# Response)``; FastAPI 0.110 (the floor) resolves string annotations against the
# callable's ``__globals__`` alone, which an instance does not have, and so would take
# ``request`` and ``response`` for required query parameters (422 on every request).

import functools
import inspect
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from .blocks import BlockSpec
from .decision import Decision
from .limiter import Limits
from .ratelimit.core import Outcome, RateLimitPolicy
from .ratelimit.drivers import check_async
from .ratelimit.keys import KeyFunc
from .ratelimit.request import ASGIRequest
from .ratelimit.routes import (
    STATE,
    RouteCheck,
    effective_route,
    route_label,
    route_name,
    route_providers,
    rule_decision,
)
from .ratelimit.rules import Rule

__all__ = ["RateLimit", "RateLimitExceeded", "limit"]


class RateLimitExceeded(HTTPException):
    """Raised by the dependency on denial; ``outcome`` holds the decision and headers."""

    def __init__(self, outcome: Outcome) -> None:
        status = getattr(outcome.denial, "status", 429)
        detail = "Too Many Requests" if status == 429 else "Service Unavailable"
        super().__init__(status_code=status, detail=detail, headers=dict(outcome.headers))
        self.outcome = outcome


def _checked(scope: Any, provider: Any) -> RouteCheck | None:
    """The check that covered ``provider``'s limit for this request, if any."""
    check = scope.get(STATE)
    return check if isinstance(check, RouteCheck) and check.covers(provider) else None


class RateLimit:
    """A FastAPI dependency (``Depends(RateLimit("5/minute"))``); returns the Decision.

    ``key``: the key function (the policy's default key when None). ``policy``:
    share a :class:`RateLimitPolicy` (backend, headers, shadow mode, ``on_error``)
    for when no middleware is in front; otherwise the remaining options build one.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        name: str | None = None,
        key: KeyFunc | None = None,
        policy: RateLimitPolicy | None = None,
        block: BlockSpec = None,
        **options: Any,
    ) -> None:
        if policy is not None and options:
            raise TypeError("pass either policy= or the policy's options, not both")
        self.policy = policy if policy is not None else RateLimitPolicy(**options)
        self.limits = limits
        self.key = key
        self.name = name
        #: The limit as a rule (its rates are validated now, at start-up); per-route
        #: rules share its rates.
        self.rule = Rule(limits, "/**", key=key, name=name or "route", block=block)
        self.policy.check_rule(self.rule)
        self._rules: dict[str, Rule] = {}

    def route_rule(self, label: str) -> Rule:
        """The rule for the route ``label`` (``"GET /items/{id}"``): one counter per
        route, or the one named counter when ``name=`` was given."""
        if self.name is not None:
            return self.rule
        rule = self._rules.get(label)
        if rule is None:
            if len(self._rules) > 10_000:
                self._rules.clear()
            rule = self._rules[label] = Rule(
                self.limits, "/**", key=self.key, name=route_name(label), block=self.rule.block
            )
        return rule

    def _label(self, scope: Any) -> str:
        route = effective_route(scope)
        path = getattr(route, "path", None) or scope.get("path", "/")
        method = scope.get("method", "WEBSOCKET") if scope["type"] == "http" else "WEBSOCKET"
        # Inside a mount, root_path holds the mount's path after the app's own root.
        root = scope.get("root_path", "")
        app_root = scope.get("app_root_path", root)
        prefix = root[len(app_root) :] if root.startswith(app_root) else ""
        return route_label(method, prefix, path)

    async def check(self, conn: HTTPConnection) -> Outcome | None:
        """This limit's outcome; None when the middleware checked it (and adds the
        headers). Without a middleware, the first limit of a route to run checks the
        route's other limits that share its policy too: one call, all-or-nothing."""
        scope = conn.scope
        done = _checked(scope, self)
        if done is not None:
            return None if done.by_middleware else done.outcome
        label = self._label(scope)
        siblings = tuple(
            p
            for p in route_providers(effective_route(scope), scope.get("endpoint"))
            if p is not self and getattr(p, "policy", None) is self.policy
        )
        rules = tuple(p.route_rule(label) for p in (self, *siblings))
        outcome = await check_async(self.policy, ASGIRequest(scope), rules)
        if siblings and STATE not in scope:
            scope[STATE] = RouteCheck((self, *siblings), outcome, by_middleware=False)
        return outcome

    async def outcome(self, request: Request, response: Response) -> Outcome | None:
        """The dependency's work: check, raise on denial, put the headers on
        ``response``; None when the middleware checked (it adds the headers)."""
        outcome = await self.check(request)
        if outcome is None:
            return None
        if not outcome.allowed:
            raise RateLimitExceeded(outcome)
        for name, value in outcome.headers:
            response.headers[name] = value
        return outcome

    async def __call__(self, request: Request, response: Response) -> Decision | None:
        """Check (or find the check), and return the decision of this limit alone."""
        outcome = await self.outcome(request, response)
        if outcome is None:  # the middleware's check
            check = _checked(request.scope, self)
            outcome = None if check is None else check.outcome
        if outcome is None:
            return None
        label = self._label(request.scope)
        own = rule_decision(outcome, self.route_rule(label))
        return outcome.decision if own is None else own


_PARAM = "gatekeep_rate_limit_"
_COUNT = itertools.count()


def limit(
    limits: Limits,
    *,
    name: str | None = None,
    key: KeyFunc | None = None,
    policy: RateLimitPolicy | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A route decorator: put it under ``@app.get(...)`` (or on a Starlette endpoint).

    On a FastAPI endpoint it adds the :class:`RateLimit` dependency to the
    signature FastAPI reads. On a Starlette endpoint (one parameter ``request``,
    not annotated) it wraps the call. Either way, a ``Response`` the endpoint
    returns itself gets the rate-limit headers too.
    """
    dependency = RateLimit(limits, name=name, key=key, policy=policy, **options)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        starlette_style = (
            len(params) == 1
            and params[0].name == "request"
            and params[0].annotation is inspect.Parameter.empty
        )
        if starlette_style:
            return _wrap_starlette(fn, dependency)
        from fastapi import Depends  # only FastAPI endpoints get here

        param = f"{_PARAM}{next(_COUNT)}"  # one per decorator: they may be stacked
        extra = inspect.Parameter(
            param,
            inspect.Parameter.KEYWORD_ONLY,
            default=Depends(dependency.outcome),
            annotation=Any,
        )
        new_sig = sig.replace(
            parameters=[
                *(p for p in params if p.kind != inspect.Parameter.VAR_KEYWORD),
                extra,
                *(p for p in params if p.kind == inspect.Parameter.VAR_KEYWORD),
            ]
        )
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_endpoint(*args: Any, **kwargs: Any) -> Any:
                outcome = kwargs.pop(param, None)
                return _with_headers(await fn(*args, **kwargs), outcome)

            endpoint: Callable[..., Any] = async_endpoint
        else:

            @functools.wraps(fn)
            def sync_endpoint(*args: Any, **kwargs: Any) -> Any:
                outcome = kwargs.pop(param, None)
                return _with_headers(fn(*args, **kwargs), outcome)

            endpoint = sync_endpoint
        endpoint.__signature__ = new_sig  # type: ignore[attr-defined]
        del endpoint.__wrapped__  # type: ignore[attr-defined]  # FastAPI must read new_sig
        return endpoint

    return decorate


def _with_headers(response: Any, outcome: Outcome | None) -> Any:
    """The endpoint's own ``Response`` gets the headers the dependency would have put
    on FastAPI's (which FastAPI drops when the endpoint returns a Response)."""
    if outcome is not None and isinstance(response, Response):
        for name, value in _missing(response, outcome.headers):
            response.headers[name] = value
    return response


def _missing(response: Response, headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(n, v) for n, v in headers if n.lower() not in response.headers]


def _wrap_starlette(fn: Callable[..., Any], dependency: RateLimit) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def endpoint(request: Request) -> Any:
        outcome = await dependency.check(request)  # None: the middleware checked it
        if outcome is not None and not outcome.allowed:
            raise RateLimitExceeded(outcome)
        response = fn(request)
        if inspect.isawaitable(response):
            response = await response
        return _with_headers(response, outcome)

    # The middleware reads this to check the limit with its own rules, before the app.
    endpoint.__gatekeep_limits__ = (  # type: ignore[attr-defined]
        *getattr(fn, "__gatekeep_limits__", ()),
        dependency,
    )
    return endpoint

"""FastAPI and Starlette: per-route limits next to the endpoint they protect.

>>> limiter = RateLimit("5/minute")                          # a dependency
>>> @app.post("/login", dependencies=[Depends(limiter)])     # doctest: +SKIP
... async def login(): ...

>>> @app.get("/search")                                      # doctest: +SKIP
... @limit("30/minute")                                      # a route decorator
... async def search(q: str): ...

Both run one check (one Redis round trip) inside the route, with the same
rules, key functions and headers as :class:`gatekeep.asgi.RateLimitMiddleware`;
pass ``policy=`` to share a middleware's backend, key function and options.
The counter is named after the route (``"GET /items/{id}"``) unless ``name=``
is given. A denial raises :class:`RateLimitExceeded` (an ``HTTPException``, so
FastAPI and Starlette answer 429 with ``Retry-After`` and the rate-limit
headers); allowed responses get the headers too.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from .decision import Decision
from .limiter import Limits
from .ratelimit.core import Outcome, RateLimitPolicy
from .ratelimit.drivers import check_async
from .ratelimit.keys import KeyFunc
from .ratelimit.request import ASGIRequest
from .ratelimit.rules import Rule

__all__ = ["RateLimit", "RateLimitExceeded", "limit"]


class RateLimitExceeded(HTTPException):
    """Raised by the dependency on denial; ``outcome`` holds the decision and headers."""

    def __init__(self, outcome: Outcome) -> None:
        status = getattr(outcome.denial, "status", 429)
        detail = "Too Many Requests" if status == 429 else "Service Unavailable"
        super().__init__(status_code=status, detail=detail, headers=dict(outcome.headers))
        self.outcome = outcome


class RateLimit:
    """A FastAPI dependency (``Depends(RateLimit("5/minute"))``); returns the Decision.

    ``key``: the key function (the policy's default key when None). ``policy``:
    share a :class:`RateLimitPolicy` (backend, headers, shadow mode, ``on_error``);
    otherwise the remaining options build one.
    """

    def __init__(self, limits: Limits, *, name: str | None = None, key: KeyFunc | None = None,
                 policy: RateLimitPolicy | None = None, **options: Any) -> None:
        if policy is not None and options:
            raise TypeError("pass either policy= or the policy's options, not both")
        self.policy = policy if policy is not None else RateLimitPolicy(**options)
        self.limits = limits
        self.key = key
        self.name = name
        # Validate now, at start-up; per-route rules share this one's rates.
        self._rule = Rule(limits, "/**", key=key, name=name or "route")
        self.policy._check_rule(self._rule)
        self._rules: dict[str, tuple[Rule]] = {}

    def _rules_for(self, conn: HTTPConnection) -> tuple[Rule]:
        if self.name is not None:
            return (self._rule,)
        route = conn.scope.get("route")
        path = getattr(route, "path", None) or conn.scope.get("path", "/")
        method = conn.scope.get("method", "WEBSOCKET")
        label = f"{method} {path}"[:64]
        rules = self._rules.get(label)
        if rules is None:
            if len(self._rules) > 10_000:
                self._rules.clear()
            name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in label)
            rules = self._rules[label] = (Rule(self.limits, "/**", key=self.key, name=name),)
        return rules

    async def check(self, conn: HTTPConnection) -> Outcome:
        return await check_async(self.policy, ASGIRequest(conn.scope), self._rules_for(conn))

    async def __call__(self, request: Request, response: Response) -> Decision | None:
        outcome = await self.check(request)
        if not outcome.allowed:
            raise RateLimitExceeded(outcome)
        for name, value in outcome.headers:
            response.headers[name] = value
        return outcome.decision


_PARAM = "gatekeep_rate_limit_"


def limit(limits: Limits, *, name: str | None = None, key: KeyFunc | None = None,
          policy: RateLimitPolicy | None = None, **options: Any
          ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A route decorator: put it under ``@app.get(...)`` (or on a Starlette endpoint).

    On a FastAPI endpoint it adds the :class:`RateLimit` dependency to the
    signature FastAPI reads. On a Starlette endpoint (one parameter ``request``,
    not annotated) it wraps the call and adds the headers to the response.
    """
    dependency = RateLimit(limits, name=name, key=key, policy=policy, **options)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        starlette_style = (len(params) == 1 and params[0].name == "request"
                           and params[0].annotation is inspect.Parameter.empty)
        if starlette_style:
            return _wrap_starlette(fn, dependency)
        from fastapi import Depends  # only FastAPI endpoints get here

        extra = inspect.Parameter(_PARAM, inspect.Parameter.KEYWORD_ONLY,
                                  default=Depends(dependency), annotation=Any)
        new_sig = sig.replace(parameters=[*(p for p in params
                                            if p.kind != inspect.Parameter.VAR_KEYWORD),
                                          extra,
                                          *(p for p in params
                                            if p.kind == inspect.Parameter.VAR_KEYWORD)])
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_endpoint(*args: Any, **kwargs: Any) -> Any:
                kwargs.pop(_PARAM, None)
                return await fn(*args, **kwargs)
            endpoint: Callable[..., Any] = async_endpoint
        else:
            @functools.wraps(fn)
            def sync_endpoint(*args: Any, **kwargs: Any) -> Any:
                kwargs.pop(_PARAM, None)
                return fn(*args, **kwargs)
            endpoint = sync_endpoint
        endpoint.__signature__ = new_sig  # type: ignore[attr-defined]
        del endpoint.__wrapped__  # type: ignore[attr-defined]  # FastAPI must read new_sig
        return endpoint

    return decorate


def _wrap_starlette(fn: Callable[..., Any], dependency: RateLimit) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def endpoint(request: Request) -> Any:
        outcome = await dependency.check(request)
        if not outcome.allowed:
            raise RateLimitExceeded(outcome)
        response = fn(request)
        if inspect.isawaitable(response):
            response = await response
        if isinstance(response, Response):
            for name, value in outcome.headers:
                response.headers[name] = value
        return response

    return endpoint

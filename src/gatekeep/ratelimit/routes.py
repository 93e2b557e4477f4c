"""The path a rule sees, and the route a request reaches, as the framework decides them.

**The rule path is the app-relative route path**: ``scope["path"]`` minus
``scope["root_path"]`` (ASGI puts the mount point a proxy or server strips in
``root_path``, and recent Starlette routes on the rest), so ``Rule("POST /login")``
means the app's ``/login`` whether it is served at ``/`` or behind
``--root-path /api``. Paths inside a ``Mount`` keep the mount's prefix
(``/admin/login``). Starlette's route regexes end in ``$``, which also matches
before one final newline, so ``/login%0A`` reaches the ``/login`` endpoint and
``/login/%0A`` the ``/login/{step}`` one (the step is the newline): when the router
reaches an endpoint (or when there is no router to ask), a rule applies where either
reading of the path leads (``RateLimitPolicy.match_routed``), so it applies wherever
its endpoint runs.

:class:`RouteTable` asks a Starlette or FastAPI router, with the routes' own
``matches()``, which endpoint a request will reach, before the app runs: the
middleware then checks its rules and the route's own limits (FastAPI dependencies,
``@limit``) together, in one call. Nothing here imports Starlette unless it is
installed; the helpers are plain functions of the ASGI scope.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..decision import Decision
from .rules import Rule
from .views import view_exempt, view_rules

__all__ = [
    "STATE",
    "LimitProvider",
    "Resolved",
    "RouteCheck",
    "RouteTable",
    "effective_route",
    "find_router",
    "route_label",
    "route_name",
    "route_path",
    "route_providers",
    "rule_decision",
]

#: The scope key where the middleware records what it checked for the route.
STATE = "gatekeep.ratelimit"
_MAX_NAME = 64
_CACHE = 4096


def route_path(scope: Mapping[str, Any]) -> str:
    """The app-relative path a rule is matched against (see the module's docstring)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    # ASGI: path includes root_path; strip it only at a segment boundary, as Starlette does.
    if root and path.startswith(root):
        if len(path) == len(root):
            path = ""
        elif path[len(root)] == "/":
            path = path[len(root) :]
    return path


def route_name(label: str) -> str:
    """A counter name for a route label (``"GET /items/{id}"``): the label itself when
    it is short printable ASCII, else a readable start and a digest of the whole
    label, so two routes never share a counter."""
    if (
        len(label) <= _MAX_NAME
        and label.isascii()
        and label.isprintable()
        and '"' not in label
        and "\\" not in label
        and "#" not in label
    ):
        return label
    digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    start = "".join(c if 32 <= ord(c) < 127 and c not in '"\\#' else "_" for c in label)
    return f"{start[: _MAX_NAME - 17]}#{digest}"


def route_label(method: str, prefix: str, path: str) -> str:
    """``"METHOD /mount/prefix/route/{template}"``."""
    return f"{method} {prefix}{path}"


def rule_decision(outcome: Any, rule: Rule) -> Decision | None:
    """The decision for ``rule``'s own limits, out of a check of several rules (an
    :class:`~gatekeep.ratelimit.core.Outcome`); None when ``rule`` was not checked."""
    decision: Decision | None = outcome.decision
    if decision is None or not any(r is rule for r in outcome.rules):
        return None
    if not decision.details:  # one limit in all: it is this rule's
        return decision
    start = 0
    for r in outcome.rules:
        if r is rule:
            break
        start += len(r.rates)
    own = decision.details[start : start + len(rule.rates)]
    if len(own) == 1:
        return own[0]
    tight = min(own, key=lambda d: (d.allowed, d.remaining, -d.retry_after))
    return Decision(
        all(d.allowed for d in own),
        tight.limit,
        tight.remaining,
        max(d.reset_after for d in own),
        max(d.retry_after for d in own),
        tight.rate,
        own,
    )


class LimitProvider(Protocol):
    """What a route's limit (a FastAPI ``RateLimit`` dependency) offers the middleware:
    its rule for a route, and a rule with its rates to validate at start-up."""

    rule: Rule

    def route_rule(self, label: str) -> Rule: ...


@dataclass(slots=True)
class RouteCheck:
    """Left in ``scope[STATE]`` for the route's dependencies: which limit providers
    were already checked (by the middleware, or by the first dependency to run), and
    the outcome."""

    covered: tuple[Any, ...]
    outcome: Any = None
    #: The middleware adds the headers itself; else (a dependency checked the route's
    #: limits together, without a middleware) each dependency passes them on.
    by_middleware: bool = True

    def covers(self, provider: Any) -> bool:
        return any(p is provider for p in self.covered)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The route limits for one request: rules to add, providers they came from."""

    rules: tuple[Rule, ...]
    covered: tuple[Any, ...]
    exempt: bool = False
    #: Whether the router reaches an endpoint (not a 404, 405 or redirect).
    routed: bool = True


NOTHING = Resolved((), (), routed=False)


def find_router(app: Any) -> Any | None:
    """The Starlette router an ASGI app dispatches with, through ``.app`` links
    (middleware) and ``.router`` (a Starlette or FastAPI app); None when there is none."""
    try:
        from starlette.routing import Router
    except ImportError:  # pragma: no cover - Starlette is optional
        return None
    seen = 0
    while app is not None and seen < 32:
        if isinstance(app, Router):
            return app
        router = getattr(app, "router", None)
        if isinstance(router, Router):
            return router
        app = getattr(app, "app", None)
        seen += 1
    return None


class RouteTable:
    """Which route limits a request reaches, asked of a Starlette router before it runs.

    ``resolve(scope, method)`` follows the router's own order (the first full
    match, through mounts and hosts); a partial match (405), a redirect or a 404
    reaches no endpoint and so no route limits. Results are cached per
    (method, root_path, path) unless a ``Host`` route makes them depend on headers.
    """

    def __init__(self, router: Any) -> None:
        from starlette.routing import Host, Match, Mount

        self.router = router
        self._full = Match.FULL
        self._nested = (Mount, Host)
        self._host = Host
        self._cache: dict[tuple[Any, ...], Resolved] = {}
        self._per_route: dict[tuple[int, str, str], tuple[Any, Resolved]] = {}

    def resolve(self, scope: Mapping[str, Any], method: str) -> Resolved:
        routes = self.router.routes
        # (the route count: a route added at run time makes older answers stale)
        cache_key = (method, scope.get("root_path", ""), scope["path"], len(routes))
        known = self._cache.get(cache_key)
        if known is not None:
            return known
        route, prefix, cacheable = self._walk(routes, dict(scope), "")
        resolved = NOTHING if route is None else self._limits(route, prefix, method)
        if cacheable:
            if len(self._cache) >= _CACHE:
                self._cache.clear()
            self._cache[cache_key] = resolved
        return resolved

    def _walk(self, routes: Any, scope: dict[str, Any], prefix: str) -> tuple[Any, str, bool]:
        """(the leaf route the router dispatches to or None, its mount prefix, whether
        the answer may be cached)."""
        cacheable = True
        for route in routes:
            if isinstance(route, self._host):
                cacheable = False  # it matches on the Host header too
            match, child = route.matches(scope)
            if match is not self._full:
                continue
            if isinstance(route, self._nested):
                inner = getattr(route, "routes", None)
                if not inner:  # an opaque ASGI app: it is the endpoint
                    return route, prefix, cacheable
                sub_prefix = prefix + (getattr(route, "path", "") or "")
                found, found_prefix, ok = self._walk(inner, {**scope, **child}, sub_prefix)
                return found, found_prefix, cacheable and ok
            candidates = getattr(route, "effective_candidates", None)
            if callable(candidates):
                # Recent FastAPI (0.165 here) keeps an included router whole: its candidates are
                # the routes as included (prefix and router dependencies applied).
                found, found_prefix, ok = self._walk(candidates(), scope, prefix)
                return found, found_prefix, cacheable and ok
            return route, prefix, cacheable
        return None, prefix, cacheable

    def _limits(self, route: Any, prefix: str, method: str) -> Resolved:
        key = (id(route), prefix, method)
        known = self._per_route.get(key)
        if known is not None and known[0] is route:
            return known[1]
        resolved = self._route_limits(route, prefix, method)
        if len(self._per_route) >= _CACHE:
            self._per_route.clear()
        self._per_route[key] = (route, resolved)  # holding the route keeps its id unique
        return resolved

    @staticmethod
    def _route_limits(route: Any, prefix: str, method: str) -> Resolved:
        label = route_label(method, prefix, getattr(route, "path", ""))
        endpoint = getattr(route, "endpoint", None) or getattr(route, "app", None)
        if endpoint is not None and view_exempt(endpoint):
            return Resolved((), (), exempt=True)
        providers = list(route_providers(route, endpoint))
        rules = [p.route_rule(label) for p in providers]
        if endpoint is not None:
            rules.extend(view_rules(endpoint))
        return Resolved(tuple(rules), tuple(providers))

    def providers(self) -> Iterator[Any]:
        """Every limit provider on every route (to validate them at start-up)."""
        yield from self._all(self.router.routes)

    def _all(self, routes: Any) -> Iterator[Any]:
        for route in routes:
            if isinstance(route, self._nested):
                yield from self._all(getattr(route, "routes", None) or ())
            elif callable(getattr(route, "effective_candidates", None)):
                yield from self._all(route.effective_candidates())
            else:
                endpoint = getattr(route, "endpoint", None)
                yield from route_providers(route, endpoint)


def effective_route(scope: Mapping[str, Any]) -> Any:
    """The route a request was dispatched to, as included: recent FastAPI puts the
    included router's original route in ``scope["route"]`` and the route as included
    (its full path, the router's dependencies) in its own part of the scope."""
    fastapi_scope = scope.get("fastapi")
    context = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    return context if context is not None else scope.get("route")


def route_providers(route: Any, endpoint: Any) -> Iterator[Any]:
    """The limit providers of a route: its FastAPI dependencies (any depth) that offer
    ``route_rule``, and those ``@limit`` attached to a Starlette endpoint."""
    seen: list[Any] = []
    stack = [getattr(route, "dependant", None)]
    while stack:
        dependant = stack.pop()
        if dependant is None:
            continue
        call = getattr(dependant, "call", None)
        owner = getattr(call, "__self__", call)
        if callable(getattr(owner, "route_rule", None)) and not any(owner is s for s in seen):
            seen.append(owner)
        stack.extend(reversed(getattr(dependant, "dependencies", ()) or ()))
    for owner in getattr(endpoint, "__gatekeep_limits__", ()):
        if not any(owner is s for s in seen):
            seen.append(owner)
    return iter(seen)

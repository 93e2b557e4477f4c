"""The marks (``@ratelimit``, ``@ratelimit_exempt``) of the view Django will dispatch a
request to, found before the rest of the middleware stack runs.

The view is found as Django's handler finds it: ``request.path_info`` against the
request's ``urlconf`` (set by an earlier middleware) or ``ROOT_URLCONF``. Resolving
costs 10-20 µs a request on a small urlconf, so it is skipped when no view of the
urlconf carries a mark (checked once per resolver), and its answers are kept per path
(and active language, for ``i18n_patterns``) in a bounded table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from weakref import WeakKeyDictionary

from django.urls import URLResolver, get_resolver  # type: ignore[import-untyped]
from django.utils.translation import get_language  # type: ignore[import-untyped]

from ..ratelimit import views
from ..ratelimit.rules import Rule

__all__ = ["NO_MARKS", "route_marks"]

#: ``(exempt, rules)`` of a view without marks, or of a path no URL matches.
NO_MARKS: tuple[bool, tuple[Rule, ...]] = (False, ())
_MAX_PATHS = 4096


def _marks(view: Any) -> tuple[bool, tuple[Rule, ...]]:
    if views.view_exempt(view):
        return True, ()
    rules = views.view_rules(view)
    return (False, rules) if rules else NO_MARKS


def _any_marked(patterns: Iterable[Any]) -> bool:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if _any_marked(entry.url_patterns):
                return True
        elif _marks(getattr(entry, "callback", None)) is not NO_MARKS:
            return True
    return False


class _Routes:
    """One resolver: whether any of its views is marked, and the marks found per path."""

    __slots__ = ("by_path", "marked")

    def __init__(self, resolver: Any) -> None:
        self.marked = _any_marked(resolver.url_patterns)
        self.by_path: dict[tuple[str, str], tuple[bool, tuple[Rule, ...]]] = {}


_routes: WeakKeyDictionary[Any, _Routes] = WeakKeyDictionary()


def route_marks(request: Any) -> tuple[bool, tuple[Rule, ...]]:
    """``(exempt, rules)`` of the view Django will dispatch ``request`` to;
    :data:`NO_MARKS` when the view has none or no URL matches."""
    try:
        resolver = get_resolver(getattr(request, "urlconf", None))
        routes = _routes.get(resolver)
        if routes is None:
            routes = _routes[resolver] = _Routes(resolver)
    except Exception:  # a broken urlconf: Django reports it when it resolves
        return NO_MARKS
    if not routes.marked:
        return NO_MARKS
    path = request.path_info
    key = (get_language() or "", path)
    found = routes.by_path.get(key)
    if found is None:
        try:
            found = _marks(resolver.resolve(path).func)
        except Exception:  # Resolver404: no view; the path rules and default still apply
            found = NO_MARKS
        if len(routes.by_path) >= _MAX_PATHS:
            routes.by_path.clear()
        routes.by_path[key] = found
    return found

"""Limits and exemptions attached to view functions (Flask, Django).

The decorators only mark the view; the framework hook that runs after routing
reads the marks, so a view's limits join the path rules in the same single check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..blocks import BlockSpec
from ..limiter import Limits
from .keys import KeyFunc
from .rules import Rule

__all__ = ["exempt", "limit", "view_exempt", "view_rules"]

F = TypeVar("F", bound=Callable[..., Any])

_RULES = "__gatekeep_rules__"
_EXEMPT = "__gatekeep_exempt__"


def limit(
    limits: Limits, *, key: KeyFunc | None = None, name: str | None = None, block: BlockSpec = None
) -> Callable[[F], F]:
    """Mark a view with its own limit; the counter is named after the view unless ``name``.
    ``block``: a penalty block after a denial (see :class:`Rule`)."""

    def decorate(view: F) -> F:
        label = name or f"{view.__module__}.{view.__qualname__}"[-64:]
        # bad limits raise here, at import
        rule = Rule(limits, "/**", key=key, name=label, block=block)
        setattr(view, _RULES, (*getattr(view, _RULES, ()), rule))
        return view

    return decorate


def exempt(view: F) -> F:
    """Mark a view as never limited (and sent no rate-limit headers)."""
    setattr(view, _EXEMPT, True)
    return view


def view_rules(view: Any) -> tuple[Rule, ...]:
    return getattr(view, _RULES, ())


def view_exempt(view: Any) -> bool:
    return bool(getattr(view, _EXEMPT, False))

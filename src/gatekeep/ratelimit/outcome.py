"""What a check of the rate-limit policy answers: the :class:`Outcome` of one request,
and the :class:`Stats` counted since start-up. Plain data: every front door reads them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..decision import Decision
from .headers import Denial
from .rules import Rule

__all__ = ["ALLOW", "Outcome", "Stats", "merge_headers"]


class Outcome(NamedTuple):
    """What to do with one request: pass it on (adding ``headers``) or answer ``denial``.

    (A named tuple: one is made per request, and it costs less than a dataclass.)
    """

    allowed: bool
    headers: Sequence[tuple[str, str]]
    #: A :class:`Denial`, or the object a custom ``deny`` returned.
    denial: Any = None
    decision: Decision | None = None
    #: The rules checked, in the order of ``decision.details``.
    rules: tuple[Rule, ...] = ()
    #: Seconds to wait before passing the request on (a rule's ``delay``).
    delay: float = 0.0
    #: What to settle once the app has answered (``shaping.Pending``; a rule's ``settle``).
    pending: Any = None
    #: The slots this request holds (rules with ``concurrency``), to release when its
    #: response ends: a :class:`~gatekeep.ratelimit.leases.Held`, or None.
    held: Any = None


#: The outcome of a request no rule limits (or of a failed check, failing open).
ALLOW = Outcome(True, ())


@dataclass(slots=True)
class Stats:
    """Counters since start-up (shadow mode: ``shadow_denied`` is what would have been)."""

    allowed: int = 0
    denied: int = 0
    shadow_denied: int = 0
    errors: int = 0


def merge_headers(denial: Denial, headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The denial's own headers, plus each rate-limit header it did not set itself."""
    own = {name.lower() for name, _ in denial.headers}
    return [*denial.headers, *((n, v) for n, v in headers if n.lower() not in own)]

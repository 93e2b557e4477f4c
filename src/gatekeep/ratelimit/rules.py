"""Rules: which limits apply to which requests.

A pattern is a path, optionally preceded by methods: ``"/login"``,
``"POST /login"``, ``"GET,HEAD /files/*"``, ``"/api/**"``. In a path, ``*`` and
``{name}`` match one non-empty segment, and a trailing ``/**`` matches the prefix itself and
everything below it (``"/api/**"`` matches ``/api`` and ``/api/v1/users``).

A :class:`Rule` is one counter: every request it matches spends from the same
budget (per key). A rule with several patterns is therefore a *group* of routes
sharing one limit; give each route its own rule for per-route limits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..blocks import Block, BlockSpec, as_block
from ..limiter import Limits
from ..rates import Rate, parse_rates
from .keys import KeyFunc

__all__ = ["Pattern", "Rule", "SettleFunc", "compile_pattern"]

#: ``settle=`` as a function: ``(status, headers) -> actual cost or None`` (no
#: settlement), called once the app has answered; ``headers`` are the response's,
#: names lowercased.
SettleFunc = Callable[[int, Sequence[tuple[str, str]]], "int | None"]

_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "WEBSOCKET"}
)
_NAME_RE = re.compile(r"^[!#-\[\]-~ ]{1,64}$")  # printable ASCII without " and \


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str
    methods: frozenset[str] | None
    #: The exact path when the pattern has no wildcard, else None.
    exact: str | None
    regex: re.Pattern[str] | None

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.exact is not None:
            return path == self.exact
        return self.regex is not None and self.regex.fullmatch(path) is not None


def _methods(spec: str | Sequence[str] | None) -> frozenset[str] | None:
    if spec is None:
        return None
    items = spec.replace(",", " ").split() if isinstance(spec, str) else list(spec)
    methods = set()
    for m in items:
        if not isinstance(m, str) or m.upper() not in _METHODS:
            raise ValueError(
                f"unknown HTTP method {m!r} in a rule; use one of {', '.join(sorted(_METHODS))}"
            )
        methods.add(m.upper())
    if not methods:
        return None
    if "GET" in methods:
        methods.add("HEAD")  # HEAD is GET without a body: limit them together
    return frozenset(methods)


def compile_pattern(text: str, methods: str | Sequence[str] | None = None) -> Pattern:
    """Compile ``"[METHODS ]/path"``; raises ``ValueError`` with the accepted forms."""
    if not isinstance(text, str):
        raise TypeError(f"a route pattern is a string like 'POST /login', not {text!r}")
    parts = text.strip().split(None, 1)
    if len(parts) == 2:
        if methods is not None:
            raise ValueError(f"pattern {text!r} names methods and methods= is given too")
        methods, path = parts[0], parts[1].strip()
    elif parts:
        path = parts[0]
    else:
        path = ""
    if not path.startswith("/"):
        raise ValueError(
            f"route pattern {text!r} must be a path starting with '/', optionally "
            "preceded by methods, e.g. '/login', 'POST /login', '/api/**'"
        )
    method_set = _methods(methods)
    if not any(c in path for c in "*{"):
        return Pattern(text, method_set, path, None)
    regex = ""
    rest = path
    tail = ""
    if rest.endswith("/**"):
        rest, tail = rest[:-3], "(?:/.*)?"
    i = 0
    while i < len(rest):
        ch = rest[i]
        if rest.startswith("**", i):
            regex += ".*"
            i += 2
        elif ch == "*":
            regex += "[^/]+"  # one segment, never an empty one, as routers read it
            i += 1
        elif ch == "{":
            end = rest.find("}", i)
            if end < 0:
                raise ValueError(f"route pattern {text!r} has an unclosed '{{'")
            regex += "[^/]+"
            i = end + 1
        else:
            regex += re.escape(ch)
            i += 1
    return Pattern(text, method_set, None, re.compile(regex + tail, re.DOTALL))


@dataclass(frozen=True, eq=False)
class Rule:
    """Limits for the requests that match ``path`` (and ``methods``).

    >>> Rule("5/minute", "POST /login", name="login")
    >>> Rule("1000/hour", ["/api/**", "/graphql"], key=header("x-api-key"))   # a group

    ``key``: the key function (the middleware's default key when None). When it
    returns None for a request, this rule does not apply to that request.
    ``name`` names the counter (in Redis keys and in the ``RateLimit`` headers):
    keep it stable across deployments.

    ``delay=D`` (nginx's ``burst``/``delay``): up to D requests beyond the limits
    are delayed instead of answered 429: each takes a place in advance and sleeps
    until the rate admits it, so the app sees them smoothed at the rate (bucket
    algorithms only). ``settle``: a response header carrying the request's actual
    cost (e.g. ``"x-tokens-used"``), or a :data:`SettleFunc`; the request is
    admitted at cost 1 and, once the app has answered (its body sent), the rule is
    charged the actual cost instead, even beyond the limit: a debt later requests
    wait out (see :mod:`gatekeep.reservations`). ``block``: a penalty block after a denial by
    this rule (seconds, escalating seconds, or a :class:`~gatekeep.Block`): see
    :mod:`gatekeep.blocks`; ``Retry-After`` then says when it ends.
    ``concurrency=N``: at most N requests of one key in flight at once, each holding a
    slot (a lease of ``lease`` seconds, renewed while the response runs) until its
    response ends; checked with the rule's limits in the same call. ``limits`` may then
    be None: ``Rule(None, "/export", concurrency=2)``.
    """

    limits: Limits | None
    path: str | Sequence[str] = "/**"
    methods: str | Sequence[str] | None = None
    key: KeyFunc | None = None
    name: str | None = None
    delay: int = 0
    settle: str | SettleFunc | None = None
    block: BlockSpec | Block = None
    concurrency: int | None = None
    lease: float = 30.0
    rates: tuple[Rate, ...] = field(init=False, repr=False)
    #: The rates the counter keeps: ``rates`` with ``delay`` more of burst each.
    plan_rates: tuple[Rate, ...] = field(init=False, repr=False)
    patterns: tuple[Pattern, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = self.concurrency
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"rule {self.path!r}: concurrency must be an int >= 1, got {n!r}")
        if not isinstance(self.lease, (int, float)) or not 0.01 <= self.lease <= 86_400:
            raise ValueError(f"rule {self.path!r}: lease must be 0.01 to 86400 seconds")
        try:
            if self.limits is None and n is not None:
                rates: tuple[Rate, ...] = ()
            else:
                rates = parse_rates(self.limits)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"rule {self.path!r}: {exc}") from None
        paths = [self.path] if isinstance(self.path, str) else list(self.path)
        if not paths:
            raise ValueError("a rule needs at least one path pattern, e.g. '/**'")
        patterns = tuple(compile_pattern(p, self.methods) for p in paths)
        name = self.name if self.name is not None else ", ".join(p.text for p in patterns)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(
                f"rule name {name!r} must be 1-64 printable ASCII characters "
                "without quotes or backslashes; pass name="
            )
        if isinstance(self.key, type):
            raise TypeError(f"rule {name!r}: pass key={self.key.__name__}(), not the class")
        if self.key is not None and not callable(self.key):
            raise TypeError(f"rule {name!r}: key must be a key function, got {self.key!r}")
        if isinstance(self.delay, bool) or not isinstance(self.delay, int) or self.delay < 0:
            raise ValueError(f"rule {name!r}: delay must be an int >= 0, got {self.delay!r}")
        settle = self.settle
        if isinstance(settle, str):
            if not settle or not _NAME_RE.match(settle) or " " in settle:
                raise ValueError(f"rule {name!r}: settle must name a response header")
            object.__setattr__(self, "settle", settle.lower())
        elif settle is not None and not callable(settle):
            raise TypeError(
                f"rule {name!r}: settle must be a header name or a function "
                f"(status, headers) -> int | None, got {settle!r}"
            )
        try:
            object.__setattr__(self, "block", as_block(self.block))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"rule {name!r}: {exc}") from None
        object.__setattr__(self, "rates", rates)
        object.__setattr__(
            self,
            "plan_rates",
            tuple(Rate(r.limit, r.period_us, r.burst + self.delay) for r in rates)
            if self.delay
            else rates,
        )
        object.__setattr__(self, "patterns", patterns)
        object.__setattr__(self, "name", name)

    def matches(self, method: str, path: str) -> bool:
        return any(p.matches(method, path) for p in self.patterns)

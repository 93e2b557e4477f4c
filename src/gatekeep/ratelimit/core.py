"""The sans-I/O core every front door drives: match, identify, plan, decide, render.

Order of precedence (the one rule set every framework applies):

1. **Exemptions** win: a request matching an ``exempt`` pattern (or a view marked
   exempt) is not limited and gets no headers.
2. **Rules**: every rule whose pattern matches applies, each with its own counter
   (per key). Limits attached to a view by a decorator are rules too.
3. **Default limits** apply only when no rule's pattern matched. To budget the
   whole app on top of per-route rules, add a rule on ``"/**"``.

A rule whose key function returns None is skipped for that request. All the
limits that apply are checked together, all-or-nothing (a denial spends
nothing anywhere), in one backend call: one script, one Redis round trip.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..algorithms import AlgorithmSpec
from ..backends.base import Backend, backend_kind
from ..backends.failover import FailoverBackend
from ..backends.redis import RedisBackend
from ..decision import Decision
from ..errors import BackendUnavailable
from ..limiter import BaseLimiter, Limits
from ..metrics import METRICS, NEAR_LIMIT_FACTOR, Metrics
from ..outage import classify
from .batch import Batch, build_batch, redis_keys
from .headers import default_denial, legacy_headers, ratelimit_header, seconds
from .keys import KeyFunc, client_ip
from .leases import PolicyLeases
from .outcome import ALLOW, Outcome, Stats, merge_headers
from .request import RequestView
from .rules import Pattern, Rule, compile_pattern
from .shaping import smooth

__all__ = ["ALLOW", "Batch", "Outcome", "RateLimitPolicy", "Stats", "merge_headers"]

logger = logging.getLogger("gatekeep.ratelimit")

DenyFunc = Callable[[RequestView, Decision], Any]
_MATCH_CACHE = 4096
_ON_ERROR = ("allow", "deny")


class RateLimitPolicy:
    """Configuration and decisions, with no I/O: what each middleware runs.

    >>> policy = RateLimitPolicy(
    ...     [Rule("5/minute", "POST /login", name="login")],
    ...     default="100/minute", exempt=["/health"], key=client_ip(trusted=["10.0.0.0/8"]))

    ``backend``: a gatekeep backend, a Redis URL, or None (in-process memory).
    ``headers``: send ``RateLimit-Policy`` / ``RateLimit``; ``legacy_headers``:
    ``X-RateLimit-*`` too. ``deny(request, decision)``: build the denial (a
    :class:`Denial`, or a framework response). ``shadow``: decide and count,
    never block. ``on_error``: ``"allow"`` (fail open, the default) or ``"deny"``
    (503) when the backend fails. ``denial_cache``: the local cache of denied keys
    (:mod:`gatekeep.denials`; on by default with Redis, False turns it off).
    """

    def __init__(
        self,
        rules: Sequence[Rule] = (),
        *,
        default: Limits | None = None,
        exempt: Sequence[str] = (),
        key: KeyFunc | None = None,
        backend: Backend | str | None = None,
        algorithm: str | AlgorithmSpec = "token_bucket",
        prefix: str = "",
        headers: bool = True,
        legacy_headers: bool = False,
        deny: DenyFunc | None = None,
        shadow: bool = False,
        on_error: str = "allow",
        metrics: Metrics | None = METRICS,
        denial_cache: bool | int | None = None,
    ) -> None:
        if isinstance(backend, str):
            # A URL: fail fast, and decide in-process while Redis is away (the
            # circuit breaker's "local" policy): an outage never becomes a 500.
            backend = FailoverBackend(RedisBackend(backend), metrics=metrics)
        self.metrics = metrics
        self.limiter = BaseLimiter(
            None,
            backend=backend,
            algorithm=algorithm,
            prefix=prefix,
            name="middleware",
            metrics=metrics,
            denial_cache=denial_cache,
        )
        self.backend: Backend = self.limiter.backend
        #: The slots requests hold under rules with ``concurrency`` (taken, renewed, released).
        self.leases = PolicyLeases(self.backend, metrics)
        if isinstance(rules, Rule):
            rules = [rules]
        self.rules: tuple[Rule, ...] = tuple(rules)
        for rule in self.rules:
            if not isinstance(rule, Rule):
                raise TypeError(f"rules must be Rule objects, got {rule!r}")
            self._check_rule(rule)
        self.default_rule = None if default is None else Rule(default, "/**", name="default")
        if self.default_rule is not None:
            self._check_rule(self.default_rule)
        _check_combined(self.rules)
        names = [r.name for r in self.rules] + ([] if default is None else ["default"])
        dupes = {str(n) for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(
                f"rule names must be unique (each names a counter): {sorted(dupes)}; "
                "pass name= to tell them apart"
            )
        if isinstance(exempt, str):
            exempt = [exempt]
        self.exempt: tuple[Pattern, ...] = tuple(compile_pattern(p) for p in exempt)
        self.key: KeyFunc = client_ip() if key is None else key
        if isinstance(self.key, type):
            raise TypeError(
                f"key must be a key function: pass {self.key.__name__}(), "
                f"not the class {self.key.__name__}"
            )
        if not callable(self.key):
            raise TypeError(f"key must be a key function, got {self.key!r}")
        if deny is not None and not callable(deny):
            raise TypeError(
                f"deny must be a callable (request, decision) -> response, got {deny!r}"
            )
        if on_error not in _ON_ERROR:
            raise ValueError(
                f"on_error must be 'allow' (fail open) or 'deny' (503), got {on_error!r}"
            )
        self.headers = bool(headers)
        self.legacy_headers = bool(legacy_headers)
        self.deny = deny
        self.shadow = bool(shadow)
        self.on_error = on_error
        self.stats = Stats()
        self._matches: dict[Any, tuple[Rule, ...] | None] = {}
        self._batches: dict[Any, Batch] = {}
        self._last_error_log = 0.0

    def check_rule(self, rule: Rule) -> None:
        """Raise ``ValueError`` when this policy cannot check ``rule`` (e.g. a burst
        under a window algorithm): for limits that join the policy per request."""
        if rule.delay and not self.limiter.algorithm.bucket:
            raise ValueError(
                f"rule {rule.name!r}: delay= smooths requests at the rate of a bucket; "
                f"use algorithm='token_bucket' or 'gcra', not {self.limiter.algorithm.name!r}"
            )
        try:
            if rule.rates:
                self.limiter.plan(list(rule.plan_rates))
        except ValueError as exc:
            raise ValueError(f"rule {rule.name!r}: {exc}") from None

    _check_rule = check_rule

    @property
    def key_functions(self) -> list[KeyFunc]:
        """Every key function the rules use (to check sync/async at start-up)."""
        fns = [self.key] + [r.key for r in self.rules if r.key is not None]
        return list({id(f): f for f in fns}.values())

    def has_async_keys(self) -> bool:
        return any(
            inspect.iscoroutinefunction(f)
            or inspect.iscoroutinefunction(getattr(f, "__call__", None))  # noqa: B004
            for f in self.key_functions
        )

    # -- 1. match ---------------------------------------------------------------------

    def match(
        self, method: str, path: str, extra: tuple[Rule, ...] = ()
    ) -> tuple[Rule, ...] | None:
        """The rules for this request, by the order of precedence; None when none apply."""
        cache_key = (method, path, extra) if extra else (method, path)
        try:
            return self._matches[cache_key]
        except KeyError:
            pass
        if any(p.matches(method, path) for p in self.exempt):
            found: tuple[Rule, ...] | None = None
        else:
            found = tuple(r for r in self.rules if r.matches(method, path)) + extra
            if not found:
                found = None if self.default_rule is None else (self.default_rule,)
        if len(self._matches) >= _MATCH_CACHE:
            self._matches.clear()
        self._matches[cache_key] = found
        return found

    def match_routed(
        self, method: str, path: str, extra: tuple[Rule, ...] = ()
    ) -> tuple[Rule, ...] | None:
        """As :meth:`match`, for a router whose route regexes end in ``$`` (Starlette's):
        ``$`` also matches before one final newline, so ``/login\\n`` reaches ``/login``
        and ``/login/\\n`` reaches ``/login/{step}`` (with the step ``"\\n"``). A rule
        applies where either reading of the path leads; exempt only when both are."""
        found = self.match(method, path, extra)
        if not path.endswith("\n"):
            return found
        other = self.match(method, path[:-1], extra)
        default = (self.default_rule,)
        if found is None or found == default:
            return other if other is not None else found
        if other is None or other == default:
            return found
        both = {id(r) for r in found} | {id(r) for r in other}
        return tuple(r for r in (*self.rules, *extra) if id(r) in both)

    # -- 2. identify (the shell awaits what is awaitable) --------------------------------

    def identify(self, request: RequestView, rules: tuple[Rule, ...]) -> list[Any]:
        """Each rule's key: a string, None (rule skipped), or an awaitable of either."""
        if len(rules) == 1:
            return [(rules[0].key or self.key)(request)]
        seen: dict[int, Any] = {}
        out = []
        for rule in rules:
            fn = rule.key or self.key
            if id(fn) not in seen:
                seen[id(fn)] = fn(request)
            out.append(seen[id(fn)])
        return out

    # -- 3. plan -----------------------------------------------------------------------

    def prepare(
        self, rules: tuple[Rule, ...], keys: Sequence[Any]
    ) -> tuple[Batch, list[str]] | None:
        """The merged plan and the Redis keys for one request; None when no rule applies."""
        if len(keys) == 1 and type(keys[0]) is str and keys[0]:  # the common case
            known = self._batches.get(rules)
            if known is not None:
                cached = known.key_cache.get(keys[0])
                if cached is not None:
                    return known, cached
        for k in keys:
            if k is not None and (not isinstance(k, str) or not k):
                raise TypeError(
                    f"a key function returned {k!r}; it must return a non-empty string or None"
                )
        if all(k is not None for k in keys):
            applied = rules
        else:
            applied = tuple(r for r, k in zip(rules, keys, strict=True) if k is not None)
            keys = [k for k in keys if k is not None]
            if not applied:
                return None
        batch = self._batches.get(applied)
        if batch is None:
            batch = self._batch(applied)
        if len(keys) == 1:
            cached = batch.key_cache.get(keys[0])
            if cached is not None:
                return batch, cached
        return batch, redis_keys(self.limiter.prefix, batch, keys)

    def _batch(self, rules: tuple[Rule, ...]) -> Batch:
        batch = build_batch(self.limiter, self.metrics, rules)
        if len(self._batches) >= _MATCH_CACHE:
            self._batches.clear()
        self._batches[rules] = batch
        return batch

    # -- 4. decide and render -------------------------------------------------------------

    def decide(self, batch: Batch, decision: Decision, request: RequestView) -> Outcome:
        """Headers, metrics and the denial for ``decision`` (``decision_of`` a reply, or
        the fused in-process path's own)."""
        delay = 0.0
        if batch.delays:  # the declared limits, and the wait
            decision, delay = smooth(batch.delays, decision, not self.shadow)
        headers: list[tuple[str, str]]
        if self.headers:
            if batch.leases:
                value = ratelimit_header(
                    batch.quoted, decision.details or (decision,), len(batch.plan.rates)
                )
            elif decision.details:
                value = ratelimit_header(batch.quoted, decision.details)
            else:
                value = (
                    f"{batch.quoted[0]};r={decision.remaining};t={seconds(decision.reset_after)}"
                )
            headers = [("RateLimit-Policy", batch.policy_header), ("RateLimit", value)]
        else:
            headers = []
        if self.legacy_headers:
            headers.extend(legacy_headers(decision))
        stats = self.stats
        if self.metrics is not None:
            self._count(batch, decision)
        if decision.allowed:
            stats.allowed += 1
            if delay and not self.shadow:
                return Outcome(True, headers, None, decision, batch.rules, delay)
            return Outcome(True, headers, None, decision, batch.rules)
        if self.shadow:
            stats.shadow_denied += 1
            return Outcome(True, headers, None, decision, batch.rules)
        stats.denied += 1
        retry = decision.retry_after_seconds
        headers.append(("Retry-After", str(retry)))
        denial: Any = None
        if self.deny is not None:
            try:
                denial = self.deny(request, decision)
            except Exception:
                logger.exception(
                    "gatekeep: the custom deny function failed; sending the default 429"
                )
        if denial is None:
            denial = default_denial(429, retry)
        return Outcome(False, headers, denial, decision, batch.rules)

    @staticmethod
    def decision_of(batch: Batch, reply: list[int]) -> Decision:
        """The decision for a backend's reply to ``batch``."""
        return Decision.from_reply(batch.all_rates or batch.plan.rates, reply)

    def _count(self, batch: Batch, decision: Decision) -> None:
        """Metrics per rule: every rule counts an allowed request; a denied one is
        counted by the rules that denied it (as shadow_denied in shadow mode)."""
        if decision.allowed:
            for counters, _ in batch.counters:
                if counters is not None:
                    counters.allowed += 1
                    if decision.remaining * NEAR_LIMIT_FACTOR < decision.limit:
                        counters.near_limit += 1
            return
        details = decision.details or (decision,)
        for counters, span in batch.counters:
            own = details[span] if type(span) is slice else [details[i] for i in span]
            if counters is not None and not all(d.allowed for d in own):
                if self.shadow:
                    counters.shadow_denied += 1
                else:
                    counters.denied += 1

    def failed(self, exc: BaseException) -> Outcome:
        """The outcome when the backend (or a key function) raised: ``on_error`` decides."""
        self.stats.errors += 1
        if isinstance(exc, BackendUnavailable):
            # the backend's policy is to fail closed: honour it, whatever on_error says
            retry = max(1, math.ceil(exc.retry_after))
            return Outcome(False, (("Retry-After", str(retry)),), default_denial(503, retry))
        if self.metrics is not None:
            self.metrics.backend_error(backend_kind(self.backend), exc)
        now = time.monotonic()
        if now - self._last_error_log > 10.0:  # one line per 10 s, not one per request
            self._last_error_log = now
            # A backend outage is expected; anything else is a bug worth a traceback.
            expected = classify(exc) is not None  # a store error (gatekeep.outage)
            logger.warning(
                "gatekeep: rate limit check failed (%s: %s); %s",
                type(exc).__name__,
                exc,
                "allowing requests" if self.on_error == "allow" else "denying requests with 503",
                exc_info=not expected,
            )
        if self.on_error == "allow":
            return ALLOW
        return Outcome(False, (("Retry-After", "1"),), default_denial(503, 1))

    def __repr__(self) -> str:
        return (
            f"RateLimitPolicy(rules={[r.name for r in self.rules]}, "
            f"default={self.default_rule.rates if self.default_rule else None}, "
            f"backend={self.backend!r})"
        )


def _check_combined(rules: tuple[Rule, ...]) -> None:
    """Rules with ``concurrency`` run their own script (``lua/_leased.lua``), which does
    not know penalty blocks, delays or settlements yet: a policy mixes them not at all,
    since one request may match rules of both kinds (said at start-up, not per request)."""
    leased = [r.name for r in rules if r.concurrency is not None]
    shaped = [r.name for r in rules if r.block is not None or r.delay or r.settle is not None]
    if leased and shaped:
        raise ValueError(
            f"rules {leased} (concurrency=) and {shaped} (block=, delay= or settle=) cannot "
            "share one middleware yet: give them separate RateLimitMiddleware instances "
            "or drop one of the options"
        )

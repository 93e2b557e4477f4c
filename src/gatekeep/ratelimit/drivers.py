"""The two drivers of one check: sync (WSGI, Flask, Django) and async (ASGI, FastAPI).

Both run the same steps of :class:`~gatekeep.ratelimit.core.RateLimitPolicy`;
they differ only in awaiting key functions and the backend call. Any exception
from a key function or the backend becomes the ``on_error`` outcome, never a 500.
"""

from __future__ import annotations

import inspect
from time import monotonic_ns
from typing import Any

from ..algorithms import HIT
from ..limiter import Call
from .core import ALLOW, Outcome, RateLimitPolicy
from .request import RequestView
from .rules import Rule

__all__ = ["check_async", "check_sync"]


def check_sync(policy: RateLimitPolicy, request: RequestView, rules: tuple[Rule, ...]) -> Outcome:
    try:
        keys = policy.identify(request, rules)
        for k in keys:
            if type(k) is not str and k is not None and inspect.isawaitable(k):
                _close(k)
                raise TypeError(
                    "an async key function cannot run in a sync (WSGI) app; "
                    "make it a plain function"
                )
        prepared = policy.prepare(rules, keys)
        if prepared is None:
            return ALLOW
        batch, redis_keys = prepared
        denials = policy.limiter.denials
        if denials is not None and denials.entries:  # a denial held in process?
            held = denials.check(batch.plan, redis_keys, 1)
            if held is not None:
                return policy.decide(batch, held, request)
        c = policy.limiter.begin(batch.plan, redis_keys, None, 1)  # the limiter's path
        if not isinstance(c, Call):  # decided in process
            return policy.decide(batch, c, request)
        sent = monotonic_ns()
        reply = policy.backend.limit(c.plan, c.keys, None, HIT, 1)
        policy.limiter.end(c)
        decision = policy.decision_of(batch, reply)
        if not decision[0]:
            policy.limiter.remember(c, decision, sent)
        return policy.decide(batch, decision, request)
    except Exception as exc:
        return policy.failed(exc)


async def check_async(
    policy: RateLimitPolicy, request: RequestView, rules: tuple[Rule, ...]
) -> Outcome:
    try:
        keys = policy.identify(request, rules)
        for i, k in enumerate(keys):
            if type(k) is not str and k is not None and inspect.isawaitable(k):
                keys[i] = await k
        prepared = policy.prepare(rules, keys)
        if prepared is None:
            return ALLOW
        batch, redis_keys = prepared
        denials = policy.limiter.denials
        if denials is not None and denials.entries:  # a denial held in process?
            held = denials.check(batch.plan, redis_keys, 1)
            if held is not None:
                return policy.decide(batch, held, request)
        c = policy.limiter.begin(batch.plan, redis_keys, None, 1)  # the limiter's path
        if not isinstance(c, Call):  # decided in process: nothing to await
            return policy.decide(batch, c, request)
        sent = monotonic_ns()
        reply = await policy.backend.alimit(c.plan, c.keys, None, HIT, 1)
        policy.limiter.end(c)
        decision = policy.decision_of(batch, reply)
        if not decision[0]:
            policy.limiter.remember(c, decision, sent)
        return policy.decide(batch, decision, request)
    except Exception as exc:
        return policy.failed(exc)


def _close(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # no "coroutine was never awaited" warning

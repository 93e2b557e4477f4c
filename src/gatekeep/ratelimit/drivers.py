"""The two drivers of one check: sync (WSGI, Flask, Django) and async (ASGI, FastAPI).

Both run the same steps of :class:`~gatekeep.ratelimit.core.RateLimitPolicy`;
they differ only in awaiting key functions and the backend call. Any exception
from a key function or the backend becomes the ``on_error`` outcome, never a 500.
"""

from __future__ import annotations

import inspect
from time import perf_counter_ns
from typing import Any

from ..algorithms import HIT
from .core import ALLOW, Outcome, RateLimitPolicy
from .request import RequestView
from .rules import Rule

__all__ = ["check_async", "check_sync"]


def check_sync(policy: RateLimitPolicy, request: RequestView, rules: tuple[Rule, ...]
               ) -> Outcome:
    try:
        keys = policy.identify(request, rules)
        for k in keys:
            if type(k) is not str and k is not None and inspect.isawaitable(k):
                _close(k)
                raise TypeError("an async key function cannot run in a sync (WSGI) app; "
                                "make it a plain function")
        prepared = policy.prepare(rules, keys)
        if prepared is None:
            return ALLOW
        batch, redis_keys = prepared
        t0 = perf_counter_ns() if next(policy.limiter._ticks) else 0  # limiter._start()
        fast = batch.plan.fast
        if fast is not None:  # in-process, one limit (MemoryBackend.fused_hit)
            decision = fast(redis_keys[0], None, 1)
        else:
            decision = policy.decision_of(
                batch, policy.backend.limit(batch.plan, redis_keys, None, HIT, 1))
        if t0:
            policy.limiter._stop(t0)
        return policy.decide(batch, decision, request)
    except Exception as exc:
        return policy.failed(exc)


async def check_async(policy: RateLimitPolicy, request: RequestView, rules: tuple[Rule, ...]
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
        t0 = perf_counter_ns() if next(policy.limiter._ticks) else 0  # limiter._start()
        fast = batch.plan.fast
        if fast is not None:  # in-process, one limit: nothing to await
            decision = fast(redis_keys[0], None, 1)
        else:
            decision = policy.decision_of(
                batch, await policy.backend.alimit(batch.plan, redis_keys, None, HIT, 1))
        if t0:
            policy.limiter._stop(t0)
        return policy.decide(batch, decision, request)
    except Exception as exc:
        return policy.failed(exc)


def _close(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # no "coroutine was never awaited" warning

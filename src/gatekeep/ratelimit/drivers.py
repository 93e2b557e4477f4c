"""The two drivers of one check: sync (WSGI, Flask, Django) and async (ASGI, FastAPI).

Both run the same steps of :class:`~gatekeep.ratelimit.core.RateLimitPolicy`;
they differ only in awaiting key functions and the backend call. Any exception
from a key function or the backend becomes the ``on_error`` outcome, never a 500.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..algorithms import HIT
from ..backends.leases import alease_run, lease_run
from ..flows import arun_flow, run_flow
from ..limiter import Call
from .core import ALLOW, Outcome, RateLimitPolicy
from .leases import leased_call, split_flow
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
        if batch.leases:  # rate limits and slots in one call (ratelimit/leases.py)
            lid = policy.leases.new_id()
            if policy.leases.split(redis_keys):  # a cluster, several slots
                reply = run_flow(split_flow(batch, redis_keys, lid), policy.leases.io)
            else:
                reply = lease_run(policy.backend, leased_call(batch, redis_keys, lid))
            outcome = policy.decide(batch, policy.decision_of(batch, reply), request)
            if outcome.decision is not None and outcome.decision.allowed:
                held = policy.leases.held(batch, redis_keys, lid)
                policy.leases.hold(held)
                return outcome._replace(held=held)
            return outcome
        c = policy.limiter.begin(batch.plan, redis_keys, None, 1)  # the limiter's path
        if not isinstance(c, Call):  # decided in process
            return policy.decide(batch, c, request)
        reply = policy.backend.limit(c.plan, c.keys, None, HIT, 1)
        policy.limiter.end(c)
        return policy.decide(batch, policy.decision_of(batch, reply), request)
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
        if batch.leases:
            lid = policy.leases.new_id()
            if policy.leases.split(redis_keys):
                reply = await arun_flow(split_flow(batch, redis_keys, lid), policy.leases.aio)
            else:
                reply = await alease_run(policy.backend, leased_call(batch, redis_keys, lid))
            outcome = policy.decide(batch, policy.decision_of(batch, reply), request)
            if outcome.decision is not None and outcome.decision.allowed:
                held = policy.leases.held(batch, redis_keys, lid)
                policy.leases.ahold(held)
                return outcome._replace(held=held)
            return outcome
        c = policy.limiter.begin(batch.plan, redis_keys, None, 1)  # the limiter's path
        if not isinstance(c, Call):  # decided in process: nothing to await
            return policy.decide(batch, c, request)
        reply = await policy.backend.alimit(c.plan, c.keys, None, HIT, 1)
        policy.limiter.end(c)
        return policy.decide(batch, policy.decision_of(batch, reply), request)
    except Exception as exc:
        return policy.failed(exc)


def _close(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # no "coroutine was never awaited" warning

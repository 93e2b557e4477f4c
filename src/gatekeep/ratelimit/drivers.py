"""The two drivers of one check: sync (WSGI, Flask, Django) and async (ASGI, FastAPI).

Both run the same steps of :class:`~gatekeep.ratelimit.core.RateLimitPolicy`;
they differ only in awaiting key functions and the backend call, and in how they
sleep a rule's ``delay``. Any exception from a key function or the backend becomes
the ``on_error`` outcome, never a 500. ``settle_sync``/``settle_async`` make the
settlement calls of an answered request (``Rule(settle=...)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from time import monotonic_ns
from typing import Any

from .. import waiting
from ..algorithms import HIT
from ..backends.leases import alease_run, lease_run
from ..flows import arun_flow, run_flow
from ..limiter import Call
from .batch import Batch
from .core import ALLOW, Outcome, RateLimitPolicy
from .leases import leased_call, split_flow
from .request import RequestView
from .rules import Rule
from .shaping import Pending, settle_calls

__all__ = ["check_async", "check_sync", "settle_async", "settle_sync"]


def settle_sync(
    policy: RateLimitPolicy, pending: Pending, status: int, headers: Sequence[tuple[str, str]]
) -> None:
    """Settle an answered request (headers: names lowercased). Never raises: a failure
    is the policy's to log, and the request stands at its cost of 1."""
    try:
        for plan, keys, mode, cost in settle_calls(pending, status, headers):
            policy.backend.limit(plan, keys, None, mode, cost)
    except Exception as exc:
        policy.failed(exc)


async def settle_async(
    policy: RateLimitPolicy, pending: Pending, status: int, headers: Sequence[tuple[str, str]]
) -> None:
    """As :func:`settle_sync`, awaited."""
    try:
        for plan, keys, mode, cost in settle_calls(pending, status, headers):
            await policy.backend.alimit(plan, keys, None, mode, cost)
    except Exception as exc:
        policy.failed(exc)


def _owed(outcome: Outcome, batch: Batch, keys: list[str]) -> Outcome:
    """``outcome`` with the settlements it owes, when a rule settles and it was charged."""
    if batch.settles and outcome.decision is not None and outcome.decision.allowed:
        return outcome._replace(pending=Pending(batch.settles, keys))
    return outcome


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
            cached = denials.check(batch.plan, redis_keys, 1)
            if cached is not None:
                return policy.decide(batch, cached, request)
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
            outcome = policy.decide(batch, c, request)
        else:
            sent = monotonic_ns()
            reply = policy.backend.limit(c.plan, c.keys, None, HIT, 1)
            policy.limiter.end(c)
            decision = policy.decision_of(batch, reply)
            if not decision[0]:
                policy.limiter.remember(c, decision, sent)
            outcome = policy.decide(batch, decision, request)
        if outcome.delay:
            waiting.sleep(outcome.delay)
        return _owed(outcome, batch, redis_keys) if batch.settles else outcome
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
            cached = denials.check(batch.plan, redis_keys, 1)
            if cached is not None:
                return policy.decide(batch, cached, request)
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
            outcome = policy.decide(batch, c, request)
        else:
            sent = monotonic_ns()
            reply = await policy.backend.alimit(c.plan, c.keys, None, HIT, 1)
            policy.limiter.end(c)
            decision = policy.decision_of(batch, reply)
            if not decision[0]:
                policy.limiter.remember(c, decision, sent)
            outcome = policy.decide(batch, decision, request)
        if outcome.delay:
            await waiting.asleep(outcome.delay)
        return _owed(outcome, batch, redis_keys) if batch.settles else outcome
    except Exception as exc:
        return policy.failed(exc)


def _close(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # no "coroutine was never awaited" warning

"""A :class:`Batch`: the limits of one combination of rules, merged into one plan.

Built once per combination of rules a request can match (and cached by the policy):
everything about checking those rules together that does not change from request to
request, so a request only builds its Redis keys (cached too) and renders its headers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..backends.base import Backend, Plan
from ..blocks import Block, encode
from ..keys import tag
from ..limiter import BaseLimiter
from ..metrics import Metrics, RuleCounters
from ..rates import Rate
from .headers import lease_policy_item, policy_item, sf_string
from .rules import Rule
from .shaping import Settler, Smoothing, shaping

__all__ = ["KEY_CACHE", "Batch", "LeaseSpec", "build_batch", "redis_keys"]


@dataclass(frozen=True, slots=True)
class LeaseSpec:
    """A rule's concurrency limit: its lease set's key tail, slots, and lease TTL (µs)."""

    tail: str
    limit: int
    ttl_us: int


#: How many identities' key lists a single-rule batch keeps.
KEY_CACHE = 4096


@dataclass(frozen=True, slots=True, eq=False)
class Batch:
    """The limits of one combination of rules, merged into one plan (cached)."""

    rules: tuple[Rule, ...]
    plan: Plan
    #: Per rule: the key tail after the identity tag, and the rule's key suffixes.
    tails: tuple[tuple[str, tuple[str, ...]], ...]
    #: One policy name per rate, as the ``RateLimit`` field names them.
    names: tuple[str, ...]
    policy_header: str
    #: ``names`` as structured field strings, for the ``RateLimit`` field.
    quoted: tuple[str, ...]
    #: Recent Redis key lists by identity (single-rule batches; never mutated).
    key_cache: dict[str, list[str]]
    #: Per rule: its metrics counters (or None) and the items of the decision it owns
    #: (a slice of ``plan.rates``; with leases, a tuple of indexes: its lease is last).
    counters: tuple[tuple[RuleCounters | None, slice | tuple[int, ...]], ...] = ()
    #: The concurrency limits of the rules (their lease sets' keys follow the rates'),
    #: checked in the same call (``lua/_leased.lua``).
    leases: tuple[LeaseSpec, ...] = ()
    #: The rates, then one per lease (``limit`` per lease TTL): what a reply decodes to.
    all_rates: tuple[Rate, ...] = ()
    #: The rules with ``delay`` and with ``settle`` (see :mod:`.shaping`).
    delays: tuple[Smoothing, ...] = ()
    settles: tuple[Settler, ...] = ()
    #: Per rule with a penalty block: its index and its block key's tail (``:<name>:blk``).
    blocks: tuple[tuple[int, str], ...] = ()


def build_batch(limiter: BaseLimiter, metrics: Metrics | None, rules: tuple[Rule, ...]) -> Batch:
    """The batch of ``rules``: one plan for all their rates, so that one script call
    checks them together, all-or-nothing."""
    plans = [limiter.plan(list(r.plan_rates)) if r.rates else _no_rates(limiter) for r in rules]
    names: list[str] = []
    for rule, plan in zip(rules, plans, strict=True):
        if len(plan.rates) == 1:
            names.append(str(rule.name))
        else:
            names.extend(f"{rule.name}.{i}" for i in range(1, len(plan.rates) + 1))
    rates = tuple(rate for p in plans for rate in p.rates)
    leased = [r for r in rules if r.concurrency is not None]
    leases = tuple(
        LeaseSpec(f":{r.name}:cc", r.concurrency or 0, round(r.lease * 1_000_000)) for r in leased
    )
    lease_rates = tuple(Rate(spec.limit, spec.ttl_us) for spec in leases)
    lease_names = [str(r.name) if not r.rates else f"{r.name}.concurrency" for r in leased]
    spans: list[tuple[RuleCounters | None, slice | tuple[int, ...]]] = []
    start = 0
    for rule, plan in zip(rules, plans, strict=True):
        counters = None if metrics is None else metrics.rule(str(rule.name))
        span: slice | tuple[int, ...] = slice(start, start + len(plan.rates))
        if rule.concurrency is not None:
            span = (*range(start, start + len(plan.rates)), len(rates) + leased.index(rule))
        spans.append((counters, span))
        start += len(plan.rates)
    merged: Plan = dataclasses.replace(
        plans[0],
        rates=rates,
        suffixes=tuple(s for p in plans for s in p.suffixes),
        params=tuple(x for p in plans for x in p.params),
        flat=tuple(x for p in plans for x in p.flat),
        key_cache={},
        fast=None,  # the first plan's fused path knows only its own rate
    )
    # (a rule with block=, delay= or settle= has no lease: its span is a slice, core.py)
    sliced = [(c, span) for c, span in spans if isinstance(span, slice)]
    blocked = [
        (i, rule.block, span)
        for i, (rule, (_, span)) in enumerate(zip(rules, spans, strict=True))
        if isinstance(rule.block, Block) and isinstance(span, slice)
    ]
    if blocked:  # one group per rule with a block (lua/_driver_blocks.lua)
        tail = encode([b.group(span.start + 1, span.stop) for _, b, span in blocked])
        merged = dataclasses.replace(
            merged, algorithm=merged.algorithm.with_blocks, flat=merged.flat + tail, blocks=tail
        )
    backend: Backend | Any = limiter.backend
    fuse = getattr(backend, "fused_hit", None)
    if fuse is not None and len(rates) == 1 and not leases:  # in-process, one limit
        # (no counters: the policy counts per rule, for every backend alike)
        merged = dataclasses.replace(merged, fast=fuse(merged, None))
    delays, settles = shaping(rules, merged, sliced) if not leases else ((), ())
    declared = tuple(rate for r in rules for rate in r.rates)  # the headers show these
    items = [policy_item(n, r) for n, r in zip(names, declared, strict=True)]
    items += [lease_policy_item(n, spec.limit) for n, spec in zip(lease_names, leases, strict=True)]
    names += lease_names
    return Batch(
        rules=rules,
        plan=merged,
        tails=tuple((f":{r.name}", p.suffixes) for r, p in zip(rules, plans, strict=True)),
        names=tuple(names),
        quoted=tuple(sf_string(n) for n in names),
        key_cache={},
        counters=tuple(spans),
        policy_header=", ".join(items),
        delays=delays,
        settles=settles,
        blocks=tuple((i, f":{rules[i].name}:blk") for i, _, _ in blocked),
        leases=leases,
        all_rates=rates + lease_rates,
    )


def _no_rates(limiter: BaseLimiter) -> Plan:
    """The plan of a rule with a concurrency limit only: no rates."""
    algo = limiter.algorithm
    return Plan(algo, (), (), (), (), algo.algorithm)


def redis_keys(prefix: str, batch: Batch, keys: Sequence[Any]) -> list[str]:
    """The Redis keys of one request: per rule, its identity (``keys``, one per rule)
    tagged, then the rule's name and each of its rates' suffixes; then the lease set of
    each rule with a concurrency limit (identity tagged, rule name, ``:cc``). A single-rule
    batch keeps the lists it built, by identity."""
    out: list[str] = []
    for key, (tail, suffixes) in zip(keys, batch.tails, strict=True):
        base = prefix + tag(key) + tail
        out.extend(base + s for s in suffixes)
    for i, tail in batch.blocks:  # the block keys follow the limits' keys
        out.append(prefix + tag(keys[i]) + tail)
    if batch.leases:  # the lease sets last, as lua/_leased.lua takes them
        for key, rule in zip(keys, batch.rules, strict=True):
            if rule.concurrency is not None:
                out.append(f"{prefix}{tag(key)}:{rule.name}:cc")
    if len(keys) == 1:
        cache = batch.key_cache
        if len(cache) >= KEY_CACHE:
            cache.clear()
        cache[keys[0]] = out
    return out

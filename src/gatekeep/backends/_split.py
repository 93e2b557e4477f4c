"""Several limits whose keys sit in different Redis Cluster slots.

One script can only touch one slot. The limiter's own keys always share a hash
tag, but the middleware may check rules keyed by different identities in one
request (the client IP and an API key, say). On a cluster such a call is split
by slot: each group is one script call, made in turn; when a group denies, the
groups already charged are refunded, so the request still spends nothing when
it is denied. Between the first charge and its refund another request may see
the briefly lower remaining capacity: the cost of not being one atomic script.

Written once as a flow (a generator of sub-calls, see :mod:`gatekeep.flows`),
each sub-call itself a script call's flow: :func:`limit_flow` nests them, and is
the flow of any limiter call ``RedisBackend`` does not make in one first trip
(keys in several slots, ``limit_many``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Sequence

from redis.crc import key_slot

from ..algorithms import HIT, PEEK, REFUND
from ..blocks import decode, encode
from ..flows import nest
from ._calls import CallFlow, first, raise_first, script_flow
from .base import Plan

__all__ = ["SubCall", "limit_flow", "limit_many_flow", "now_arg", "slot_groups", "split_flow"]

#: A sub-call: (plan, keys, mode).
SubCall = tuple[Plan, list[str], str]
Flow = Generator[SubCall, list[int], list[int]]


def slot_groups(keys: list[str]) -> list[list[int]]:
    """Indexes of ``keys`` grouped by cluster slot, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key_slot(key.encode()), []).append(i)
    return list(groups.values())


def _sub_plan(plan: Plan, idx: list[int]) -> Plan:
    """The plan of the keys ``idx`` (limits, then any block keys: a block key shares
    its group's slot, so its group is whole here)."""
    n = len(plan.rates)
    limits = [i for i in idx if i < n]
    tail: tuple[int, ...] = ()
    if plan.blocks:  # the groups whose block keys are here, renumbered
        at = {i: j + 1 for j, i in enumerate(limits)}
        groups = decode(plan.blocks)
        tail = encode(
            [
                (at[first - 1], at[last - 1], window, lengths)
                for first, last, window, lengths in (groups[i - n] for i in idx if i >= n)
            ]
        )
    return dataclasses.replace(
        plan,
        rates=tuple(plan.rates[i] for i in limits),
        suffixes=tuple(plan.suffixes[i] for i in limits),
        params=tuple(plan.params[i] for i in limits),
        flat=tuple(x for i in limits for x in plan.params[i]) + tail,
        blocks=tail,
        key_cache={},
    )


def split_flow(plan: Plan, keys: list[str], groups: list[list[int]], mode: str) -> Flow:
    """The sub-calls of one call, and its reply (four integers per limit, in order)."""
    subs = [(_sub_plan(plan, idx), [keys[i] for i in idx], idx) for idx in groups]
    limits = len(plan.rates)  # the keys after them are block keys (lua/_driver_blocks.lua)
    out = [0] * (4 * limits)

    def place(reply: list[int], idx: list[int]) -> None:
        for j, i in enumerate(i for i in idx if i < limits):
            out[4 * i : 4 * i + 4] = reply[4 * j : 4 * j + 4]

    if mode != HIT:
        for sub_plan, sub_keys, idx in subs:
            place((yield sub_plan, sub_keys, mode), idx)
        return out
    for n, (sub_plan, sub_keys, idx) in enumerate(subs):
        reply = yield sub_plan, sub_keys, HIT
        place(reply, idx)
        if all(reply[4 * j] == 1 for j in range(len(reply) // 4)):
            continue
        for done_plan, done_keys, done_idx in subs[:n]:  # give back what was charged
            place((yield done_plan, done_keys, REFUND), done_idx)
        for rest_plan, rest_keys, rest_idx in subs[n + 1 :]:  # report, charge nothing
            place((yield rest_plan, rest_keys, PEEK), rest_idx)
        return out
    return out


def now_arg(now: int | None) -> int | str:
    """A limiter script's ``now`` argument: µs, or ``""`` for the server's clock."""
    return "" if now is None else now


def limit_flow(
    plan: Plan, keys: list[str], now: int | None, mode: str, cost: int, cluster: bool, where: str
) -> CallFlow[list[int]]:
    """One limiter call: one script call (split by slot on a cluster, see above);
    ``where`` names the server in NOSCRIPT log lines."""
    if len(keys) > 1 and cluster:
        groups = slot_groups(keys)
        if len(groups) > 1:
            return nest(
                split_flow(plan, keys, groups, mode),
                lambda sub: limit_flow(sub[0], sub[1], now, sub[2], cost, cluster, where),
            )
    return script_flow(
        [(plan.algorithm.script, keys, (now_arg(now), mode, cost, *plan.flat))],
        first,
        where=where,
    )


def limit_many_flow(
    plan: Plan,
    keys: Sequence[list[str]],
    now: int | None,
    mode: str,
    cost: int,
    cluster: bool,
    where: str,
) -> CallFlow[list[list[int]]]:
    """One limiter call per key list, pipelined in one round trip; one after the other
    when one of them spans slots."""
    if cluster and any(len(slot_groups(k)) > 1 for k in keys):
        return _one_by_one(plan, keys, now, mode, cost, where)
    args = (now_arg(now), mode, cost, *plan.flat)
    return script_flow([(plan.algorithm.script, k, args) for k in keys], raise_first, where=where)


def _one_by_one(
    plan: Plan, keys: Sequence[list[str]], now: int | None, mode: str, cost: int, where: str
) -> CallFlow[list[list[int]]]:
    out = []
    for k in keys:
        out.append((yield from limit_flow(plan, k, now, mode, cost, True, where)))
    return out

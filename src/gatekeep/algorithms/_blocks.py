"""The Python twin of ``lua/_driver_blocks.lua``: the driver of plans with penalty blocks.

Same arguments (the limits' parameters, then the groups' block arguments as the
script's ARGV tail: see :func:`gatekeep.blocks.encode`), same calls of the
algorithm's ``check`` / ``commit`` / ``refund``, same flat reply.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._driver import CHARGE, HIT, REFUND, Algorithm, Check, Store, ms

__all__ = ["run_blocks"]


def run_blocks(
    algo: Algorithm,
    store: Store,
    keys: list[str],
    now: int,
    mode: str,
    cost: int,
    params: Sequence[tuple[int, int]],
    tail: Sequence[int],
) -> list[int]:
    n = len(params)
    m = len(keys) - n
    out: list[int] = []
    if mode == REFUND:  # a refund gives cost back and leaves blocks as they are
        for key, (a, b) in zip(keys, params, strict=False):
            remaining, reset = algo.refund(store, key, now, cost, a, b)
            out += (1, remaining, reset, 0)
        return out
    if mode == CHARGE:  # a settlement's charge: the usage happened, so it commits
        for key, (a, b) in zip(keys, params, strict=False):  # whatever the limits or a
            charged = algo.check(store, key, now, cost, a, b)  # block say; no block
            algo.commit(store, key, now, charged)
            out += (1, charged.remaining_if_hit, charged.reset_if_hit_us, 0)
        return out

    group: dict[int, int] = {}
    groups: list[tuple[int, int, int, Sequence[int]]] = []  # first, last, window, lengths
    ends: list[int] = []
    breaches: list[int] = []
    blocked = False
    at = 0
    for g in range(m):
        first, last, window, k = tail[at : at + 4]
        groups.append((first, last, window, tail[at + 4 : at + 4 + k]))
        at += 4 + k
        for i in range(first - 1, last):
            group[i] = g
        v = store.get(keys[n + g], now)
        until, b = (0, 0) if v is None else v
        if until + window <= now:  # the count is over, on this clock too
            b = 0
        ends.append(until)
        breaches.append(b)
        if until > now:
            blocked = True

    checks: list[Check | None] = []
    all_allowed = not blocked
    for i, (key, (a, b)) in enumerate(zip(keys, params, strict=False)):
        in_group = group.get(i)
        if in_group is not None and ends[in_group] > now:
            checks.append(None)
        else:
            checked = algo.check(store, key, now, cost, a, b)
            checks.append(checked)
            if not checked.allowed:
                all_allowed = False

    if all_allowed and mode == HIT:
        for key, done in zip(keys, checks, strict=False):
            assert done is not None
            algo.commit(store, key, now, done)
            out += (1, done.remaining_if_hit, done.reset_if_hit_us, 0)
        return out

    started: dict[int, int] = {}
    if mode == HIT and not blocked:
        for g, (first, last, window, lengths) in enumerate(groups):
            if any(not x.allowed for x in checks[first - 1 : last] if x is not None):
                b = breaches[g] + 1
                length = lengths[min(b, len(lengths)) - 1]
                store.set(keys[n + g], (now + length, b), now + ms(length + window) * 1000)
                started[g] = length

    for i, c in enumerate(checks):
        if c is None:
            left = ends[group[i]] - now
            out += (0, 0, left, left)
            continue
        retry = c.retry_us
        started_length = started.get(group.get(i, -1))
        if started_length is not None and not c.allowed and 0 <= retry < started_length:
            retry = started_length
        out += (1 if c.allowed else 0, c.remaining, c.reset_us, retry)
    return out

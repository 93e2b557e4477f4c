"""Splitting a call over cluster slots: the flow, driven against the in-process twin."""

from __future__ import annotations

from gatekeep import Limiter, MemoryBackend
from gatekeep.algorithms import HIT, PEEK
from gatekeep.backends._split import slot_groups, split_flow
from gatekeep.flows import run_flow

NOW = 1_800_000_000_000_000


def test_slot_groups_keep_order():
    keys = ["gk:{a}:x", "gk:{b}:x", "gk:{a}:y"]
    assert slot_groups(keys) == [[0, 2], [1]]


def test_a_denial_refunds_the_groups_already_charged():
    backend = MemoryBackend()
    limiter = Limiter(backend=backend)
    plan = limiter.plan(["5/minute", "2/minute"])
    # two identities: the first rate keyed by "ip", the second by "api"
    keys = [limiter.keys("ip", plan)[0], limiter.keys("api", plan)[1]]
    groups = slot_groups(keys)
    assert groups == [[0], [1]]

    def call(sub):
        p, k, m = sub
        return backend.limit(p, k, NOW, m, 1)

    replies = [run_flow(split_flow(plan, keys, groups, HIT), call) for _ in range(3)]
    assert [r[0] for r in replies] == [1, 1, 1] and [r[4] for r in replies] == [1, 1, 0]
    # the third was denied by the second rate: the first was charged, then refunded
    assert replies[2][1] == 3
    peek = run_flow(split_flow(plan, keys, groups, PEEK), call)
    assert peek[1] == 3 and peek[5] == 0


def test_a_split_call_keeps_each_rule_s_block_with_its_limits():
    """Two identities in two slots, the second with a penalty block: its block key
    goes with its limit, and its denial blocks only it."""
    import dataclasses

    from gatekeep.blocks import Block, encode

    backend = MemoryBackend()
    limiter = Limiter(backend=backend)
    plan = limiter.plan(["5/minute", "1/minute"])
    tail = encode([Block(120).group(2, 2)])
    plan = dataclasses.replace(
        plan, algorithm=plan.algorithm.with_blocks, flat=plan.flat + tail, blocks=tail
    )
    keys = [limiter.keys("ip", plan)[0], limiter.keys("api", plan)[1], "gk:{api}:blk"]
    groups = slot_groups(keys)
    assert groups == [[0], [1, 2]]

    def call(sub):
        p, k, m = sub
        return backend.limit(p, k, NOW, m, 1)

    assert run_flow(split_flow(plan, keys, groups, HIT), call)[0::4] == [1, 1]
    denied = run_flow(split_flow(plan, keys, groups, HIT), call)
    assert denied[0::4] == [1, 0] and denied[7] == 120_000_000  # blocked for 120 s
    assert denied[1] == 4  # the first rate was charged, then refunded
    assert backend.store.get("gk:{api}:blk", NOW) == (NOW + 120_000_000, 1)

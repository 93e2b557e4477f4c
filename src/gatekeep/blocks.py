"""Penalty blocks: ``block=60``, or escalating ``block=[60, 600, 3600]``.

A key whose hit is denied is then blocked: every hit, peek and decision for it is
denied until the block ends (``retry_after`` says when), without consuming
anything. With several lengths, each breach within ``window`` seconds of the
previous block's end blocks for the next length (the last one repeats); a key
that stays clean for ``window`` starts again from the first. ``reset`` lifts a
block; ``refund`` does not.

The state is one Redis key per caller key (per middleware rule), beside the
limit's keys in the same hash tag: ``"<until µs> <breaches>"``, living until
``window`` after the block's end. It is written by ``lua/_driver_blocks.lua``
(Python twin: :mod:`gatekeep.algorithms._blocks`), which plans without blocks
never run: they cost the server what they did.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends.base import Plan

__all__ = [
    "Block",
    "BlockSpec",
    "Group",
    "as_block",
    "block_state",
    "decode",
    "encode",
    "with_block",
]

_MAX_US = 366 * 86_400_000_000


def _us(seconds: Any, what: str) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"{what} must be a number of seconds, not {seconds!r}")
    us = round(seconds * 1_000_000)
    if not math.isfinite(seconds) or not 1_000 <= us <= _MAX_US:
        raise ValueError(f"{what} must be between 1 ms and 366 days, got {seconds!r} s")
    return us


class Block:
    """How long a key stays blocked after a denial.

    >>> Block(60)                          # 60 s after every denial
    Block([60.0], window=0.0)
    >>> Block([60, 600, 3600])             # escalating; a breach count lasts an hour
    Block([60.0, 600.0, 3600.0], window=3600.0)

    ``window`` (seconds): how long after a block ends a new breach still counts as a
    repeat (escalates). Defaults to the longest length; 0 with one length.
    """

    __slots__ = ("lengths_us", "window_us")

    def __init__(self, lengths: float | Sequence[float], window: float | None = None) -> None:
        items = [lengths] if isinstance(lengths, int | float) else list(lengths)
        if not items:
            raise ValueError("block needs at least one length in seconds, e.g. block=60")
        self.lengths_us: tuple[int, ...] = tuple(_us(x, "a block length") for x in items)
        if window is None:
            self.window_us = 0 if len(items) == 1 else max(self.lengths_us)
        elif window == 0:
            self.window_us = 0
        else:
            self.window_us = _us(window, "block window")

    def group(self, first: int, last: int) -> Group:
        """This block over the limits ``first``..``last`` (1-based, inclusive)."""
        return (first, last, self.window_us, self.lengths_us)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Block)
            and self.lengths_us == other.lengths_us
            and self.window_us == other.window_us
        )

    def __hash__(self) -> int:
        return hash((self.lengths_us, self.window_us))

    def __repr__(self) -> str:
        lengths = [x / 1_000_000 for x in self.lengths_us]
        return f"Block({lengths}, window={self.window_us / 1_000_000})"


#: A group of limits under one block key: first, last (1-based, inclusive), window µs,
#: block lengths µs.
Group = tuple[int, int, int, tuple[int, ...]]

#: What ``block=`` accepts: seconds, a list of escalating seconds, or a :class:`Block`.
BlockSpec = float | Sequence[float] | Block | None


def as_block(spec: BlockSpec) -> Block | None:
    """``block=`` as a :class:`Block` (None: no blocks); raises on a bad value."""
    if spec is None or isinstance(spec, Block):
        return spec
    if isinstance(spec, str):
        raise TypeError(f"block must be seconds, a list of seconds or a Block, not {spec!r}")
    return Block(spec)


def encode(groups: Sequence[Group]) -> tuple[int, ...]:
    """The ARGV tail of ``lua/_driver_blocks.lua`` for ``groups``: per group first,
    last, window, the number of lengths and the lengths; then how many they are."""
    tail = tuple(
        x
        for first, last, window, lengths in groups
        for x in (first, last, window, len(lengths), *lengths)
    )
    return (*tail, len(tail))


def decode(tail: Sequence[int]) -> list[Group]:
    """The groups ``encode`` made ``tail`` of."""
    groups, at, end = [], 0, len(tail) - 1
    while at < end:
        first, last, window, k = tail[at : at + 4]
        groups.append((first, last, window, tuple(tail[at + 4 : at + 4 + k])))
        at += 4 + k
    return groups


def with_block(plan: Plan, block: Block) -> Plan:
    """A limiter's ``plan`` with ``block``: one group, every limit, under one block key
    (the limits' key suffixes then ``:blk``, after the caller key's tag)."""
    tail = encode([block.group(1, len(plan.rates))])
    return dataclasses.replace(
        plan,
        algorithm=plan.algorithm.with_blocks,
        flat=plan.flat + tail,
        blocks=tail,
        block_suffix="".join(plan.suffixes) + ":blk",
    )


def block_state(value: str | bytes | None, now: int) -> dict[str, Any] | None:
    """A block key's value read at ``now`` (µs): blocked or not, seconds left, breaches
    counted; None when ``value`` is not one (for ``python -m gatekeep inspect``)."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    parts = (text or "").split(" ")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    until, breaches = int(parts[0]), int(parts[1])
    return {
        "blocked": until > now,
        "ends_in": max(0, until - now) / 1_000_000,
        "breaches": breaches,
    }

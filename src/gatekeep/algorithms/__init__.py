"""The limiter algorithms: one Python twin per script in ``lua/``.

Each module (``token_bucket``, ``gcra``, ``fixed_window``, ``sliding_window``,
``sliding_log``) is the whole algorithm on the Python side, beside its Lua
script: ``NAME``, ``SHORT`` (its name in keys), ``BURST`` (whether its two
numbers per limit are an interval and a burst, or a limit and a period), and
``check``, ``commit`` and ``refund`` exactly as its Lua script defines them.
:mod:`._driver` runs them as ``lua/_driver.lua`` does (several limits,
all-or-nothing).

Adding an algorithm
-------------------
1. ``lua/<name>.lua``: a header (KEYS, ARGV with units, what it stores), then
   ``check(key, a, b)`` returning the values ``lua/_prelude.lua`` lists (allowed ..
   reset_if_hit, then the state's lifetime ``ttl`` and the state: values, not a
   table, which would cost server time on every call), ``commit(key, ttl, state...)``
   writing the state with a lifetime of ``ttl`` (the time until that state stops
   mattering), and ``refund(key, a, b)``. ``now``, ``mode``, ``cost``, ``floor``,
   ``ms`` and ``keepttl`` are the prelude's. Optionally, at the top, the common
   call (``mode == 'hit'`` and one key) inlined and returning the driver's reply:
   kept only where ``benchmarks/bench_server_lua.py --ref`` shows it pays (the
   definitions below it are then not reached, so no closure is made).
2. ``src/gatekeep/algorithms/<name>.py``: the same functions with the same names,
   arguments and integer arithmetic (``check`` returns a :class:`Check`, the Lua's
   values in the same order), plus
   ``NAME``, ``SHORT`` and ``BURST``. Optionally ``fused_hit``: an inlined
   in-process ``hit`` for one limit, kept only where a benchmark shows it pays
   (``benchmarks/bench_memory.py``; without one, ``MemoryBackend`` runs
   ``check`` + ``commit`` through :func:`run`).
3. Register the module in ``ALGORITHMS`` below: one line.

The tests pick every registered algorithm up: Lua against twin (hypothesis, on
Redis and Valkey), semantics, key lifetimes, fused path against twin.

:mod:`.concurrency` is the twin of the concurrency scripts (``lua/_lease.lua``,
``lua/concurrency.lua``, ``lua/_leased.lua``): leases, not a rate, so it is not
registered here; ``_leased.lua`` runs any registered algorithm's script, with the
driver, as a function after the lease sets are checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from types import ModuleType

from ..rates import Rate
from ..scripts import Script, limiter_script
from . import fixed_window, gcra, sliding_log, sliding_window, token_bucket
from ._driver import CHARGE, HIT, PEEK, REFUND, Algorithm, bucket_params, run, window_params

__all__ = ["ALGORITHMS", "AlgorithmSpec", "CHARGE", "HIT", "PEEK", "REFUND", "get_algorithm", "run"]


@dataclass(frozen=True, eq=False)
class AlgorithmSpec:
    """A registered algorithm: its twin module, and the script made from its Lua."""

    twin: ModuleType
    #: Whether its script runs ``lua/_driver_blocks.lua`` (plans with penalty blocks).
    blocks: bool = False

    @property
    def name(self) -> str:
        return self.twin.NAME  # type: ignore[no-any-return]

    @property
    def short(self) -> str:
        """Short name used in Redis keys."""
        return self.twin.SHORT  # type: ignore[no-any-return]

    @cached_property
    def script(self) -> Script:
        return limiter_script(self.name, self.blocks)

    @cached_property
    def with_blocks(self) -> AlgorithmSpec:
        """This algorithm with the driver of penalty blocks (see :mod:`gatekeep.blocks`)."""
        return self if self.blocks else AlgorithmSpec(self.twin, blocks=True)

    @property
    def algorithm(self) -> Algorithm:
        return self.twin

    @property
    def bucket(self) -> bool:
        """Whether the script's parameters are (interval, burst): token bucket, GCRA."""
        return bool(self.twin.BURST)

    def params(self, rate: Rate) -> tuple[int, int]:
        """The two script parameters of one limit."""
        return bucket_params(rate) if self.bucket else window_params(self.name, rate)


ALGORITHMS: dict[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in map(
        AlgorithmSpec,
        (
            token_bucket,
            gcra,
            sliding_window,
            sliding_log,
            fixed_window,
        ),
    )
}


def get_algorithm(name: str | AlgorithmSpec) -> AlgorithmSpec:
    if isinstance(name, AlgorithmSpec):
        return name
    try:
        return ALGORITHMS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}"
        ) from None

"""The limiter algorithms: one Python twin per script in ``lua/``.

Each module (``token_bucket``, ``gcra``, ``fixed_window``, ``sliding_window``,
``sliding_log``) defines ``check``, ``commit`` and ``refund`` exactly as its Lua
script does, and :mod:`._driver` runs them as ``lua/_driver.lua`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from types import ModuleType

from ..rates import Rate
from ..scripts import Script, limiter_script
from . import fixed_window, gcra, sliding_log, sliding_window, token_bucket
from ._driver import HIT, PEEK, REFUND, Algorithm, run

__all__ = ["ALGORITHMS", "AlgorithmSpec", "HIT", "PEEK", "REFUND", "get_algorithm", "run"]


@dataclass(frozen=True, eq=False)
class AlgorithmSpec:
    name: str
    #: Short name used in Redis keys.
    short: str
    twin: ModuleType
    #: True for the token bucket and GCRA, whose parameters are (interval, burst).
    bucket: bool

    @cached_property
    def script(self) -> Script:
        return limiter_script(self.name)

    @property
    def algorithm(self) -> Algorithm:
        return self.twin

    def params(self, rate: Rate) -> tuple[int, int]:
        """The two script parameters of one limit."""
        if self.bucket:
            return (rate.interval_us, rate.burst)
        if rate.has_burst:
            raise ValueError(
                f"{self.name} admits 'limit' per window and has no burst; "
                f"drop 'burst' from {str(rate)!r} or use token_bucket or gcra"
            )
        return (rate.limit, rate.period_us)


ALGORITHMS: dict[str, AlgorithmSpec] = {
    m.NAME: AlgorithmSpec(m.NAME, m.SHORT, m, m in (token_bucket, gcra))
    for m in (token_bucket, gcra, sliding_window, sliding_log, fixed_window)
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

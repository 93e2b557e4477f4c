"""What a limiter asks of a backend, and the plan it hands over."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..algorithms import AlgorithmSpec
from ..algorithms._driver import Algorithm, FusedHit
from ..rates import Rate

__all__ = ["Backend", "Plan", "backend_kind"]


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """Everything about one set of limits that does not change from call to call.

    Built once per distinct ``limits`` argument and cached by the limiter.
    """

    algorithm: AlgorithmSpec
    rates: tuple[Rate, ...]
    #: One key suffix per rate, e.g. ``":tb:10/1s"``.
    suffixes: tuple[str, ...]
    #: The two script parameters of each rate.
    params: tuple[tuple[int, int], ...]
    #: ``params`` flattened, as the script's ARGV[4:] takes them (then ``blocks``).
    flat: tuple[int, ...]
    #: The algorithm's Python twin (``algorithm.twin``, looked up once).
    twin: Algorithm
    #: Recently built key lists, by caller key (shared: never mutate them).
    key_cache: dict[str, list[str]] = field(default_factory=dict, repr=False)
    #: ``hit`` in one function, when the backend offers one for this plan (the
    #: in-process backend, one limit: see ``MemoryBackend.fused_hit``); else None.
    fast: FusedHit | None = field(default=None, repr=False)
    #: Penalty blocks: the ARGV tail of ``lua/_driver_blocks.lua`` (the end of ``flat``;
    #: ``algorithm`` is then the algorithm ``with_blocks``), whose keys follow the
    #: limits' keys; empty without blocks (see :mod:`gatekeep.blocks`).
    blocks: tuple[int, ...] = ()
    #: The block key's suffix after the caller key's tag (a limiter's plans).
    block_suffix: str = ""


@runtime_checkable
class Backend(Protocol):
    """Runs limiter plans. ``now`` is in microseconds, or None for the backend's clock.

    A reply is a flat list of four integers per rate (see ``lua/_driver.lua``).
    """

    def limit(
        self, plan: Plan, keys: list[str], now: int | None, mode: str, cost: int
    ) -> list[int]: ...

    def limit_many(
        self, plan: Plan, keys: Sequence[list[str]], now: int | None, mode: str, cost: int
    ) -> list[list[int]]: ...

    def delete(self, keys: list[str]) -> None: ...

    async def alimit(
        self, plan: Plan, keys: list[str], now: int | None, mode: str, cost: int
    ) -> list[int]: ...

    async def alimit_many(
        self, plan: Plan, keys: Sequence[list[str]], now: int | None, mode: str, cost: int
    ) -> list[list[int]]: ...

    async def adelete(self, keys: list[str]) -> None: ...


def backend_kind(backend: object) -> str:
    """``memory``, ``redis``, ``failover`` ...: how metrics label ``backend`` (its
    latency histogram, its errors). A backend may name itself by ``metrics_name``."""
    kind = getattr(backend, "metrics_name", None)
    if isinstance(kind, str):
        return kind
    return type(backend).__name__.removesuffix("Backend").lower() or "backend"

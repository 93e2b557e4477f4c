"""The script-call API of :class:`~.redis.RedisBackend` that is one kind of batch.

``eval`` (one script), ``eval_ro`` (one read-only script, on a replica) and
``eval_many`` (one script, many keys and arguments), and their awaited twins, are
each a batch of one kind through ``eval_batch`` / ``aeval_batch``: the mixin
:class:`ScriptCalls` writes them once over those two, which the backend provides.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any

from ..scripts import Script
from ._calls import ScriptCall, first, raise_first

__all__ = ["ScriptCalls"]


class ScriptCalls:
    """``eval``, ``eval_ro``, ``eval_many`` (and ``aeval``...) over ``eval_batch``."""

    def eval_batch(
        self,
        calls: Sequence[ScriptCall],
        *,
        read_only: bool = False,
        wait: tuple[int, int] | None = None,
    ) -> list[Any]:
        raise NotImplementedError

    def aeval_batch(
        self,
        calls: Sequence[ScriptCall],
        *,
        read_only: bool = False,
        wait: tuple[int, int] | None = None,
    ) -> Coroutine[Any, Any, list[Any]]:
        raise NotImplementedError

    def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` in one round trip (two after the server lost its script cache)."""
        return first(self.eval_batch([(script, keys, args)]))

    async def aeval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return first(await self.aeval_batch([(script, keys, args)]))

    def eval_ro(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a read-only ``script`` by EVALSHA_RO on a replica (the primary when
        there is none). The script must not write: replicas refuse it."""
        return first(self.eval_batch([(script, keys, args)], read_only=True))

    async def aeval_ro(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return first(await self.aeval_batch([(script, keys, args)], read_only=True))

    def eval_many(
        self, script: Script, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """Run ``script`` once per (keys, args) in one pipelined round trip."""
        return raise_first(self.eval_batch([(script, k, a) for k, a in calls]))

    async def aeval_many(
        self, script: Script, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        return raise_first(await self.aeval_batch([(script, k, a) for k, a in calls]))

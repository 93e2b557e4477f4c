"""One generator, two drivers: how gatekeep writes a multi-step operation once.

A *flow* is a generator that yields the I/O it needs (a batch of scripts, a
sub-call), is sent the result, and returns its outcome; when the I/O raises,
the exception is thrown into the flow at that ``yield``, so a flow can handle
it (fall back to a replica, say) or let it propagate. :func:`run_flow` steps a
flow with blocking I/O and :func:`arun_flow` with asyncio: the logic cannot
drift between the sync and async APIs (the httpx auth-flow pattern).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import TypeVar

__all__ = ["arun_flow", "nest", "run_flow"]

S = TypeVar("S")  # what the flow yields: the I/O to do
R = TypeVar("R")  # what it is sent: the I/O's result
T = TypeVar("T")  # what it returns
X = TypeVar("X")  # what an inner flow yields
Y = TypeVar("Y")  # what an inner flow is sent


def run_flow(flow: Generator[S, R, T], io: Callable[[S], R]) -> T:
    """Run ``flow`` to its end, doing each step's I/O with ``io``."""
    try:
        step = next(flow)
        while True:
            try:
                result = io(step)
            except BaseException as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # StopIteration.value is Any


async def arun_flow(flow: Generator[S, R, T], io: Callable[[S], Awaitable[R]]) -> T:
    """The same, awaiting each step's I/O."""
    try:
        step = next(flow)
        while True:
            try:
                result = await io(step)
            except BaseException as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # StopIteration.value is Any


def nest(outer: Generator[S, R, T], inner: Callable[[S], Generator[X, Y, R]]) -> Generator[X, Y, T]:
    """``outer`` as a flow whose every step is itself a flow (``inner(step)``): a
    sub-call that does I/O of its own, stepped by the same driver."""
    try:
        step = next(outer)
        while True:
            try:
                result = yield from inner(step)
            except BaseException as exc:
                step = outer.throw(exc)
            else:
                step = outer.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]  # StopIteration.value is Any

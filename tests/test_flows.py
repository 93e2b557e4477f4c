from __future__ import annotations

import pytest

from gatekeep.flows import arun_flow, run_flow


def fallback_flow():
    """Asks for "primary"; when that I/O raises, asks for "replica"."""
    try:
        return (yield "primary")
    except ConnectionError:
        return "replica:" + (yield "replica")


def io(step: str) -> str:
    if step == "primary":
        raise ConnectionError("down")
    return step.upper()


async def aio(step: str) -> str:
    return io(step)


def test_io_errors_are_thrown_into_the_flow():
    assert run_flow(fallback_flow(), io) == "replica:REPLICA"
    assert run_flow(fallback_flow(), str.upper) == "PRIMARY"


async def test_async_driver_is_the_same():
    assert await arun_flow(fallback_flow(), aio) == "replica:REPLICA"


def test_unhandled_errors_propagate():
    def flow():
        yield "x"
        return "never"

    with pytest.raises(KeyError):
        run_flow(flow(), lambda step: {}[step])

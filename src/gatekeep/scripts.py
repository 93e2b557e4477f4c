"""Loading the Lua scripts shipped in ``lua/``.

From an installed wheel the scripts sit in the package (``gatekeep/lua``); from
an editable install or a checkout they are read from the repository's top-level
``lua/`` folder. Nothing is read at import time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

__all__ = ["Script", "concurrency_script", "leased_script", "limiter_script", "lua_dir", "read_lua"]


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA1, for EVALSHA with a fallback to EVAL on NOSCRIPT."""

    name: str
    source: str
    sha: str

    @classmethod
    def from_source(cls, name: str, source: str) -> Script:
        return cls(name, source, hashlib.sha1(source.encode()).hexdigest())


@cache
def lua_dir() -> Path:
    """Where the ``.lua`` files are: inside the package, else the checkout's ``lua/``."""
    packaged = resources.files("gatekeep").joinpath("lua")
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent.parent / "lua"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"gatekeep's Lua scripts were not found in {packaged} nor in {checkout}; "
        "reinstall the package"
    )


@cache
def read_lua(name: str) -> str:
    """The text of ``lua/<name>.lua``."""
    return (lua_dir() / f"{name}.lua").read_text(encoding="utf-8")


@cache
def limiter_script(name: str, blocks: bool = False) -> Script:
    """A limiter algorithm's script: the shared prelude, the algorithm, the shared driver
    (``blocks``: the driver of plans with penalty blocks, in two parts: ``_blocks_head``
    before the algorithm, ``_driver_blocks`` after it)."""
    parts: tuple[str, ...]
    if blocks:
        parts = ("_prelude", "_blocks_head", name, "_driver_blocks")
    else:
        parts = ("_prelude", name, "_driver")
    source = "\n".join(map(read_lua, parts))
    return Script.from_source(f"{name}+blocks" if blocks else name, source)


@cache
def concurrency_script() -> Script:
    """The concurrency limit's script: the shared prelude, the leases, acquire/renew/release."""
    source = "\n".join((read_lua("_prelude"), read_lua("_lease"), read_lua("concurrency")))
    return Script.from_source("concurrency", source)


@cache
def leased_script(name: str) -> Script:
    """Rate limits of algorithm ``name`` and leases in one call (``lua/_leased.lua``): the
    algorithm and the shared driver wrapped as ``limits()``, run after the leases are checked."""
    source = "\n".join(
        (
            read_lua("_prelude"),
            read_lua("_lease"),
            "local function limits()",
            read_lua(name),
            read_lua("_driver"),
            "end",
            read_lua("_leased"),
        )
    )
    return Script.from_source(f"{name}+leases", source)

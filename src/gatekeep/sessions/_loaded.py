"""What a session load read: the hash as the load script (or its twin) hands it over,
judged against the clock that script read.

The peek (``session_peek.lua``, or its plain TIME and HGETALL: ``._redis``) and the load
script's ``touch`` mode return the session hash as HGETALL gives it, then ``now``, and
leave the layout of the reply to the client: the Lua stays a read (plus the touch),
which is what a session request costs the one Redis thread. :func:`judge` is the
expiry rule of ``session_prelude.lua``'s ``judge()``, without the deletion (a read
never writes), and :func:`loaded` turns the raw reply into the load reply the session
takes (:meth:`Session.fill`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEAD", "LIVE", "NONE", "judge", "loaded"]

NONE, DEAD, LIVE = "none", "dead", "live"


def judge(
    now: int, idle: int, t: str | None, c: str | None, a: str | None, x: str | None
) -> tuple[str, int, int, int]:
    """The state of a session from its fields ``t``, ``c``, ``a``, ``x`` (text, or None
    when absent) at ``now``: ``"none"``, ``"dead"`` (a tombstone) or ``"live"``, then
    created, last seen and absolute expiry (µs; 0 unless live). Past its idle or
    absolute expiry a session is ``"none"``."""
    if t is not None:
        return (NONE if int(t) <= now else DEAD), 0, 0, 0
    if c is None:
        return NONE, 0, 0, 0
    # A live session has all three (a hash with c alone is an error, as in the Lua).
    ci, ai, xi = int(c), int(a), int(x)  # type: ignore[arg-type]
    if xi <= now or now - ai >= idle:
        return NONE, 0, 0, 0
    return LIVE, ci, ai, xi


def loaded(raw: list[Any], idle: int) -> list[Any]:
    """A load reply from the raw one (``field1, value1, ..., now``): ``[0]`` no such
    session, ``[-1]`` destroyed (a tombstone), or ``[1, created, last_seen, expires_at,
    absolute_expires_at, user or "", key1, json1, ...]`` (µs)."""
    now = int(raw[-1])
    out: list[Any] = [1, 0, 0, 0, 0, ""]
    t = c = a = x = u = None
    for i in range(0, len(raw) - 1, 2):
        f = raw[i]
        if len(f) == 1:
            if f == "a":
                a = raw[i + 1]
            elif f == "c":
                c = raw[i + 1]
            elif f == "x":
                x = raw[i + 1]
            elif f == "u":
                u = raw[i + 1]
            elif f == "t":
                t = raw[i + 1]
        elif f[:2] == "d:":
            out += (f[2:], raw[i + 1])
    state, ci, ai, xi = judge(now, idle, t, c, a, x)
    if state == NONE:
        return [0]
    if state == DEAD:
        return [-1]
    out[1:6] = ci, ai, min(ai + idle, xi), xi, u or ""
    return out

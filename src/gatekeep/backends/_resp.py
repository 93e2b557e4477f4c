"""RESP, the Redis protocol, packed by hand for the lean round trip (:mod:`._wire`).

Script arguments are ``str``, ``bytes`` and ``int`` only: packing them here costs a
fraction of redis-py's general encoder, and an EVALSHA's head (command, SHA, number
of keys) is packed once per script and kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._calls import Command, Trip

__all__ = ["pack", "pack_trip"]


def pack(args: Sequence[Any]) -> bytes:
    """One command in RESP, the Redis protocol: an array of bulk strings.

    Script arguments are ``str``, ``bytes`` and ``int`` only; packing them here
    costs a fraction of redis-py's general encoder.
    """
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if type(a) is bytes else str(a).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


#: The packed start of an EVALSHA (or EVALSHA_RO), its script's SHA and number of keys,
#: per (sha, read_only, number of keys): the same bytes for every call of that script.
_HEADS: dict[tuple[str, bool, int], bytes] = {}


def _head(sha: str, read_only: bool, nkeys: int) -> bytes:
    command = b"EVALSHA_RO" if read_only else b"EVALSHA"
    head = _HEADS[(sha, read_only, nkeys)] = b"".join(
        b"$%d\r\n%b\r\n" % (len(b), b) for b in (command, sha.encode(), b"%d" % nkeys)
    )
    return head


def pack_trip(trip: Trip) -> bytes:
    """The trip's commands in RESP: EVALSHA (or EVALSHA_RO) as ``pack`` would make them,
    with each script's head packed once; EVAL (the script's source), a plain
    :class:`~._calls.Command` and WAIT by ``pack``.
    A trip packed already (``trip.packed``) is not packed again."""
    if trip.packed is not None:
        return trip.packed
    read_only = trip.read_only
    out = []
    if trip.source:
        command = "EVAL_RO" if read_only else "EVAL"
        out = [pack((command, s.source, len(k), *k, *a)) for s, k, a in trip.calls]
    else:
        for s, k, a in trip.calls:
            if type(s) is Command:
                out.append(pack((s.name, *k, *a)))
                continue
            nkeys = len(k)
            out.append(b"*%d\r\n" % (3 + nkeys + len(a)))
            out.append(_HEADS.get((s.sha, read_only, nkeys)) or _head(s.sha, read_only, nkeys))
            for x in (*k, *a):
                b = x if type(x) is bytes else str(x).encode()
                out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    if trip.wait is not None:
        out.append(pack(("WAIT", *trip.wait)))
    return b"".join(out)

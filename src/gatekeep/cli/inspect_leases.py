"""``inspect`` for a concurrency limit's lease set: who holds its slots, and until when.

A lease set's key is ``gk:[app:]{<key>}[:<rule>]:cc`` (:class:`gatekeep.ConcurrencyLimiter`,
or a middleware rule with ``concurrency``): a sorted set, lease id -> when the lease
lapses (µs on the server's clock). Read with ZRANGE and the server's TIME: nothing is
written, so a lapsed lease still listed is shown as lapsed (the next acquire drops it).
"""

from __future__ import annotations

import re
from typing import Any, TextIO

from ..keys import ROOT

__all__ = ["describe_leases", "render_leases"]

_LEASE_RE = re.compile(
    r"^" + re.escape(ROOT) + r"(?P<app>[A-Za-z0-9_.:\-]*?)\{(?P<tag>[^{}]*)\}"
    r"(?::(?P<rule>.+))?:cc$"
)
#: At most this many holders are listed.
MAX_HOLDERS = 100


def describe_leases(client: Any, key: str, kind: str) -> dict[str, Any] | None:
    """The holders of the lease set ``key``; None when ``key`` is not one."""
    m = _LEASE_RE.match(key)
    if m is None or kind not in ("zset", "none"):
        return None
    seconds, micros = client.time()
    now = int(seconds) * 1_000_000 + int(micros)
    entries = client.zrange(key, 0, MAX_HOLDERS - 1, withscores=True) if kind == "zset" else []
    holders: list[dict[str, Any]] = [
        {
            "lease": v.decode(errors="replace") if isinstance(v, bytes) else str(v),
            "lapses_in": (int(score) - now) / 1_000_000,
        }
        for v, score in entries
    ]
    return {
        "app_prefix": m["app"].rstrip(":"),
        "key": re.sub(r"%(25|7B|7D)", lambda x: bytes.fromhex(x[0][1:]).decode(), m["tag"]),
        "rule": m["rule"],
        "held": sum(1 for h in holders if h["lapses_in"] > 0),
        "holders": holders,
    }


def render_leases(info: dict[str, Any], out: TextIO) -> None:
    leases = info["leases"]
    ttl = info["ttl_ms"]
    rows: list[tuple[str, str]] = [
        ("key", info["key"]),
        ("kind", "concurrency limit (lease set)"),
        ("app prefix", leases["app_prefix"] or "(none)"),
        ("limiter key", leases["key"]),
        ("rule", leases["rule"] or "(none: a ConcurrencyLimiter's key)"),
        ("slots held", str(leases["held"])),
        ("ttl", "-" if ttl is None else f"{ttl} ms (until the last lease lapses)"),
    ]
    for h in leases["holders"]:
        state = f"lapses in {h['lapses_in']:.3f} s" if h["lapses_in"] > 0 else "lapsed"
        rows.append(("holder", f"{h['lease']}  {state}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}", file=out)

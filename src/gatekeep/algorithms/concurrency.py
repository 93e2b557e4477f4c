"""Concurrency limits: the Python twin of ``lua/_lease.lua``, ``lua/concurrency.lua``
and ``lua/_leased.lua``.

A lease set is, as in Redis, one key per concurrency limit: lease id -> when that
lease lapses (µs). Here it is a dict, changed in place (as ZREMRANGEBYSCORE, ZADD
and ZREM change a sorted set without touching its TTL), and written back with
``store.set`` where the Lua sets the key's expiry (PEXPIRE). Not a registered
algorithm (``ALGORITHMS``): it has its own modes, and joins the rate limits of a
call through :func:`run_leased` instead of the driver's ``check``/``commit``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._driver import HIT, PEEK, Algorithm, Store, ms, run

__all__ = [
    "ACQUIRE",
    "PEEK",
    "RELEASE",
    "RENEW",
    "lease_live",
    "lease_put",
    "lease_reply",
    "lease_span",
    "run_concurrency",
    "run_leased",
]

ACQUIRE = "acquire"
RENEW = "renew"
RELEASE = "release"

Leases = dict[str, int]


def _set(store: Store, key: str, now: int) -> Leases | None:
    leases: Leases | None = store.get(key, now)
    return leases


def lease_live(store: Store, key: str, now: int) -> int:
    """Drop the lapsed leases of ``key``; how many are held."""
    leases = _set(store, key, now)
    if leases is None:
        return 0
    for lease_id in [i for i, at in leases.items() if at <= now]:
        del leases[lease_id]
    if not leases:
        store.delete(key)  # an empty sorted set is no key
    return len(leases)


def lease_span(store: Store, key: str, now: int) -> tuple[int, int]:
    """µs until the first lease lapses, and until the last one does (0, 0: none held)."""
    leases = _set(store, key, now)
    if not leases:
        return 0, 0
    return min(leases.values()) - now, max(leases.values()) - now


def lease_put(store: Store, key: str, now: int, lease_id: str, ttl: int) -> None:
    """Take or extend ``lease_id`` until ``now + ttl``; the key lives until its last lease
    lapses."""
    leases = _set(store, key, now)
    if leases is None:
        leases = {}
    leases[lease_id] = now + ttl
    store.set(key, leases, now + ms(max(leases.values()) - now) * 1000)


def lease_reply(
    store: Store, key: str, now: int, ok: bool, held: int, limit: int
) -> tuple[int, int, int, int]:
    """One lease's reply: allowed, remaining slots, reset_after µs, retry_after µs."""
    first, last = lease_span(store, key, now)
    if ok:
        return (1, limit - held, last, 0)
    return (0, limit - held, last, first)


def run_concurrency(
    store: Store, key: str, now: int, mode: str, limit: int, ttl: int, lease_id: str
) -> list[int]:
    """``lua/concurrency.lua``: acquire, renew, release or peek one lease on ``key``."""
    held = lease_live(store, key, now)
    leases = _set(store, key, now)
    if mode == ACQUIRE:
        if held < limit:
            lease_put(store, key, now, lease_id, ttl)
            return list(lease_reply(store, key, now, True, held + 1, limit))
        return list(lease_reply(store, key, now, False, held, limit))
    if mode == RENEW:
        if leases is None or lease_id not in leases:  # lapsed or released: lost
            return list(lease_reply(store, key, now, False, held, limit))
        lease_put(store, key, now, lease_id, ttl)
        return list(lease_reply(store, key, now, True, held, limit))
    if mode == RELEASE:
        if leases is not None and leases.pop(lease_id, None) is not None:
            held -= 1
            _, last = lease_span(store, key, now)
            if last > 0:
                store.set(key, leases, now + ms(last) * 1000)
            else:
                store.delete(key)
        return list(lease_reply(store, key, now, True, held, limit))
    return list(lease_reply(store, key, now, held < limit, held, limit))  # peek


def run_leased(
    algo: Algorithm,
    store: Store,
    keys: list[str],
    now: int,
    mode: str,
    cost: int,
    params: Sequence[tuple[int, int]],
    sets: Sequence[str],
    leases: Sequence[tuple[int, int]],
    lease_id: str,
) -> list[int]:
    """``lua/_leased.lua``: the rate limits of ``keys`` (the driver, :func:`run`) and one
    lease on each of ``sets`` (``leases``: its limit and ttl), all or nothing."""
    held = [lease_live(store, key, now) for key in sets]
    free = all(h < limit for h, (limit, _) in zip(held, leases, strict=True))
    if not free and mode == HIT:
        mode = PEEK
    out = run(algo, store, keys, now, mode, cost, params) if keys else []
    take = mode == HIT and all(out[i] == 1 for i in range(0, len(out), 4))
    for j, (key, (limit, ttl)) in enumerate(zip(sets, leases, strict=True)):
        if take:
            lease_put(store, key, now, lease_id, ttl)
            held[j] += 1
        out += lease_reply(store, key, now, held[j] < limit or take, held[j], limit)
    return out

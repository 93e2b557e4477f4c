"""The Python twins of ``lua/session_*.lua``, for the in-process store.

Each function below reads like the Lua script of the same name, line for line:
the same helpers (``judge``, ``meta``, ``touch``, ``bury``), the same arguments (``argv``
without ``now``, which is passed in) and the same flat replies, so a property
test can drive both with one clock and compare. A session hash is a ``dict``
of ``str`` to ``str``; a user index is a ``dict`` of id to score. Values live in a
:class:`~gatekeep.backends.memory.MemoryStore`, whose expiry runs on the ``now`` given.
"""

from __future__ import annotations

from typing import Any

from ..algorithms._driver import ms
from ..backends.memory import MemoryStore as Store
from . import _loaded

__all__ = ["SCRIPTS", "destroy", "index", "load", "peek", "save"]

Reply = list[Any]


# -- helpers standing in for the Redis commands the scripts use -------------------------


def _hash(store: Store, key: str, now: int) -> dict[str, str] | None:
    value = store.get(key, now)
    return value if isinstance(value, dict) else None


def _hset(store: Store, key: str, now: int, fields: dict[str, str]) -> None:
    h = _hash(store, key, now)
    if h is None:
        # A new key has no TTL until the PEXPIRE that every script sends right after.
        store.set(key, dict(fields), now + 2**62)
    else:
        h.update(fields)


def _pexpire(store: Store, key: str, now: int, ttl_ms: int) -> None:
    value = store.get(key, now)
    if value is not None:
        store.set(key, value, now + ttl_ms * 1000)


# -- session_prelude.lua (session_clock.lua is the `now` every twin is given) ------------


def is_data(f: str) -> bool:
    return f[:2] == "d:"


def judge(
    store: Store,
    key: str,
    now: int,
    idle: int,
    ro: bool,
    t: str | None,
    c: str | None,
    a: str | None,
    x: str | None,
) -> tuple[str, int, int, int]:
    # The rule itself is the one the client judges a load's reply by (_loaded.judge).
    state, ci, ai, xi = _loaded.judge(now, idle, t, c, a, x)
    if state == "none" and not ro and (t is not None or c is not None):
        store.delete(key)
    return state, ci, ai, xi


def meta(
    store: Store, key: str, now: int, idle: int, ro: bool = False
) -> tuple[str, int, int, int, str | None, str | None]:
    h = _hash(store, key, now) or {}
    state, c, a, x = judge(
        store, key, now, idle, ro, h.get("t"), h.get("c"), h.get("a"), h.get("x")
    )
    return state, c, a, x, h.get("u"), h.get("i")


def touch(store: Store, key: str, now: int, a: int, x: int, idle: int) -> int:
    seen = max(a, now)
    _hset(store, key, now, {"a": str(seen), "i": str(idle)})
    _pexpire(store, key, now, ms(min(seen + idle, x) - now))
    return seen


def bury(store: Store, key: str, now: int, till: int) -> None:
    store.delete(key)
    if till > now:
        _hset(store, key, now, {"t": str(till)})
        _pexpire(store, key, now, ms(till - now))


# -- session_load.lua --------------------------------------------------------------------


def load(store: Store, keys: list[str], now: int, argv: list[str]) -> Reply:
    key = keys[0]
    idle = int(argv[0])
    mode = argv[1]
    if mode == "meta":
        state, c, a, x, u, _i = meta(store, key, now, idle, True)
        if state == "none":
            return [0]
        if state == "dead":
            return [-1]
        return [1, c, a, min(a + idle, x), x, u or ""]

    if mode != "touch":
        raise ValueError(f"gatekeep: session_load mode {mode}")

    flat: Reply = [v for kv in (_hash(store, key, now) or {}).items() for v in kv]
    fields: dict[str, str] = {}
    at = 0
    for i in range(0, len(flat), 2):
        f = flat[i]
        if len(f) == 1:  # metadata: one letter (data fields are 'd:' + key)
            fields[f] = flat[i + 1]
            if f == "a":
                at = i + 1
    state, c, a, x = judge(
        store,
        key,
        now,
        idle,
        False,
        fields.get("t"),
        fields.get("c"),
        fields.get("a"),
        fields.get("x"),
    )
    if state == "none":
        return [now]
    if state == "live":
        flat[at] = str(touch(store, key, now, a, x, idle))
    flat.append(now)
    return flat


# -- session_peek.lua --------------------------------------------------------------------


def peek(store: Store, keys: list[str], now: int, argv: list[str]) -> Reply:
    flat: Reply = [v for kv in (_hash(store, keys[0], now) or {}).items() for v in kv]
    flat.append(now)
    return flat


# -- session_save.lua --------------------------------------------------------------------


def save(store: Store, keys: list[str], now: int, argv: list[str]) -> Reply:
    key = keys[0]
    new_key = keys[1] if len(keys) > 1 else None
    idle, lifetime = int(argv[0]), int(argv[1])
    mode, created = argv[2], int(argv[3])

    state, c, a, x, _u, ti = meta(store, key, now, idle)
    if mode == "new":
        if state != "none":
            return [-1]
        c, a, x = now, now, now + lifetime
    elif state == "dead":
        return [0]
    elif state == "none":
        if mode != "adopt" or created + lifetime <= now:
            return [0]
        c, a, x = created, now, created + lifetime
    elif c != created:
        return [0]
    if new_key is not None and meta(store, new_key, now, idle)[0] != "none":
        return [-1]

    # The writes: one HSET (the metadata, the touch, the changed keys, the user) and one
    # HDEL (the removed keys, the user); then the TTL.
    if argv[4] == "1" and state == "live":
        h = _hash(store, key, now) or {}
        for f in [f for f in h if is_data(f)]:
            del h[f]
    # The touch is lazy, as a read's (see session_save.lua).
    touch = (
        state != "live"
        or new_key is not None
        or 10 * (now - a) >= idle
        or ti is None
        or int(ti) != idle
    )
    seen = a
    fields = {}
    if touch:
        seen = max(a, now)
        fields = {"a": str(seen), "i": str(idle)}
    if state != "live":  # (touched) a live session has these already (c is `created`)
        fields.update(c=str(c), x=str(x))
    n = int(argv[7])
    pairs = argv[8 : 8 + 2 * n]
    fields.update({"d:" + pairs[i]: pairs[i + 1] for i in range(0, len(pairs), 2)})
    user = argv[5]
    if user != "" and user != "-":
        fields["u"] = user[1:]
    _hset(store, key, now, fields)
    h = _hash(store, key, now) or {}
    for name in argv[8 + 2 * n :]:
        h.pop("d:" + name, None)
    if user == "-":
        h.pop("u", None)
    if touch:
        _pexpire(store, key, now, ms(min(seen + idle, x) - now))
    a = seen

    if new_key is not None:
        ttl = store.ttl_us(key, now)
        store.delete(key)
        store.set(new_key, h, now + (ttl if ttl is not None else 2**62))
        bury(store, key, now, now + int(argv[6]))
    return [1, c, a, min(a + idle, x), x]


# -- session_destroy.lua -----------------------------------------------------------------


def destroy(store: Store, keys: list[str], now: int, argv: list[str]) -> Reply:
    key = keys[0]
    state, _c, _a, _x, u, _i = meta(store, key, now, int(argv[0]))
    if state == "dead":
        return [0, ""]
    bury(store, key, now, now + int(argv[1]))
    if state == "none":
        return [0, ""]
    return [1, u or ""]


# -- session_index.lua -------------------------------------------------------------------


def index(store: Store, keys: list[str], now: int, argv: list[str]) -> Reply:
    key, op = keys[0], argv[0]
    value = store.get(key, now)
    zset: dict[str, int] = value if isinstance(value, dict) else {}
    for member in [m for m, score in zset.items() if score <= now]:
        del zset[member]
    if not zset:
        store.delete(key)

    def ordered() -> list[tuple[str, int]]:
        return sorted(zset.items(), key=lambda item: (item[1], item[0].encode()))

    def expire() -> None:
        if not zset:
            store.delete(key)
            return
        store.set(key, zset, now + ms(ordered()[-1][1] - now) * 1000)

    if op == "add":
        limit = int(argv[1])
        if argv[4] != "":
            zset.pop(argv[4], None)
        zset[argv[2]] = int(argv[3]) if argv[3] != "" else now + int(argv[5])
        over = len(zset) - limit
        evicted: Reply = []
        if over > 0:
            evicted = [m for m, _ in ordered()[:over]]
            for m in evicted:
                del zset[m]
        expire()
        return evicted
    if op == "remove":
        n = 0
        for member in argv[1:]:
            if zset.pop(member, None) is not None:
                n += 1
        expire()
        return [n]
    if op == "list":
        return [x for m, score in ordered() for x in (m, str(score))]
    ids: Reply = [m for m, _ in ordered()]
    store.delete(key)
    return ids


#: Script name -> twin, as :mod:`gatekeep.sessions.store` runs them.
SCRIPTS = {
    "session_load": load,
    "session_peek": peek,
    "session_save": save,
    "session_destroy": destroy,
    "session_index": index,
}

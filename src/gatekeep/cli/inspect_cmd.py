"""``python -m gatekeep inspect KEY``: a limiter key's or a session's state, read without
changing it.

A limiter key names everything needed to read it back:
``gk:<app>:{<key>}[:<rule>]:<algorithm>:<limit>/<period µs>[b<burst>]``; the
``:<rule>`` segment is there for the keys the middleware writes (the rule's name,
``default``, or a FastAPI route's ``GET /items/{id}``). :func:`parse_key` (pure)
decodes it; :func:`describe` rebuilds the same plan and runs the script in its
no-write mode (``peek``), so remaining / reset / retry are exactly what the next
hit would see, and reads the raw value and TTL.

A session key (``gk:[app:]s:{tag}rest``) names its session id
(:func:`gatekeep.sessions.split_key`); :func:`describe_session` reads the
session's metadata with the store's read-only script (``session_load`` in its
``meta`` mode: the idle deadline does not move): created, last seen, absolute
expiry, a hash of the user id, and the key's TTL (the idle deadline the last
load or save set). The data is shown only with ``--show-data`` (read-only too).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, TextIO

import redis
from redis.exceptions import RedisClusterException

from ..algorithms import ALGORITHMS, PEEK, AlgorithmSpec
from ..backends.redis import RedisBackend
from ..blocks import block_state
from ..decision import Decision
from ..keys import ROOT, tag
from ..limiter import Limiter
from ..rates import Rate
from ..sessions import SessionStore, split_key
from ..sessions._engine import Flow
from .connect import Target, connect, redact
from .inspect_leases import describe_leases, render_leases

__all__ = ["LimiterKey", "describe", "describe_session", "parse_key", "run"]

_SHORTS = {spec.short: spec for spec in ALGORITHMS.values()}
_KEY_RE = re.compile(
    r"^" + re.escape(ROOT) + r"(?P<app>[A-Za-z0-9_.:\-]*?)\{(?P<tag>[^{}]*)\}"
    # the rule: anything up to the last algorithm and rate (a name may hold ':')
    r"(?::(?P<rule>.+))?"
    r":(?P<short>" + "|".join(map(re.escape, _SHORTS)) + r"):"
    r"(?P<limit>\d+)/(?P<period>\d+)(?:b(?P<burst>\d+))?$"
)
_INDEX_RE = re.compile(r"^" + re.escape(ROOT) + r"(?:[A-Za-z0-9_.:\-]*:)?u:\{(?P<user>[^{}]*)\}$")
_SESSION_RE = re.compile(
    r"^" + re.escape(ROOT) + r"(?:[A-Za-z0-9_.:\-]*:)?s:\{[A-Za-z0-9_-]{4}\}[A-Za-z0-9_-]{43}$"
)
_UNESCAPE = {"%25": "%", "%7B": "{", "%7D": "}"}
#: At most this many SCAN calls for ``--pattern``, whatever the key count.
MAX_SCAN_CALLS = 200


@dataclass(frozen=True)
class LimiterKey:
    """What a limiter key's name says."""

    key: str
    app: str
    #: The caller's key (``user:42``), hash-tag escaping undone.
    name: str
    algorithm: AlgorithmSpec
    rate: Rate
    #: The middleware rule (or FastAPI route) the key counts for; None for a Limiter's.
    rule: str | None = None


def parse_key(key: str) -> LimiterKey | None:
    """Decode a limiter key, or None when ``key`` is not one."""
    m = _KEY_RE.match(key)
    if m is None:
        return None
    try:
        rate = Rate(int(m["limit"]), int(m["period"]), int(m["burst"] or 0))
    except ValueError:
        return None
    return LimiterKey(
        key, m["app"].rstrip(":"), _unescape(m["tag"]), _SHORTS[m["short"]], rate, m["rule"]
    )


def _unescape(tagged: str) -> str:
    return re.sub(r"%(25|7B|7D)", lambda x: _UNESCAPE[x[0]], tagged)


def describe(
    client: Any, key: str, *, show_value: bool = True, show_data: bool = False
) -> dict[str, Any]:
    """Everything ``inspect`` shows about ``key``, read-only."""
    kind = _text(client.type(key))
    pttl = int(client.pttl(key))
    out: dict[str, Any] = {
        "key": key,
        "type": kind,
        "ttl_ms": pttl if pttl >= 0 else None,
        "exists": pttl != -2,
    }
    if show_value and kind == "string":
        out["value"] = _text(client.getrange(key, 0, 199))  # bounded: any key may be named
    elif show_value and kind == "list":
        out["length"] = int(client.llen(key))
        out["value"] = [_text(v) for v in client.lrange(key, 0, 4)]
    lk = parse_key(key)
    if lk is None and key.endswith(":blk"):  # a penalty block (gatekeep.blocks)
        out["limiter"] = None
        out["block"] = block_state(client.get(key) if kind == "string" else None, _now(client))
        return out
    if lk is None:
        out["limiter"] = None
        leases = describe_leases(client, key, kind)
        if leases is not None:  # a concurrency limit's holders
            out["leases"] = leases
            return out
        index = _INDEX_RE.match(key)
        if index is not None:  # a user's session index: a sorted set of session ids
            out.pop("value", None)
            out["session_index"] = {
                "user": _unescape(index["user"]),
                "sessions": int(client.zcard(key)) if kind == "zset" else 0,
            }
            return out
        out["session_key"] = _SESSION_RE.match(key) is not None
        if out["session_key"]:
            out.pop("value", None)
            out["session"] = describe_session(client, key, show_data=show_data)
        return out
    limiter = Limiter(lk.rate, backend=RedisBackend(client), algorithm=lk.algorithm, prefix=lk.app)
    plan = limiter.plan(lk.rate)
    rule = "" if lk.rule is None else ":" + lk.rule
    if limiter.prefix + tag(lk.name) + rule + plan.suffixes[0] != key:
        out["limiter"] = None  # never peek at another key than the one named
        return out
    reply = limiter.backend.limit(plan, [key], None, PEEK, 1)
    d = Decision.from_reply(plan.rates, reply)
    out["limiter"] = {
        "algorithm": lk.algorithm.name,
        "rate": str(lk.rate),
        "app_prefix": lk.app,
        "key": lk.name,
        "rule": lk.rule,
        "limit": d.limit,
        "remaining": d.remaining,
        # units charged beyond the limit (a reservation settled above it): waited out first
        "debt": max(0, -reply[1]),
        "reset_after": d.reset_after,
        "retry_after": None if math.isinf(d.retry_after) else d.retry_after,
        "next_request": "allowed" if d.allowed else "denied",
    }
    # its block, if it has one: a Limiter's (one rate) or its middleware rule's
    base = limiter.prefix + tag(lk.name)
    for block_key in (key + ":blk", f"{base}{rule}:blk" if rule else None):
        state = block_state(client.get(block_key), _now(client)) if block_key else None
        if state is not None:
            out["limiter"]["block"] = state
            if state["blocked"]:
                out["limiter"]["next_request"] = "denied (blocked)"
                out["limiter"]["retry_after"] = max(d.retry_after, state["ends_in"])
            break
    return out


def _block_text(b: dict[str, Any]) -> str:
    state = f"blocked, {b['ends_in']:.3f} s left" if b["blocked"] else "not blocked"
    return f"{state}; {b['breaches']} breach(es) counted"


def _now(client: Any) -> int:  # the server's clock, µs (block ends are on it)
    seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


#: Seconds: the idle timeout ``inspect`` reads with. The app's own is unknown here,
#: so liveness comes from the key's TTL (set from the app's idle timeout).
_CENTURY = 100 * 365 * 24 * 3600
_MAX_SHOWN = 2000


def _state_flow(store: SessionStore, session_id: str, mode: str) -> Flow[list[Any]]:
    [reply] = yield [store.load_call(session_id, mode)]
    return store.loaded(reply, mode)


def describe_session(client: Any, key: str, *, show_data: bool = False) -> dict[str, Any]:
    """A session's metadata (and data, if asked), read-only, never moving its deadline."""
    parts = split_key(key)
    if parts is None:
        return {"state": "not a session key"}
    app, session_id = parts
    store = SessionStore(
        RedisBackend(client),
        prefix=app,
        idle_timeout=_CENTURY,
        absolute_timeout=_CENTURY,
        metrics=None,
    )
    reply = store.run(_state_flow(store, session_id, "peek" if show_data else "meta"))
    if reply[0] != 1:
        return {"state": "destroyed (a tombstone)" if reply[0] == -1 else "none"}
    meta = store.meta(session_id)
    if meta is None:  # it ended between the two reads
        return {"state": "none"}
    info: dict[str, Any] = {
        "state": "live",
        "id_hash": meta.id_hash,
        "created": meta.created_at.isoformat(),
        "last_seen": meta.last_seen_at.isoformat(),
        "absolute_expiry": meta.absolute_expires_at.isoformat(),
        "user_id_hash": meta.user_id_hash,
    }
    if show_data:
        data = {}
        for i in range(6, len(reply), 2):
            try:
                data[reply[i]] = json.loads(reply[i + 1])
            except ValueError:
                data[reply[i]] = reply[i + 1][:_MAX_SHOWN]
        info["data"] = data
    return info


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _render(info: dict[str, Any], out: TextIO) -> None:
    if info.get("leases") is not None:
        render_leases(info, out)
        return
    lim = info["limiter"]
    rows: list[tuple[str, Any]] = [("key", info["key"])]
    if lim is not None:
        rows += [
            ("algorithm", lim["algorithm"]),
            ("rate", lim["rate"]),
            ("app prefix", lim["app_prefix"] or "(none)"),
            ("limiter key", lim["key"]),
            ("rule", lim["rule"] or "(none: a Limiter's key)"),
            ("remaining", f"{lim['remaining']} of {lim['limit']}"),
            *(
                [("debt", f"{lim['debt']} beyond the limit (a settlement above it)")]
                if lim.get("debt")
                else []
            ),
            ("reset", f"{lim['reset_after']:.3f} s until full capacity"),
            (
                "next request",
                f"{lim['next_request']}"
                + (f", retry after {lim['retry_after']:.3f} s" if lim["retry_after"] else ""),
            ),
        ]
    if not info["exists"]:
        rows.append(
            (
                "stored",
                "nothing (never hit, or expired): full capacity"
                if lim is not None
                else "no such key",
            )
        )
    else:
        ttl = info["ttl_ms"]
        rows += [
            ("type", info["type"]),
            ("ttl", "none (persistent)" if ttl is None else f"{ttl} ms"),
        ]
        if "value" in info:
            extra = f" ({info['length']} entries, newest first)" if "length" in info else ""
            rows.append(("stored", f"{info['value']!r}{extra}"))
    block = info.get("block") or (lim or {}).get("block")
    if block is not None:
        rows.append(("block", _block_text(block)))
    index = info.get("session_index")
    if index is not None:
        rows += [("session index of user", index["user"]), ("sessions", str(index["sessions"]))]
    sess = info.get("session")
    if sess is not None:
        rows.append(("session", sess["state"]))
        if sess["state"] == "live":
            ttl = info["ttl_ms"]
            rows += [
                ("created", sess["created"]),
                ("last seen", sess["last_seen"]),
                ("idle expiry", "unknown" if ttl is None else f"in {ttl / 1000:.1f} s"),
                ("absolute expiry", sess["absolute_expiry"]),
                ("user", (sess["user_id_hash"] and f"id hash {sess['user_id_hash']}") or "(none)"),
            ]
            if "data" in sess:
                for name, value in sorted(sess["data"].items()):
                    text = json.dumps(value, ensure_ascii=False)
                    rows.append((f"data[{name!r}]", text[:_MAX_SHOWN]))
            else:
                rows.append(("data", "not shown (--show-data to show it)"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}", file=out)
    if sess is not None and sess["state"] != "live":
        print("a gatekeep session key, but no live session is stored under it", file=out)
    elif lim is None and index is None and block is None:
        print(
            "not a limiter key: gatekeep limiter keys look like "
            "gk:[app:]{key}[:rule]:tb:10/1000000 (algorithm tb, gcra, fw, sw or sl)",
            file=out,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "key",
        nargs="?",
        metavar="KEY",
        help="a limiter key, e.g. 'gk:myapp:{user:42}:tb:10/1000000', a "
        "middleware key ('gk:myapp:{ip:1.2.3.4}:login:tb:5/60000000'), "
        "or a session key",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("GATEKEEP_REDIS_URL"),
        help="the server (default: $GATEKEEP_REDIS_URL)",
    )
    parser.add_argument("--cluster", action="store_true", help="connect as a Cluster client")
    parser.add_argument(
        "--pattern", help="list keys matching this SCAN pattern instead, e.g. 'gk:myapp:*'"
    )
    parser.add_argument(
        "--limit", type=int, default=50, help="at most this many keys for --pattern (default 50)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--show-data",
        action="store_true",
        help="for a session key: show the session's data too (read-only)",
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    if not args.url:
        print(
            "inspect needs a server: --url redis://host:port/db (or GATEKEEP_REDIS_URL)", file=out
        )
        return 2
    if (args.key is None) == (args.pattern is None):
        print("give either a KEY or --pattern PATTERN", file=out)
        return 2
    try:
        target = connect(args.url, cluster=args.cluster)
    except (redis.RedisError, RedisClusterException, OSError, ValueError) as exc:
        print(f"cannot connect to {redact(args.url)}: {exc}", file=out)
        return 1
    try:
        if args.pattern is not None:
            return _list(target, args.pattern, max(1, args.limit), args.json, out)
        info = describe(
            target.client,
            args.key,
            show_value=True,
            show_data=bool(getattr(args, "show_data", False)),
        )
        if args.json:
            print(json.dumps(info, indent=2, ensure_ascii=False), file=out)
        else:
            _render(info, out)
        live = (info.get("session") or {}).get("state") == "live"
        index = info.get("session_index") is not None and info["exists"]
        found = info["limiter"] is not None or info.get("block") is not None
        leased = info.get("leases") is not None
        return 0 if found or live or index or leased else 1
    except (redis.RedisError, RedisClusterException) as exc:
        print(f"error reading {redact(args.url)}: {exc}", file=out)
        return 1
    finally:
        target.close()


def _list(target: Target, pattern: str, limit: int, as_json: bool, out: TextIO) -> int:
    """SCAN for ``pattern``: at most ``limit`` keys and :data:`MAX_SCAN_CALLS` calls."""
    keys = sorted(_scan(target.client, pattern, limit))
    infos = [describe(target.client, k, show_value=False) for k in keys]
    if as_json:
        print(
            json.dumps(
                {"pattern": pattern, "keys": infos, "truncated": len(keys) >= limit}, indent=2
            ),
            file=out,
        )
        return 0
    for info in infos:
        lim = info["limiter"]
        ttl = "-" if info["ttl_ms"] is None else f"{info['ttl_ms']} ms"
        what = (
            f"{lim['algorithm']} {lim['rate']}: {lim['remaining']}/{lim['limit']} left, "
            f"full in {lim['reset_after']:.3f} s"
            if lim
            else f"penalty block: {_block_text(info['block'])}"
            if info.get("block")
            else f"session, {info['session']['state']}"
            if info.get("session")
            else f"session index, {info['session_index']['sessions']} session(s)"
            if info.get("session_index")
            else f"concurrency limit, {info['leases']['held']} slot(s) held"
            if info.get("leases")
            else info["type"]
        )
        print(f"{info['key']}  ttl {ttl}  {what}", file=out)
    more = " (limit reached: there may be more)" if len(keys) >= limit else ""
    print(f"{len(keys)} key(s) matching {pattern!r}{more}", file=out)
    return 0


def _scan(client: Any, pattern: str, limit: int) -> set[str]:
    found: set[str] = set()
    if hasattr(client, "get_primaries"):  # Cluster: SCAN each primary
        clients = [n.redis_connection for n in client.get_primaries()]
    else:
        clients = [client]
    for cl in clients:
        cursor, calls = 0, 0
        while len(found) < limit and calls < MAX_SCAN_CALLS:
            cursor, batch = cl.scan(cursor, match=pattern, count=1000)
            found.update(_text(k) for k in itertools.islice(batch, limit - len(found)))
            calls += 1
            if cursor == 0:
                break
    return found

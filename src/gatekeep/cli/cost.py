"""What one decision and one session load cost the server the doctor examines.

Redis runs every script on one thread, so the server time of a decision says how many
decisions one shard can serve: at most ``0.9e6 / µs`` a second with its command thread
90 % busy (the doctor's CPU line). Measured on the deployment itself, without
reconfiguring it: no ``CONFIG SET``, no ``CONFIG RESETSTAT``. ``INFO commandstats`` is
read before and after a small batch of calls, and the delta of the script lines
(``cmdstat_evalsha`` and friends, whose usec include the commands a script runs)
divided by the delta of their calls. A batch whose calls delta is exactly its own
size had no other script running beside it, so its figure is exact; the least of
several batches is reported. When every batch shared the moment with other clients'
scripts, the figure is their average too, and the report says so.

The probes use their own keys (``gk:doctor:...``, TTLs of a minute at most), few calls
(:data:`BATCHES` x :data:`BATCH`), and delete them afterwards. A server that refuses
(a replica: ``READONLY``; an ACL without scripting or INFO: ``NOPERM``) gives a
"could not measure" line, never a traceback.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from ..backends.redis import RedisBackend
from ..errors import GatekeepError
from ..limiter import Limiter
from ..sessions.store import SessionStore
from .checks import OK, WARN, Check
from .connect import Target

__all__ = [
    "BATCH",
    "BATCHES",
    "ServerTime",
    "check_server_time",
    "measure_decision",
    "measure_session_load",
    "time_calls",
]

BATCHES, BATCH = 5, 20
#: The share of one core a shard's command thread should stay under.
BUSY = 0.9
#: Server µs per call past which a decision or a load is slow for a script this small.
SLOW_US = 100.0
_SCRIPT_LINES = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_evalsha_ro", "cmdstat_eval_ro")
_ERRORS = (redis.RedisError, RedisClusterException, OSError, GatekeepError)


@dataclass(frozen=True)
class ServerTime:
    """Server µs per call of one kind of script call, as measured."""

    what: str  # "decision" or "session load"
    usec: float | None = None
    #: Batches in which no other client ran a script (their figure is exact).
    alone: int = 0
    batches: int = 0
    error: str | None = None

    @property
    def per_second(self) -> float | None:
        """Calls a second one shard serves with its command thread ``BUSY``."""
        return BUSY * 1e6 / self.usec if self.usec else None


def script_stats(client: Any) -> tuple[int, int]:
    """Calls and usec of every script line of ``INFO commandstats``."""
    stats = client.info("commandstats")
    rows = [stats[line] for line in _SCRIPT_LINES if line in stats]
    return sum(int(r["calls"]) for r in rows), sum(int(r["usec"]) for r in rows)


def time_calls(
    what: str,
    node: Any,
    call: Callable[[], object],
    batches: int = BATCHES,
    size: int = BATCH,
) -> ServerTime:
    """``call()`` in ``batches`` batches of ``size``, each between two reads of
    ``node``'s commandstats (``node``: the server the calls reach)."""
    call()  # loads the script (EVALSHA, else EVAL) and opens the connection
    exact: list[float] = []
    shared: list[float] = []
    for _ in range(batches):
        calls0, usec0 = script_stats(node)
        for _ in range(size):
            call()
        calls1, usec1 = script_stats(node)
        calls, usec = calls1 - calls0, usec1 - usec0
        if calls < size:  # a reset by someone else in the middle: no figure
            continue
        (exact if calls == size else shared).append(usec / calls)
    best = min(exact or shared, default=None)
    return ServerTime(what, best, len(exact), batches)


def _node(target: Target, key: str) -> Any:
    """The server holding ``key``: on a Cluster, the shard of its slot."""
    if target.kind == "cluster":
        return target.client.get_node_from_key(key).redis_connection
    return target.client


def measure_decision(target: Target) -> ServerTime:
    """A token-bucket decision (the default algorithm) on a throwaway key."""
    limiter = Limiter(
        "1000/second", backend=RedisBackend(target.client), prefix="doctor", metrics=None
    )
    key = f"cost-{uuid.uuid4().hex[:12]}"
    try:
        node = _node(target, limiter.keys(key, limiter.plan(None))[0])
        return time_calls("decision", node, lambda: limiter.hit(key))
    except _ERRORS as exc:
        return ServerTime("decision", error=_why(exc))
    finally:
        with contextlib.suppress(*_ERRORS):  # else the key lives a few milliseconds
            limiter.reset(key)


def measure_session_load(target: Target) -> ServerTime:
    """The load of a small session (what every request with a session cookie runs)."""
    store = SessionStore(
        RedisBackend(target.client),
        prefix="doctor",
        idle_timeout=60,
        absolute_timeout=60,
        metrics=None,
    )
    session = None
    try:
        session = store.create({"user": "doctor", "cart": ["a", "b", "c"], "n": 1})
        sid = session.id
        if sid is None:  # a saved session has an id; anything else is a bug to report
            return ServerTime("session load", error="the new session has no id")
        node = _node(target, store.load_call(sid).keys[0])
        return time_calls("session load", node, lambda: store.load(sid))
    except _ERRORS as exc:
        return ServerTime("session load", error=_why(exc))
    finally:
        if session is not None:
            with contextlib.suppress(*_ERRORS):  # else it expires within a minute
                store.destroy(session)


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "READONLY" in text or "read only replica" in text:
        return f"the server is a read-only replica ({text})"
    if "NOPERM" in text or "no permissions" in text.lower():
        return f"this user may not run it ({text})"
    return text


def check_server_time(measured: ServerTime) -> Check:
    """The report line: server µs per call, and the calls a second a shard serves."""
    name = "decision cost" if measured.what == "decision" else "session cost"
    if measured.error is not None:
        return Check(name, WARN, f"could not measure: {measured.error}", None)
    if measured.usec is None or measured.per_second is None:
        return Check(name, WARN, "could not measure: the command statistics were reset", None)
    unit = "decisions" if measured.what == "decision" else f"{measured.what}s"
    if measured.alone:
        how = f"least of {measured.alone} batch(es) of {BATCH} with no other script running"
    else:
        how = (
            f"least of {measured.batches} batches of {BATCH}, each shared with other "
            "clients' scripts: their traffic in the same moment inflates this figure"
        )
    text = (
        f"{measured.usec:.1f} µs of server time per {measured.what} (INFO commandstats, {how}): "
        f"{measured.per_second:,.0f} {unit}/s per shard at {BUSY:.0%} CPU "
        "(command time only: an upper bound)"
    )
    value = {"usec": round(measured.usec, 2), "per_second": round(measured.per_second)}
    if measured.usec > SLOW_US:
        return Check(name, WARN, f"{text}; slow for a small script: a busy or slow CPU", value)
    return Check(name, OK, text, value)

"""``SessionStore``: server-side sessions in Redis (or in-process), sync and async.

Every operation is one Lua script (``lua/session_*.lua``) run in one round trip,
and has an in-process Python twin (:mod:`.twin`) with the same semantics.

Keys and Redis Cluster
----------------------
A session lives in one hash, ``gk:<app>:s:{<tag>}<rest>``, where the session id is
``<tag><rest>``: a 4-character tag drawn at random when the session is created,
then 43 characters (256 bits from :mod:`secrets`). The load, save and destroy
scripts touch that one key. Regenerating draws a new 256-bit ``<rest>`` but keeps
the tag, so the old and the new key share one hash slot and a single script can
move the data and remove the old id atomically; the tag is not secret and adds
nothing an attacker could use (the new id is 256 fresh bits).

A user's index is one sorted set, ``gk:<app>:u:{<user id>}``, of session ids
scored by their absolute expiry; ``session_index.lua`` touches only that key. A
session and its user's index are in different slots, so a save that changes the
user sends the two scripts pipelined (still one round trip), and listing checks
each entry against its session. Entries leave the index when their session
reaches its absolute expiry, the index key expires with its last entry, and a
user with more than ``max_sessions_per_user`` sessions loses the oldest ones
(they are destroyed: the index stays an exact handle for "log out everywhere").

Availability
------------
With Redis, every operation goes to the primary first. While no primary answers
(a failover under Sentinel), loads are served by a replica, read-only (the idle
deadline is extended by the next load or save on a primary), and writes raise
:class:`~gatekeep.errors.SessionWriteFailed`, which the middleware turns into a
503; see :mod:`._redis`. ``wait_replicas=1`` makes each write wait for a
replica's acknowledgement (``WAIT``), in the same round trip.

Concurrency
-----------
Saves write only the top-level keys a request changed, so parallel requests
changing different keys both persist. A save of a loaded session requires that
session to be alive with the creation time it was loaded with: once destroyed
(logout) or regenerated, an in-flight request's save is refused (``save``
returns False) instead of bringing the old id back.
"""

from __future__ import annotations

import copy
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..backends.failover import FailoverBackend
from ..backends.memory import MemoryBackend
from ..backends.redis import RedisBackend
from ..breaker import CircuitBreaker
from ..keys import ROOT, make_prefix, tag
from ..metrics import METRICS, Metrics, SessionCounters
from ._engine import Call, Executor, Flow, MemoryExecutor, adrive, drive
from ._redis import RedisExecutor
from .logs import log_id, logger
from .session import ADOPTED, GONE, LOADED, NEW, PENDING, UNAVAILABLE, Session, _datetime

__all__ = ["SessionMeta", "SessionStore", "UserSession", "is_session_id",
           "new_id", "split_key"]

_ID_RE = re.compile(r"[A-Za-z0-9_-]{47}\Z")
_KEY_RE = re.compile(r"(?P<prefix>" + re.escape(ROOT) + r"(?:[A-Za-z0-9_.:\-]*:)?)s:"
                     r"\{(?P<tag>[A-Za-z0-9_-]{4})\}(?P<rest>[A-Za-z0-9_-]{43})\Z")
DAY = 24 * 3600


def new_id(tag: str | None = None) -> str:
    """A session id: a 4-character slot tag (kept by ``regenerate``) + 256 random bits."""
    return (tag or secrets.token_urlsafe(3)) + secrets.token_urlsafe(32)


def is_session_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.match(value) is not None


def split_key(key: str) -> tuple[str, str] | None:
    """A session key back into ``(app prefix, session id)``; None when it is not one.

    >>> split_key("gk:shop:s:{abcd}" + "x" * 43)
    ('shop', 'abcdxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')
    """
    m = _KEY_RE.match(key)
    if m is None:
        return None
    return m["prefix"][len(ROOT):].rstrip(":"), m["tag"] + m["rest"]


def id_hash(session_id: str) -> str:
    """A short, stable, non-secret name for a session (to show in "your devices")."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SessionMeta:
    """What :meth:`SessionStore.meta` tells about a session: never its data."""

    id_hash: str
    created_at: datetime
    last_seen_at: datetime
    #: When it ends unless used again (idle or absolute expiry, the sooner).
    expires_at: datetime
    absolute_expires_at: datetime
    #: :func:`id_hash` of the user id, or None when no user is associated.
    user_id_hash: str | None
    #: Seconds until ``expires_at``, by the clock of the call (``now``, or this process's).
    ttl: float


@dataclass(frozen=True, slots=True)
class UserSession:
    """One entry of :meth:`SessionStore.sessions_of`."""

    id_hash: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    absolute_expires_at: datetime


def _us(now: float | None) -> int | None:
    return None if now is None else round(now * 1_000_000)


def _seconds(name: str, value: float) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return round(value * 1_000_000)


class SessionStore:
    """Sessions in Redis (pass a :class:`RedisBackend` or a URL) or in this process.

    With ``backend=None`` (or a :class:`MemoryBackend`, whose ``max_keys`` it takes)
    the Python twins of the scripts run in-process, on a key space of their own:
    for tests and single-process apps; past ``max_keys`` (100,000) keys, the least
    recently used sessions are dropped.

    >>> store = SessionStore(RedisBackend("redis://localhost:6379/0"), prefix="shop",
    ...                      idle_timeout=3600, absolute_timeout=7 * 86400)  # doctest: +SKIP
    >>> session = store.create({"cart": []}, user_id="42")                  # doctest: +SKIP
    >>> session = store.load(session.id)                                     # doctest: +SKIP
    >>> session["cart"].append("apple"); store.save(session)                 # doctest: +SKIP
    >>> store.destroy(session)                                               # doctest: +SKIP

    Every method has an ``a``-prefixed asyncio twin (``aload``, ``asave``, ...).
    ``now`` (seconds since the epoch) replaces the clock, for tests; by default
    the scripts read the Redis server's ``TIME``.

    - ``idle_timeout``: a session unused this long (seconds) expires;
    - ``absolute_timeout``: a session expires this long after it was created,
      however much it is used (must be >= ``idle_timeout``);
    - ``strict`` (default True): an id the store does not know is never adopted;
      False lets a middleware keep a validly signed id whose record is gone
      (destroyed ids stay refused: they leave a tombstone);
    - ``max_size``: bytes of JSON a session may hold: the write that would exceed it
      raises :class:`SessionTooLarge` (at ``session[k] = v``; at save time for growth
      by in-place changes of nested values);
    - ``max_sessions_per_user``: past it, the oldest sessions of that user are destroyed;
    - ``metrics``: where loads, hits, misses, saves, regenerations and destroys are
      counted (:data:`gatekeep.metrics.METRICS` by default; None: not counted);
    - ``wait_replicas`` (Redis): durable writes, each save waits (``WAIT``, in the same
      round trip) until that many replicas have it, at most ``wait_timeout`` seconds
      (default 0.1; at most half the backend's timeout); fewer acknowledgements raise
      :class:`~gatekeep.errors.SessionNotReplicated` (the write is on the primary);
    - ``breaker``: a :class:`~gatekeep.breaker.CircuitBreaker` (taken from a
      ``FailoverBackend`` passed as ``backend``): while open, loads go straight to a
      replica and writes fail at once.

    Passing a :class:`~gatekeep.backends.failover.FailoverBackend` shares its
    Redis and its circuit breaker with the limiters.
    """

    def __init__(
        self,
        backend: RedisBackend | FailoverBackend | MemoryBackend | str | None = None,
        *,
        prefix: str = "",
        idle_timeout: float = 14 * DAY,
        absolute_timeout: float = 30 * DAY,
        strict: bool = True,
        max_size: int = 64 * 1024,
        max_sessions_per_user: int = 100,
        metrics: Metrics | None = METRICS,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if isinstance(backend, str):
            backend = RedisBackend(backend)
        if isinstance(backend, FailoverBackend):
            if not isinstance(backend.primary, RedisBackend):
                raise TypeError("a FailoverBackend for sessions must wrap a RedisBackend")
            breaker = breaker or backend.breaker
            backend = backend.primary
        self.backend = backend
        if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int) \
                or wait_replicas < 0:
            raise ValueError(f"wait_replicas must be an int >= 0, got {wait_replicas!r}")
        _seconds("wait_timeout", wait_timeout)
        self.executor: Executor
        if wait_replicas and not isinstance(backend, RedisBackend):
            raise ValueError("wait_replicas needs Redis replicas: pass a RedisBackend")
        if backend is None:
            self.executor = MemoryExecutor()
        elif isinstance(backend, MemoryBackend):
            self.executor = MemoryExecutor(backend.store.max_keys)
        elif isinstance(backend, RedisBackend):
            if wait_replicas:
                _check_wait(backend, wait_timeout)
            self.executor = RedisExecutor(backend, breaker=breaker, wait_replicas=wait_replicas,
                                          wait_timeout=wait_timeout, metrics=metrics)
        else:
            raise TypeError("backend must be a RedisBackend, a FailoverBackend, a Redis URL, a "
                            f"MemoryBackend or None (in-process), not {type(backend).__name__}")
        self.metrics = metrics
        self._counters: SessionCounters | None = None if metrics is None else metrics.sessions
        self.prefix = make_prefix(prefix)
        if metrics is not None and isinstance(self.executor, RedisExecutor):
            metrics.watch(f"sessions:{self.prefix}", self.executor.watch_source())
        self.idle_us = _seconds("idle_timeout", idle_timeout)
        self.absolute_us = _seconds("absolute_timeout", absolute_timeout)
        if self.idle_us > self.absolute_us:
            raise ValueError(f"idle_timeout ({idle_timeout}) must not exceed absolute_timeout "
                             f"({absolute_timeout})")
        self.strict = bool(strict)
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be a positive int of bytes, got {max_size!r}")
        self.max_size = max_size
        if not isinstance(max_sessions_per_user, int) or max_sessions_per_user < 1:
            raise ValueError("max_sessions_per_user must be a positive int, "
                             f"got {max_sessions_per_user!r}")
        self.max_sessions_per_user = max_sessions_per_user
        #: How long a destroyed id stays refused: only a non-strict store needs it.
        self.tombstone_us = 0 if self.strict else self.absolute_us

    # -- keys --------------------------------------------------------------------------

    def key(self, session_id: str) -> str:
        return f"{self.prefix}s:{{{session_id[:4]}}}{session_id[4:]}"

    def user_key(self, user_id: str) -> str:
        return f"{self.prefix}u:{tag(user_id)}"

    def session_id(self, key: str) -> str | None:
        """The session id of one of this store's session keys (the inverse of :meth:`key`)."""
        parts = split_key(key)
        if parts is None or make_prefix(parts[0]) != self.prefix:
            return None
        return parts[1]

    # -- flows: every operation, once, without I/O -----------------------------------------

    def load_call(self, session_id: str, mode: str = "touch") -> Call:
        """The load script's call for ``session_id``: ``"touch"`` (the idle deadline
        moves; a replica answers without the touch), or read-only ``"peek"`` (the data)
        and ``"meta"`` (the metadata) that move nothing (``inspect`` uses these)."""
        keys = (self.key(session_id),)
        if mode == "touch":  # on a replica (the primary away): the same read, no touch
            return Call("session_load", keys, (self.idle_us, mode),
                        fallback=Call("session_load", keys, (self.idle_us, "peek"),
                                      read_only=True))
        return Call("session_load", keys, (self.idle_us, mode), read_only=True)

    def _destroy_call(self, session_id: str) -> Call:
        return Call("session_destroy", (self.key(session_id),), (self.idle_us, self.tombstone_us))

    def _index_call(self, user_id: str, *args: str | int) -> Call:
        return Call("session_index", (self.user_key(user_id),), args)

    def load_flow(self, session: Session, *, touch: bool = True) -> Flow[None]:
        """Fill a PENDING session (from :meth:`open`): loaded, adopted, or fresh;
        ``touch=False`` leaves its idle deadline where it is (a read-only script)."""
        if session.state != PENDING or session.id is None:
            return
        replies = yield [self.load_call(session.id, "touch" if touch else "peek")]
        reply = replies[0]
        counters = self._counters
        if counters is not None:
            counters.loads += 1
            if reply[0] == 1:
                counters.hits += 1
            else:
                counters.misses += 1
        if reply[0] == 1:
            session.fill(reply)
            session.from_replica = getattr(replies, "from_replica", False)
        elif reply[0] == 0 and not self.strict and session.signed_at_us is not None:
            session.reset(ADOPTED)
        else:
            session.reset(NEW)
            session.id = None

    def peek_flow(self, session_id: str) -> Flow[Session | None]:
        """Read a live session without moving its idle deadline (a read-only script:
        a replica may answer); None when there is none."""
        if not is_session_id(session_id):
            return None
        session = self.open(session_id)
        [reply] = yield [self.load_call(session_id, "peek")]
        if reply[0] != 1:
            return None
        session.fill(reply)
        return session

    def touch_flow(self, session_id: str) -> Flow[bool]:
        """Move a live session's idle deadline to now + the idle timeout (within its
        absolute lifetime); False when there is no such session."""
        [reply] = yield [self.load_call(session_id, "touch")]
        return bool(reply[0] == 1)

    def with_idle_timeout(self, seconds: float) -> SessionStore:
        """This store with another idle timeout, for sessions whose expiry differs
        from the default (Django's ``set_expiry``). The timeout is an argument of each
        script call, not part of the data, so the two share everything else: the
        backend, its connections, the in-process key space, the metrics."""
        idle_us = _seconds("idle_timeout", seconds)
        if idle_us == self.idle_us:
            return self
        variant = copy.copy(self)
        variant.idle_us = idle_us
        return variant

    def save_flow(self, session: Session) -> Flow[bool]:
        if session.state in (GONE, UNAVAILABLE, PENDING):
            return False
        changes = session.changes(self.max_size)  # raises SessionTooLarge past it
        if not changes and session.state == LOADED:
            return True
        for _attempt in range(3):
            sid, mode, created = session.id, "update", session.created_us or 0
            if session.state == NEW or sid is None:
                sid, mode, created = new_id(), "new", 0
            elif session.state == ADOPTED:
                mode, created = "adopt", session.signed_at_us or 0
            keys: tuple[str, ...] = (self.key(sid),)
            final = sid
            if changes.regenerate and mode != "new":
                final = new_id(sid[:4])
                keys = (keys[0], self.key(final))
            pairs = [x for kv in changes.set.items() for x in kv]
            calls = [Call("session_save", keys, (
                self.idle_us, self.absolute_us, mode, created, "1" if changes.clear else "0",
                changes.user, self.tombstone_us, len(changes.set), *pairs, *changes.delete))]
            old_user, user = session.saved_user_id, session.user_id
            moved = final != sid
            if mode != "new" and old_user is not None and old_user != user:
                calls.append(self._index_call(old_user, "remove", sid))
            add_at = None
            if user is not None and (changes.user or moved):
                add_at = len(calls)
                expiry = "" if session.absolute_expires_us is None else session.absolute_expires_us
                calls.append(self._index_call(
                    user, "add", self.max_sessions_per_user, final, expiry,
                    sid if moved and old_user == user else "", self.absolute_us))
            replies = yield calls
            status = replies[0][0]
            if status == -1:
                continue  # that id exists: draw another (never seen with 256-bit ids)
            if status == 0:
                session.reset(GONE)
                return False
            session.id = final
            session.mark_saved(changes, replies[0])
            counters = self._counters
            if counters is not None:
                counters.saves += 1
                if moved:
                    counters.regenerations += 1
            if add_at is not None and replies[add_at]:
                evicted = replies[add_at]
                done = yield [self._destroy_call(e) for e in evicted]
                self._count_destroyed(sum(1 for r in done if r[0] == 1))
                logger.debug("gatekeep sessions: %d session(s) of user %s destroyed "
                             "(max_sessions_per_user=%d)", len(evicted), log_id(user or ""),
                             self.max_sessions_per_user,
                             extra={"gatekeep_event": "session_evicted",
                                    "gatekeep_sessions": [log_id(e) for e in evicted]})
            return True
        raise RuntimeError("could not draw an unused session id in 3 attempts")

    def destroy_flow(self, session: Session | str, user_hint: str | None = None
                     ) -> Flow[bool]:
        """Destroy a session (by object or id); ``user_hint``, its user if known, lets the
        index update ride in the same round trip."""
        if isinstance(session, Session):
            sid = session.id if session.state in (LOADED, ADOPTED, PENDING) else None
            hint = session.saved_user_id
            session.reset(GONE)
        else:
            sid, hint = session, user_hint
        if sid is None or not is_session_id(sid):
            return False
        calls = [self._destroy_call(sid)]
        if hint:
            calls.append(self._index_call(hint, "remove", sid))
        replies = yield calls
        existed, user = replies[0]
        if existed == 1:
            self._count_destroyed(1)
        if user and user != hint:
            yield [self._index_call(user, "remove", sid)]
        return bool(existed == 1)

    def _count_destroyed(self, n: int) -> None:
        if self._counters is not None:
            self._counters.destroys += n

    def _exists_flow(self, session_id: str) -> Flow[bool]:
        if not is_session_id(session_id):
            return False
        [reply] = yield [self.load_call(session_id, "meta")]
        return bool(reply[0] == 1)

    def _sessions_flow(self, user_id: str) -> Flow[list[UserSession]]:
        [flat] = yield [self._index_call(str(user_id), "list")]
        ids = flat[::2]
        if not ids:
            return []
        replies = yield [self.load_call(sid, "meta") for sid in ids]
        out = []
        for sid, r in zip(ids, replies, strict=True):
            if r[0] == 1 and r[5] == str(user_id):
                out.append(UserSession(id_hash(sid), *(_datetime(int(t)) for t in r[1:5])))  # type: ignore[arg-type]
        return out

    def _destroy_all_flow(self, user_id: str) -> Flow[int]:
        [ids] = yield [self._index_call(str(user_id), "pop")]
        if not ids:
            return 0
        replies = yield [self._destroy_call(sid) for sid in ids]
        self._count_destroyed(sum(1 for r in replies if r[0] == 1))
        return sum(1 for r in replies if r[0] == 1 and r[1] == str(user_id))

    def _meta_flow(self, session_id: str, now: int | None) -> Flow[SessionMeta | None]:
        if not is_session_id(session_id):
            return None
        [r] = yield [self.load_call(session_id, "meta")]
        if r[0] != 1:
            return None
        created, seen, expires, absolute = (int(t) for t in r[1:5])
        at = time.time_ns() // 1000 if now is None else now
        when = [datetime.fromtimestamp(t / 1e6, timezone.utc)
                for t in (created, seen, expires, absolute)]
        return SessionMeta(id_hash(session_id), when[0], when[1], when[2], when[3],
                           id_hash(r[5]) if r[5] else None, max(0.0, (expires - at) / 1e6))

    def _destroy_one_flow(self, user_id: str, hash_: str) -> Flow[bool]:
        [flat] = yield [self._index_call(str(user_id), "list")]
        for sid in flat[::2]:
            if secrets.compare_digest(id_hash(sid), hash_):
                return (yield from self.destroy_flow(sid))
        return False

    def _load_flow(self, session_id: str) -> Flow[Session | None]:
        if not is_session_id(session_id):
            return None
        session = self.open(session_id)
        yield from self.load_flow(session)
        return session if session.state == LOADED else None

    # -- no I/O --------------------------------------------------------------------------

    def new(self, data: dict[str, Any] | None = None) -> Session:
        """A new, empty session; it gets an id when it is first saved."""
        return Session(data, max_size=self.max_size)

    def open(self, session_id: str, *, signed_at: float | None = None) -> Session:
        """A session for ``session_id``, loaded on first use (see :meth:`load_into`)."""
        session = Session(id=session_id, state=PENDING, max_size=self.max_size)
        session.signed_at_us = _us(signed_at)
        return session

    def run(self, flow: Flow[Any], now: float | None = None) -> Any:
        return drive(flow, self.executor, _us(now))

    async def arun(self, flow: Flow[Any], now: float | None = None) -> Any:
        return await adrive(flow, self.executor, _us(now))

    # -- sync API ------------------------------------------------------------------------

    def load(self, session_id: str, *, now: float | None = None) -> Session | None:
        """The session, its idle deadline moved forward; None when there is no such session."""
        return self.run(self._load_flow(session_id), now)  # type: ignore[no-any-return]

    def load_into(self, session: Session, *, now: float | None = None) -> None:
        """Fill a session from :meth:`open`."""
        self.run(self.load_flow(session), now)

    def exists(self, session_id: str, *, now: float | None = None) -> bool:
        """Whether the session is alive (does not move its idle deadline)."""
        return self.run(self._exists_flow(session_id), now)  # type: ignore[no-any-return]

    def meta(self, session_id: str, *, now: float | None = None) -> SessionMeta | None:
        """Created, last seen, expiry and TTL of a live session, never its data; read-only
        (the idle deadline does not move: EVALSHA_RO, served by a replica if need be)."""
        return self.run(self._meta_flow(session_id, _us(now)), now)  # type: ignore[no-any-return]

    def create(self, data: dict[str, Any] | None = None, *, user_id: str | None = None,
               now: float | None = None) -> Session:
        """A new session, saved."""
        session = self.new(data)
        if user_id is not None:
            session.set_user(user_id, regenerate=False)
        self.save(session, now=now)
        return session

    def save(self, session: Session, *, now: float | None = None) -> bool:
        """Write what changed; False when the session is gone (destroyed, regenerated
        elsewhere, expired). Raises ``TypeError`` (not JSON) or :class:`SessionTooLarge`."""
        return self.run(self.save_flow(session), now)  # type: ignore[no-any-return]

    def regenerate(self, session: Session, *, now: float | None = None) -> bool:
        """Move the session (and its pending changes) to a new id, now."""
        session.regenerate()
        return self.save(session, now=now)

    def destroy(self, session: Session | str, *, now: float | None = None) -> bool:
        """Delete the session; True when it existed."""
        return self.run(self.destroy_flow(session), now)  # type: ignore[no-any-return]

    def sessions_of(self, user_id: str, *, now: float | None = None) -> list[UserSession]:
        """The live sessions of ``user_id``, oldest first."""
        return self.run(self._sessions_flow(user_id), now)  # type: ignore[no-any-return]

    def destroy_user_session(self, user_id: str, id_hash: str, *, now: float | None = None
                             ) -> bool:
        """Log out one device: the session of ``user_id`` whose ``id_hash`` this is."""
        return self.run(self._destroy_one_flow(user_id, id_hash), now)  # type: ignore[no-any-return]

    def destroy_all(self, user_id: str, *, now: float | None = None) -> int:
        """Log ``user_id`` out everywhere; returns how many live sessions were destroyed."""
        return self.run(self._destroy_all_flow(user_id), now)  # type: ignore[no-any-return]

    # -- async API -----------------------------------------------------------------------

    async def aload(self, session_id: str, *, now: float | None = None) -> Session | None:
        return await self.arun(self._load_flow(session_id), now)  # type: ignore[no-any-return]

    async def aload_into(self, session: Session, *, now: float | None = None) -> None:
        await self.arun(self.load_flow(session), now)

    async def aexists(self, session_id: str, *, now: float | None = None) -> bool:
        return await self.arun(self._exists_flow(session_id), now)  # type: ignore[no-any-return]

    async def ameta(self, session_id: str, *, now: float | None = None) -> SessionMeta | None:
        return await self.arun(self._meta_flow(session_id, _us(now)), now)  # type: ignore[no-any-return]

    async def acreate(self, data: dict[str, Any] | None = None, *, user_id: str | None = None,
                      now: float | None = None) -> Session:
        session = self.new(data)
        if user_id is not None:
            session.set_user(user_id, regenerate=False)
        await self.asave(session, now=now)
        return session

    async def asave(self, session: Session, *, now: float | None = None) -> bool:
        return await self.arun(self.save_flow(session), now)  # type: ignore[no-any-return]

    async def aregenerate(self, session: Session, *, now: float | None = None) -> bool:
        session.regenerate()
        return await self.asave(session, now=now)

    async def adestroy(self, session: Session | str, *, now: float | None = None) -> bool:
        return await self.arun(self.destroy_flow(session), now)  # type: ignore[no-any-return]

    async def asessions_of(self, user_id: str, *, now: float | None = None
                           ) -> list[UserSession]:
        return await self.arun(self._sessions_flow(user_id), now)  # type: ignore[no-any-return]

    async def adestroy_user_session(self, user_id: str, id_hash: str, *,
                                    now: float | None = None) -> bool:
        return await self.arun(self._destroy_one_flow(user_id, id_hash), now)  # type: ignore[no-any-return]

    async def adestroy_all(self, user_id: str, *, now: float | None = None) -> int:
        return await self.arun(self._destroy_all_flow(user_id), now)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close the connections the async methods keep open between calls."""
        close = getattr(self.executor, "aclose", None)
        if close is not None:
            await close()

    def __repr__(self) -> str:
        return (f"SessionStore({self.backend!r}, prefix={self.prefix!r}, "
                f"idle_timeout={self.idle_us / 1e6:g}, "
                f"absolute_timeout={self.absolute_us / 1e6:g}, strict={self.strict})")


def _check_wait(backend: RedisBackend, wait_timeout: float) -> None:
    if backend.is_cluster:
        raise ValueError("wait_replicas is not supported with Redis Cluster clients")
    if backend.timeout is not None and wait_timeout > backend.timeout / 2:
        raise ValueError(f"wait_timeout ({wait_timeout} s) must be at most half the backend's "
                         f"timeout ({backend.timeout} s), or the reply to WAIT may time out")

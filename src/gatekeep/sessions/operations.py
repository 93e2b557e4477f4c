"""What a session store does, written once without I/O: keys, and every operation
as a flow (see :mod:`._engine`) that yields the script calls it needs.

:class:`~.store.SessionStore` runs these flows on its executor (Redis or the
in-process twins), with a sync and an async API over them; the middleware and the
Django engine run some of them themselves (``load_flow``, ``save_flow``, ...).
"""

from __future__ import annotations

import copy
import secrets
import time
from datetime import datetime, timezone
from typing import Any, TypeVar

from ..keys import make_prefix, tag
from ..metrics import Metrics, SessionCounters
from ._engine import Call, Flow
from ._loaded import loaded
from ._times import as_datetime
from .ids import SessionMeta, UserSession, id_hash, is_session_id, new_id, split_key
from .logs import log_id, logger
from .session import ADOPTED, GONE, LOADED, NEW, PENDING, UNAVAILABLE, Session

__all__ = ["SessionOperations"]

S = TypeVar("S", bound="SessionOperations")


class SessionOperations:
    """The configuration of a session store and its operations, without I/O.

    See :class:`~.store.SessionStore` for the parameters.
    """

    def __init__(
        self,
        *,
        prefix: str,
        idle_timeout: float,
        absolute_timeout: float,
        strict: bool,
        max_size: int,
        max_sessions_per_user: int,
        metrics: Metrics | None,
    ) -> None:
        self.metrics = metrics
        self._counters: SessionCounters | None = None if metrics is None else metrics.sessions
        self.prefix = make_prefix(prefix)
        self.idle_us = _seconds("idle_timeout", idle_timeout)
        self.absolute_us = _seconds("absolute_timeout", absolute_timeout)
        if self.idle_us > self.absolute_us:
            raise ValueError(
                f"idle_timeout ({idle_timeout}) must not exceed absolute_timeout "
                f"({absolute_timeout})"
            )
        self.strict = bool(strict)
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be a positive int of bytes, got {max_size!r}")
        self.max_size = max_size
        if not isinstance(max_sessions_per_user, int) or max_sessions_per_user < 1:
            raise ValueError(
                f"max_sessions_per_user must be a positive int, got {max_sessions_per_user!r}"
            )
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
        """The call that reads ``session_id``: ``"touch"`` (the load script: the idle
        deadline moves; a replica answers with the peek), or read-only ``"peek"`` (the
        peek script: the data) and ``"meta"`` (the load script: the metadata) that move
        nothing (``inspect`` uses these). :meth:`loaded` reads their replies."""
        keys = (self.key(session_id),)
        if mode == "touch":  # on a replica (the primary away): the same read, no touch
            return Call(
                "session_load",
                keys,
                (self.idle_us, mode),
                fallback=Call("session_peek", keys, (), read_only=True),
            )
        if mode == "peek":
            return Call("session_peek", keys, (), read_only=True)
        return Call("session_load", keys, (self.idle_us, mode), read_only=True)

    def loaded(self, reply: list[Any], mode: str = "touch") -> list[Any]:
        """A reply of :meth:`load_call` as ``[1, created, last_seen, expires_at,
        absolute_expires_at, user, key1, json1, ...]`` (µs), ``[0]`` (no such session)
        or ``[-1]`` (destroyed)."""
        return reply if mode == "meta" else loaded(reply, self.idle_us)

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
        reply = loaded(replies[0], self.idle_us)
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
        [raw] = yield [self.load_call(session_id, "peek")]
        reply = loaded(raw, self.idle_us)
        if reply[0] != 1:
            return None
        session.fill(reply)
        return session

    def touch_flow(self, session_id: str) -> Flow[bool]:
        """Move a live session's idle deadline to now + the idle timeout (within its
        absolute lifetime); False when there is no such session."""
        [raw] = yield [self.load_call(session_id, "touch")]
        return bool(loaded(raw, self.idle_us)[0] == 1)

    def with_idle_timeout(self: S, seconds: float) -> S:
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
            calls = [
                Call(
                    "session_save",
                    keys,
                    (
                        self.idle_us,
                        self.absolute_us,
                        mode,
                        created,
                        "1" if changes.clear else "0",
                        changes.user,
                        self.tombstone_us,
                        len(changes.set),
                        *pairs,
                        *changes.delete,
                    ),
                )
            ]
            old_user, user = session.saved_user_id, session.user_id
            moved = final != sid
            if mode != "new" and old_user is not None and old_user != user:
                calls.append(self._index_call(old_user, "remove", sid))
            add_at = None
            if user is not None and (changes.user or moved):
                add_at = len(calls)
                expiry = "" if session.absolute_expires_us is None else session.absolute_expires_us
                calls.append(
                    self._index_call(
                        user,
                        "add",
                        self.max_sessions_per_user,
                        final,
                        expiry,
                        sid if moved and old_user == user else "",
                        self.absolute_us,
                    )
                )
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
                logger.debug(
                    "gatekeep sessions: %d session(s) of user %s destroyed "
                    "(max_sessions_per_user=%d)",
                    len(evicted),
                    log_id(user or ""),
                    self.max_sessions_per_user,
                    extra={
                        "gatekeep_event": "session_evicted",
                        "gatekeep_sessions": [log_id(e) for e in evicted],
                    },
                )
            return True
        raise RuntimeError("could not draw an unused session id in 3 attempts")

    def destroy_flow(self, session: Session | str, user_hint: str | None = None) -> Flow[bool]:
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
                out.append(UserSession(id_hash(sid), *(as_datetime(int(t)) for t in r[1:5])))  # type: ignore[arg-type]
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
        when = [
            datetime.fromtimestamp(t / 1e6, timezone.utc)
            for t in (created, seen, expires, absolute)
        ]
        return SessionMeta(
            id_hash(session_id),
            when[0],
            when[1],
            when[2],
            when[3],
            id_hash(r[5]) if r[5] else None,
            max(0.0, (expires - at) / 1e6),
        )

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


def _us(now: float | None) -> int | None:
    return None if now is None else round(now * 1_000_000)


def _seconds(name: str, value: float) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return round(value * 1_000_000)

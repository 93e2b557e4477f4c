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
(a failover under Sentinel; on Cluster, the session's shard only), loads are served
by one of the shard's replicas, read-only (the idle
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

from collections.abc import Coroutine
from typing import Any, TypeVar

from ..backends.failover import FailoverBackend
from ..backends.memory import MemoryBackend
from ..backends.redis import RedisBackend
from ..breaker import CircuitBreaker
from ..metrics import METRICS, Metrics
from ..shards import ShardBreakers
from ._engine import Executor, Flow, MemoryExecutor, adrive, drive
from ._redis import RedisExecutor
from .ids import SessionMeta, UserSession, id_hash, is_session_id, new_id, split_key
from .operations import SessionOperations, _seconds, _us
from .session import Session

__all__ = [
    "DAY",
    "SessionMeta",
    "SessionStore",
    "UserSession",
    "id_hash",
    "is_session_id",
    "new_id",
    "split_key",
]

DAY = 24 * 3600
T = TypeVar("T")


class SessionStore(SessionOperations):
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
    - ``breaker``: a :class:`~gatekeep.breaker.CircuitBreaker`: while open, loads go
      straight to a replica and writes fail at once (on a cluster, each shard gets a
      breaker like it, and only the failing shard's sessions are affected).

    Passing a :class:`~gatekeep.backends.failover.FailoverBackend` shares its
    Redis and its circuit breakers (one per shard on a cluster) with the limiters.
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
        breakers: ShardBreakers | None = None
        if isinstance(backend, FailoverBackend):
            if not isinstance(backend.primary, RedisBackend):
                raise TypeError("a FailoverBackend for sessions must wrap a RedisBackend")
            breakers = None if breaker is not None else backend.breakers
            backend = backend.primary
        self.backend = backend
        if (
            isinstance(wait_replicas, bool)
            or not isinstance(wait_replicas, int)
            or wait_replicas < 0
        ):
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
            self.executor = RedisExecutor(
                backend,
                breaker=breaker,
                breakers=breakers,
                wait_replicas=wait_replicas,
                wait_timeout=wait_timeout,
                metrics=metrics,
            )
        else:
            raise TypeError(
                "backend must be a RedisBackend, a FailoverBackend, a Redis URL, a "
                f"MemoryBackend or None (in-process), not {type(backend).__name__}"
            )
        super().__init__(
            prefix=prefix,
            idle_timeout=idle_timeout,
            absolute_timeout=absolute_timeout,
            strict=strict,
            max_size=max_size,
            max_sessions_per_user=max_sessions_per_user,
            metrics=metrics,
        )
        if metrics is not None and isinstance(self.executor, RedisExecutor):
            metrics.watch(f"sessions:{self.prefix}", self.executor.watch_source())

    # -- running the flows ------------------------------------------------------------

    def run(self, flow: Flow[T], now: float | None = None) -> T:
        """Run one of the store's flows (``load_flow``, ``save_flow``, ...) to its end."""
        return drive(flow, self.executor, None if now is None else _us(now))

    def arun(self, flow: Flow[T], now: float | None = None) -> Coroutine[Any, Any, T]:
        """The same with asyncio: the coroutine to await."""
        return adrive(flow, self.executor, None if now is None else _us(now))

    # -- sync API ------------------------------------------------------------------------

    def load(self, session_id: str, *, now: float | None = None) -> Session | None:
        """The session, its idle deadline moved forward; None when there is no such session."""
        return self.run(self._load_flow(session_id), now)

    def load_into(self, session: Session, *, now: float | None = None) -> None:
        """Fill a session from :meth:`open`."""
        self.run(self.load_flow(session), now)

    def exists(self, session_id: str, *, now: float | None = None) -> bool:
        """Whether the session is alive (does not move its idle deadline)."""
        return self.run(self._exists_flow(session_id), now)

    def meta(self, session_id: str, *, now: float | None = None) -> SessionMeta | None:
        """Created, last seen, expiry and TTL of a live session, never its data; read-only
        (the idle deadline does not move: EVALSHA_RO, served by a replica if need be)."""
        return self.run(self._meta_flow(session_id, _us(now)), now)

    def create(
        self,
        data: dict[str, Any] | None = None,
        *,
        user_id: str | None = None,
        now: float | None = None,
    ) -> Session:
        """A new session, saved."""
        session = self.new(data)
        if user_id is not None:
            session.set_user(user_id, regenerate=False)
        self.save(session, now=now)
        return session

    def save(self, session: Session, *, now: float | None = None) -> bool:
        """Write what changed; False when the session is gone (destroyed, regenerated
        elsewhere, expired). Raises ``TypeError`` (not JSON) or :class:`SessionTooLarge`."""
        return self.run(self.save_flow(session), now)

    def regenerate(self, session: Session, *, now: float | None = None) -> bool:
        """Move the session (and its pending changes) to a new id, now."""
        session.regenerate()
        return self.save(session, now=now)

    def destroy(self, session: Session | str, *, now: float | None = None) -> bool:
        """Delete the session; True when it existed."""
        return self.run(self.destroy_flow(session), now)

    def sessions_of(self, user_id: str, *, now: float | None = None) -> list[UserSession]:
        """The live sessions of ``user_id``, oldest first."""
        return self.run(self._sessions_flow(user_id), now)

    def destroy_user_session(self, user_id: str, id_hash: str, *, now: float | None = None) -> bool:
        """Log out one device: the session of ``user_id`` whose ``id_hash`` this is."""
        return self.run(self._destroy_one_flow(user_id, id_hash), now)

    def destroy_all(self, user_id: str, *, now: float | None = None) -> int:
        """Log ``user_id`` out everywhere; returns how many live sessions were destroyed."""
        return self.run(self._destroy_all_flow(user_id), now)

    # -- async API -----------------------------------------------------------------------

    async def aload(self, session_id: str, *, now: float | None = None) -> Session | None:
        return await self.arun(self._load_flow(session_id), now)

    async def aload_into(self, session: Session, *, now: float | None = None) -> None:
        await self.arun(self.load_flow(session), now)

    async def aexists(self, session_id: str, *, now: float | None = None) -> bool:
        return await self.arun(self._exists_flow(session_id), now)

    async def ameta(self, session_id: str, *, now: float | None = None) -> SessionMeta | None:
        return await self.arun(self._meta_flow(session_id, _us(now)), now)

    async def acreate(
        self,
        data: dict[str, Any] | None = None,
        *,
        user_id: str | None = None,
        now: float | None = None,
    ) -> Session:
        session = self.new(data)
        if user_id is not None:
            session.set_user(user_id, regenerate=False)
        await self.asave(session, now=now)
        return session

    async def asave(self, session: Session, *, now: float | None = None) -> bool:
        return await self.arun(self.save_flow(session), now)

    async def aregenerate(self, session: Session, *, now: float | None = None) -> bool:
        session.regenerate()
        return await self.asave(session, now=now)

    async def adestroy(self, session: Session | str, *, now: float | None = None) -> bool:
        return await self.arun(self.destroy_flow(session), now)

    async def asessions_of(self, user_id: str, *, now: float | None = None) -> list[UserSession]:
        return await self.arun(self._sessions_flow(user_id), now)

    async def adestroy_user_session(
        self, user_id: str, id_hash: str, *, now: float | None = None
    ) -> bool:
        return await self.arun(self._destroy_one_flow(user_id, id_hash), now)

    async def adestroy_all(self, user_id: str, *, now: float | None = None) -> int:
        return await self.arun(self._destroy_all_flow(user_id), now)

    async def aclose(self) -> None:
        """Close the connections the async methods keep open between calls."""
        close = getattr(self.executor, "aclose", None)
        if close is not None:
            await close()

    def __repr__(self) -> str:
        return (
            f"SessionStore({self.backend!r}, prefix={self.prefix!r}, "
            f"idle_timeout={self.idle_us / 1e6:g}, "
            f"absolute_timeout={self.absolute_us / 1e6:g}, strict={self.strict})"
        )


def _check_wait(backend: RedisBackend, wait_timeout: float) -> None:
    if backend.is_cluster:
        raise ValueError("wait_replicas is not supported with Redis Cluster clients")
    if backend.timeout is not None and wait_timeout > backend.timeout / 2:
        raise ValueError(
            f"wait_timeout ({wait_timeout} s) must be at most half the backend's "
            f"timeout ({backend.timeout} s), or the reply to WAIT may time out"
        )

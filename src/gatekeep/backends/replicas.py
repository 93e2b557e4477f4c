"""Reads from a shard's replicas while its primary is away: every replica, in turn.

A session read whose shard's primary cannot answer (its breaker is open, or the call
just failed as an outage) goes as ``EVALSHA_RO`` to the shard's replicas, Sentinel
and Cluster alike:

- **which nodes**: on Sentinel, every replica ``discover_slaves`` lists (redis-py's
  ``slave_for`` would try the one its pool rotates to), then the primary the
  Sentinels name; on Cluster, the replicas of the key's slot in ``CLUSTER SLOTS``
  asked of a live node, then the slot's primary. The list is cached, and asked again
  when an attempt failed (at most once per ``REFRESH`` seconds), when it is older than
  ``MAX_AGE``, and within a read whose every node failed (then the nodes not tried
  yet in their new role are: a replica promoted meanwhile, as the primary). The
  replicas are taken in turn (the first one rotates per read); the named primary
  comes last: after a promotion it is the node with the data.
- **within the deadline**: the attempts together take at most ``deadline`` seconds
  (the breaker's); each gets an equal share of what is left for the nodes still to
  try, so one hung (SIGSTOPped) node cannot eat all of it.
- **skipped**: a node that did not answer (no connection, a timeout) within the last
  ``DOWN_FOR`` seconds is tried only when the others failed, or by one read per
  ``REFRESH`` seconds when all are known down ("known down": it may be back, rejoined
  as a replica, or its connections were killed by a Sentinel promoting it). A node's
  answer is not used when it is not a copy of the shard: ``ROLE``, sent in the same
  round trip, says ``master`` for a node listed as a replica (an old primary being
  demoted, maybe restarted empty, or a replica promoted before the list says so), a
  replica in state ``sync`` (a full resync: its data is being replaced), or ``slave``
  for the node named primary; or a reply is ``LOADING``, ``MASTERDOWN``, ``MOVED``/
  ``ASK``, ``TRYAGAIN``, ``CLUSTERDOWN`` (any "cannot serve now" reply,
  :mod:`gatekeep.outage`). Such a node answered quickly: it is tried again next read.

What ROLE cannot tell: a node restarted empty and already told to replicate, but not
yet syncing (state ``connect``/``connecting``/``handshake``), looks like a replica
whose primary died; ``replica-serve-stale-data no`` makes it answer ``MASTERDOWN``
(and every replica of a dead primary too).

This module is the sans-I/O core (:meth:`Replicas.flow`, one generator both drivers
step); the I/O and the drivers are in :mod:`._replica_io`. Counters: ``Replicas.counters``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from redis.crc import key_slot
from redis.exceptions import AskError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError

from ..errors import BackendUnavailable
from ..flows import nest
from ..outage import classify
from ._calls import Command, ScriptCall, Trip, answered, every_reply

__all__ = [
    "DOWN_FOR",
    "Ask",
    "AskSentinels",
    "Node",
    "Replicas",
    "ReplicasUnavailable",
    "Topology",
    "cluster_topology",
    "sentinel_topology",
]

#: Seconds a node that failed or refused is skipped.
DOWN_FOR = 1.0
#: Seconds between two refreshes of the topology after a failed attempt.
REFRESH = 0.1
#: Seconds a topology is used at most without being asked again.
MAX_AGE = 30.0

_ROLE = Command.of("ROLE")
_CLUSTER = Command.of("CLUSTER")


class ReplicasUnavailable(BackendUnavailable):
    """No replica of the shard could serve the read (each tried, skipped or refused)."""


@dataclass(frozen=True, slots=True)
class Node:
    """A data node by address; ``primary``: named as the shard's primary (a last resort)."""

    host: str
    port: int
    primary: bool = False

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


class Ask(NamedTuple):
    """I/O step: send ``trip`` to ``node``; fail with a timeout after ``timeout`` s.
    ``fresh``: on a new connection (the idle ones are closed first)."""

    node: Node
    trip: Trip
    timeout: float
    fresh: bool = False


class AskSentinels(NamedTuple):
    """I/O step: the Sentinels' ``(primary address or None, [replica addresses])``."""

    timeout: float


Step = Ask | AskSentinels
ReadFlow = Generator[Step, Any, list[Any]]


@dataclass(frozen=True, slots=True)
class Topology:
    """Who serves what: per slot range (Cluster), or one shard (Sentinel, ``ranges``
    empty): the replicas, then the primary."""

    nodes: tuple[Node, ...] = ()
    ranges: tuple[tuple[int, int, tuple[Node, ...]], ...] = ()

    def for_key(self, key: str) -> tuple[Node, ...]:
        if not self.ranges:
            return self.nodes
        slot = key_slot(key.encode())
        for start, end, nodes in self.ranges:
            if start <= slot <= end:
                return nodes
        return ()

    def all_nodes(self) -> list[Node]:
        seen = {n.name: n for _, _, nodes in self.ranges for n in nodes}
        return list(seen.values()) or list(self.nodes)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def cluster_topology(reply: Any) -> Topology:
    """A :class:`Topology` from a raw ``CLUSTER SLOTS`` reply (nodes without a known
    address left out)."""
    ranges = []
    for start, end, primary, *replicas in reply:
        nodes = [
            Node(_text(n[0]), int(n[1]), primary=(n is primary))
            for n in (*replicas, primary)
            if _text(n[0]) not in ("", "?")
        ]
        ranges.append((int(start), int(end), tuple(nodes)))
    return Topology(ranges=tuple(ranges))


def sentinel_topology(
    primary: Any, replicas: Sequence[Any], before: Topology | None = None
) -> Topology:
    """A :class:`Topology` from what the Sentinels say (addresses as ``(host, port)``);
    with the replicas of ``before`` after them (given while a failover is in progress:
    the Sentinels name no primary, or list no replica, not even the one being
    promoted)."""
    nodes = [Node(_text(h), int(p)) for h, p in replicas]
    if before is not None:
        nodes += [n for n in before.nodes if not n.primary and n not in nodes]
    if primary:
        nodes.append(Node(_text(primary[0]), int(primary[1]), primary=True))
    return Topology(nodes=tuple(nodes))


#: :func:`refusal`'s verdict on a listed replica that answers as a primary with data.
SPARE = "a primary, listed as a replica"


def refusal(node: Node, role: Any) -> str | None:
    """Why ``node``'s answer to ROLE rules its data out for this shard (None: it is
    usable; :data:`SPARE`: only if no replica serves). See the module doc."""
    if isinstance(role, BaseException):
        return f"ROLE failed: {role}"
    kind = _text(role[0]) if role else "?"
    if node.primary:
        return None if kind == "master" else f"named primary, but ROLE says {kind}"
    if kind == "master":
        # a replica promoted before the list says so has the shard's replication
        # offset; a primary restarted empty starts at 0
        offset = role[1] if len(role) > 1 else 0
        if isinstance(offset, int) and offset > 0:
            return SPARE
        return "listed as a replica, but ROLE says master, offset 0 (restarted empty?)"
    if kind not in ("slave", "replica"):
        return f"listed as a replica, but ROLE says {kind}"
    if len(role) > 3 and _text(role[3]) == "sync":
        return "a replica in full resync (its data is being replaced)"
    return None


def refused(replies: Sequence[Any]) -> str | None:
    """The first "cannot serve now" reply (LOADING, MASTERDOWN, MOVED...), or None."""
    for reply in replies:
        if isinstance(reply, RedisError):  # LOADING comes as a ConnectionError, not a reply error
            verdict = classify(reply)
            if isinstance(reply, AskError) or (verdict is not None and verdict.outage):
                return f"{type(reply).__name__}: {reply}"
    return None


class Replicas:
    """The replica choice of one deployment (``kind``: "sentinel" or "cluster"):
    the cached topology, the nodes known down, counters. No I/O (see :meth:`flow`)."""

    def __init__(self, kind: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.kind = kind
        self.clock = clock
        self.topology: Topology | None = None
        self._fetched_at = 0.0
        self._stale = False
        self._down: dict[str, float] = {}
        self._turn = itertools.count()
        self._probed = 0.0  # when a read last tried the nodes known down
        #: Reads served, per node; nodes skipped, by why; topology refreshes.
        self.counters: dict[str, Any] = {
            "served_by": {},
            "skipped_down": 0,
            "skipped_failed": 0,
            "skipped_refused": 0,
            "served_by_spare": 0,
            "refreshes": 0,
        }

    # -- the flow ---------------------------------------------------------------------

    def flow(
        self, key: str, calls: Sequence[ScriptCall], deadline: float, seeds: Sequence[Node] = ()
    ) -> ReadFlow:
        """Serve ``calls`` (read-only) from a node of ``key``'s shard within ``deadline``
        seconds: the replies. ``seeds``: nodes to ask the cluster's topology. When every
        node of a topology not asked during this read failed, it is asked again and the
        nodes not tried yet in their new role (a promoted replica: as the primary) are.
        Last, when the nodes tried in this read all failed: those known down (see
        :meth:`_order`)."""
        end = self.clock() + deadline
        tried: set[Node] = set()
        last: BaseException | None = None
        spare: tuple[Node, list[Any]] | None = None
        fresh = False
        for again in (False, True, None):
            if end - self.clock() <= 0 or (again and fresh):
                continue  # no time left; or the first pass's topology was asked for it
            if again is None:  # the last resort: the nodes known down (see _order)
                now = self.clock()
                if spare is not None or self.topology is None:
                    break
                if not tried and now - self._probed < REFRESH:
                    break  # every node known down: fail at once, but probe them now and then
                self._probed = now
                nodes = held = [n for n in self.topology.for_key(key) if n not in tried]
            else:
                topology, fresh = yield from self._topology(end, seeds, again)
                nodes = [n for n in self._order(topology.for_key(key)) if n not in tried]
                # the nodes known down keep their share, for the last resort
                held = [n for n in topology.for_key(key) if n not in tried and n not in nodes]
            for i, node in enumerate(nodes):
                left = end - self.clock()
                if left <= 0:
                    break
                tried.add(node)
                share = left / (len(nodes) - i + (0 if held is nodes else len(held)))
                try:
                    replies, why = yield from self._on(node, calls, share, end)
                except BaseException as exc:
                    if classify(exc) is None:  # not the store failing: a bug
                        raise
                    self._mark(node, "skipped_failed", down=True)
                    last = exc
                    continue
                if replies is None or why is not None:
                    self._mark(node, "skipped_refused", down=False)
                    last = ReplicasUnavailable(f"{node.name}: {why}")
                    if replies is not None and spare is None:
                        spare = (node, replies)
                    continue
                return self._served(node, replies)
        if spare is not None:
            self.counters["served_by_spare"] += 1
            return self._served(*spare)
        if tried:  # they were just tried: as good as a probe
            self._probed = self.clock()
        names = ", ".join(n.name for n in tried) or "none"
        err = ReplicasUnavailable(
            f"no replica of the shard answered within {deadline:.3f} s (tried: {names}; "
            f"last: {type(last).__name__ if last else 'none'}: {last})"
        )
        err.__cause__ = last
        raise err

    def _on(
        self, node: Node, calls: Sequence[ScriptCall], timeout: float, end: float
    ) -> Generator[Step, Any, tuple[list[Any] | None, str | None]]:
        """``(replies, why)``: the replies of ``node`` (ROLE first) and None, or None
        and why they are not used, or both (:data:`SPARE`)."""
        trip = Trip([(_ROLE, (), ()), *calls], True)
        started = self.clock()
        try:
            first = yield Ask(node, trip, timeout)
        except RedisConnectionError:
            # a connection the node closed (a Sentinel promoting it kills its clients'
            # connections): a read is safe to send again, on a new connection
            timeout -= self.clock() - started
            if timeout <= 0:
                raise
            first = yield Ask(node, trip, timeout, fresh=True)
        why = refusal(node, first[0])
        if why is not None and why is not SPARE:
            return None, why
        replies = yield from self._finish(node, Trip(calls, True), first[1:], end)
        bad = refused(replies)
        return (None, bad) if bad else (replies, why)

    def _served(self, node: Node, replies: list[Any]) -> list[Any]:
        self._down.pop(node.name, None)
        served = self.counters["served_by"]
        served[node.name] = served.get(node.name, 0) + 1
        return replies

    def _order(self, nodes: Sequence[Node]) -> list[Node]:
        """The nodes to try: not known down (those are a read's last resort: after the
        others failed, or, when all are, once per ``REFRESH`` seconds; one that serves is
        no longer down); the replicas in turn from a rotating start, the primary last."""
        now = self.clock()
        live = []
        for n in nodes:
            until = self._down.get(n.name)
            if until is not None and until > now:
                self.counters["skipped_down"] += 1
            else:
                live.append(n)
        replicas = [n for n in live if not n.primary]
        if len(replicas) > 1:
            k = next(self._turn) % len(replicas)
            replicas = replicas[k:] + replicas[:k]
        return replicas + [n for n in live if n.primary]

    def _mark(self, node: Node, why: str, *, down: bool) -> None:
        """An attempt failed (``down``: no answer, the node is skipped for a while) or
        was refused (the node answers: the topology may be what changed)."""
        self.counters[why] += 1
        if down:
            self._down[node.name] = self.clock() + DOWN_FOR
        self._stale = True

    def _finish(
        self, node: Node, trip: Trip, replies: list[Any], end: float
    ) -> Generator[Step, Any, list[Any]]:
        """The rest of the call on ``node`` (NOSCRIPT: the script again, as EVAL_RO)."""

        def on_node(again: Trip) -> Generator[Step, Any, list[Any]]:
            replies: list[Any] = yield Ask(node, again, max(end - self.clock(), 0.001))
            return replies

        return (yield from nest(answered(trip, replies, every_reply, node.name), on_node))

    # -- the topology -----------------------------------------------------------------------

    def _topology(
        self, end: float, seeds: Sequence[Node], force: bool
    ) -> Generator[Step, Any, tuple[Topology, bool]]:
        """The topology, and whether it was asked now: when there is none, when it is
        older than ``MAX_AGE`` or stale (an attempt failed) for ``REFRESH`` seconds, or
        ``force``."""
        now = self.clock()
        known = self.topology
        if known is not None and not force:
            age = now - self._fetched_at
            if age < MAX_AGE and not (self._stale and age >= REFRESH):
                return known, False
        self._fetched_at = now  # asked at most once per REFRESH, answered or not
        budget = (end - now) / 2
        try:
            if self.kind == "sentinel":
                primary, replicas = yield AskSentinels(budget)
                flux = not primary or not replicas  # a failover in progress
                found = sentinel_topology(primary, replicas, known if flux else None)
            else:
                found = yield from self._ask_cluster(seeds, now + budget)
        except BaseException as exc:
            if classify(exc) is None:
                raise
            if known is None:
                raise ReplicasUnavailable(f"the shard's replicas are unknown: {exc}") from exc
            return known, True
        self.topology = found
        self._stale = False
        self.counters["refreshes"] += 1
        return found, True

    def _ask_cluster(self, seeds: Sequence[Node], until: float) -> Generator[Step, Any, Topology]:
        """``CLUSTER SLOTS`` from the first live node that answers."""
        now = self.clock()
        known = self.topology.all_nodes() if self.topology is not None else []
        by_name = {n.name: Node(n.host, n.port) for n in (*seeds, *known)}
        nodes = [n for n in by_name.values() if self._down.get(n.name, 0.0) <= now]
        last: BaseException | None = None
        for i, node in enumerate(nodes):
            left = until - self.clock()
            if left <= 0:
                break
            try:
                (reply,) = yield Ask(
                    node, Trip([(_CLUSTER, (), ("SLOTS",))]), left / (len(nodes) - i)
                )
            except BaseException as exc:
                if classify(exc) is None:
                    raise
                self._mark(node, "skipped_failed", down=True)
                last = exc
                continue
            if isinstance(reply, BaseException):
                last = reply
                continue
            return cluster_topology(reply)
        raise ReplicasUnavailable(f"no cluster node answered CLUSTER SLOTS ({last})")

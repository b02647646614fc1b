"""Throwaway ``redis-server`` processes on free local ports (tests and benchmarks).

:class:`RedisServer` starts ``redis-server --port P --bind 127.0.0.1 --save ""
--appendonly no`` in a temporary directory, waits until it answers PING, and
stops it (``kill()``/``start()`` on the same port simulate a crash and a
restart). :class:`RedisCluster3` starts three cluster-enabled servers and joins
them with ``redis-cli --cluster create``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["RedisCluster3", "RedisServer", "free_port", "redis_server_binary"]


def redis_server_binary() -> str | None:
    """The path of ``redis-server``, or ``None`` when it is not installed."""
    return shutil.which("redis-server")


def free_port(also_free: int = 0) -> int:
    """A TCP port free on 127.0.0.1 (and ``port + also_free`` free too, when > 0)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if also_free:
            if port + also_free > 65535:
                continue
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s2:
                    s2.bind(("127.0.0.1", port + also_free))
            except OSError:
                continue
        return port
    raise OSError("no free port pair found")


def _ping(port: int, password: str | None, timeout: float = 0.2) -> bool:
    """PING over a raw socket (RESP): no client library needed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            if password is not None:
                s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password.encode()))
                if not s.recv(64).startswith(b"+OK"):
                    return False
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port`` (a free port by default)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        password: str | None = None,
        extra_args: tuple[str, ...] = (),
        binary: str | None = None,
    ) -> None:
        exe = binary or redis_server_binary()
        if exe is None:
            raise FileNotFoundError("redis-server is not installed (scripts/system-deps.sh)")
        self.binary = exe
        self.port = port if port is not None else free_port()
        self.password = password
        self.extra_args = extra_args
        self._dir = tempfile.mkdtemp(prefix="overdrive-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:port/0`` (with the password in it when set)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server (on the same port as before) and wait for PING."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += list(self.extra_args)
        log = open(Path(self._dir) / f"redis-{self.port}.log", "ab")  # noqa: SIM115
        with log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with code {self.proc.returncode} on port {self.port}: "
                    + self.log_tail()
                )
            if _ping(self.port, self.password):
                return self
            time.sleep(0.01)
        self.kill()
        raise TimeoutError(f"redis-server on port {self.port} did not answer PING in {timeout} s")

    def log_tail(self, n: int = 2000) -> str:
        """The end of the server's log file."""
        try:
            return (Path(self._dir) / f"redis-{self.port}.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the server (a crash) and wait until it is gone."""
        p = self.proc
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(10)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its socket but answers nothing (a hung Redis)."""
        if self.proc is not None:
            self.proc.send_signal(19)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.proc is not None:
            self.proc.send_signal(18)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory."""
        p = self.proc
        if p is not None and p.poll() is None:
            self.resume()
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisCluster3:
    """Three cluster-enabled ``redis-server`` masters joined into one cluster."""

    def __init__(self, binary: str | None = None) -> None:
        self.servers: list[RedisServer] = []
        self._binary = binary
        self._cli = shutil.which("redis-cli")
        if self._cli is None:
            raise FileNotFoundError("redis-cli is not installed (Debian package redis-tools)")

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:port`` of the first node (RedisTier's cluster URL)."""
        return f"redis+cluster://127.0.0.1:{self.servers[0].port}"

    @property
    def ports(self) -> list[int]:
        """The three nodes' ports."""
        return [s.port for s in self.servers]

    def start(self, timeout: float = 30.0) -> RedisCluster3:
        """Start the nodes, create the cluster, wait until every node says ``cluster_state:ok``."""
        for _ in range(3):
            port = free_port(also_free=10000)  # the cluster bus listens on port + 10000
            srv = RedisServer(
                port,
                binary=self._binary,
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "2000",
                ),
            )
            self.servers.append(srv.start())
        assert self._cli is not None
        subprocess.run(
            [self._cli, "--cluster", "create"]
            + [f"127.0.0.1:{p}" for p in self.ports]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._state_ok(p) for p in self.ports):
                return self
            time.sleep(0.05)
        raise TimeoutError("the redis cluster did not reach cluster_state:ok")

    def _state_ok(self, port: int) -> bool:
        assert self._cli is not None
        out = subprocess.run(
            [self._cli, "-p", str(port), "cluster", "info"],
            capture_output=True,
            timeout=5,
            check=False,
        ).stdout
        return b"cluster_state:ok" in out

    def stop(self) -> None:
        """Stop every node."""
        for s in self.servers:
            with contextlib.suppress(Exception):
                s.stop()
        self.servers = []

    def __enter__(self) -> RedisCluster3:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

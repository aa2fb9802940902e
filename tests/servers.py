"""Throwaway Redis and PostgreSQL servers for the test session, on free loopback ports.

The suite never uses the machine's own services: it starts its own in temp dirs, so tests
can stop, kill and restart them. A missing binary skips those tests with a reason, except
under ``CI=true``, where it fails them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def missing(what: str) -> None:
    """Skip for lack of a server binary on a laptop; fail under CI."""
    message = f"{what} is not installed (on Debian: apt-get install {what.split(maxsplit=1)[0]})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs it: {message}")
    pytest.skip(message)


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class RedisServer:
    """A ``redis-server`` of our own, loopback only: no persistence, or with ``durable`` an
    append-only file synced at every write, so that a restart keeps every job."""

    def __init__(self, root: Path, port: int | None = None, *, durable: bool = False) -> None:
        self.root = root
        self.port = port or free_port()
        self.durable = durable
        self.extra: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server")
        assert binary is not None
        aof = ["yes", "--appendfsync", "always"] if self.durable else ["no"]
        self.proc = subprocess.Popen(
            [
                binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", *aof, "--dir", str(self.root), "--protected-mode", "no",
                "--logfile", str(self.root / "redis.log"), *self.extra,
            ],
        )  # fmt: skip
        _wait_port(self.port)

    def stop(self, kill: bool = False) -> None:
        """Stop it (SIGKILL with ``kill``)."""
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port (all data is gone unless ``durable``)."""
        self.stop()
        self.start()


class RedisCluster:
    """A Redis Cluster of our own: ``nodes`` masters on free loopback ports, no replicas."""

    def __init__(self, root: Path, nodes: int = 3) -> None:
        self.servers = [RedisServer(root / f"node{i}") for i in range(nodes)]

    @property
    def url(self) -> str:
        """The URL of one node: the client discovers the others."""
        return self.servers[0].url

    def start(self) -> None:
        """Start the nodes, join them and wait until every slot is served."""
        cli = shutil.which("redis-cli")
        if cli is None or shutil.which("redis-server") is None:
            missing("redis-server (with redis-cli)")
        assert cli is not None
        for server in self.servers:
            server.root.mkdir(parents=True, exist_ok=True)
            # The bus port is given: the default (port + 10000) may be out of range.
            server.extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            server.extra += ["--cluster-port", str(free_port())]
            server.start()
        addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        for server in self.servers:
            info = [cli, "-p", str(server.port), "cluster", "info"]
            while (
                b"cluster_state:ok"
                not in subprocess.run(info, check=False, capture_output=True, timeout=10).stdout
            ):
                if time.monotonic() > deadline:
                    raise TimeoutError("the test Redis Cluster did not come up")
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop every node."""
        for server in self.servers:
            server.stop()


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PostgresServer:
    """A PostgreSQL cluster of our own, made with ``initdb`` in a temp dir, trust auth."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self._as_user: list[str] = []

    def url(self, database: str = "postgres") -> str:
        """A URL for ``database`` as the superuser ``postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self._as_user, *cmd], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """initdb (once) and start; waits until it accepts connections."""
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            missing("postgresql (initdb, pg_ctl)")
        assert initdb is not None
        assert pg_ctl is not None
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: run it as the packaged `postgres` user.
            shutil.chown(self.root, "postgres", "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        if not self.data.exists():
            self._run(initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._pg_ctl("start")

    def _pg_ctl(self, action: str) -> None:
        pg_ctl = _pg_bin("pg_ctl")
        assert pg_ctl is not None
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.root / "pg.log"),
            "-w", "-m", "fast", action,
        )  # fmt: skip

    def stop(self) -> None:
        """Stop it (fast shutdown: connections are closed)."""
        if self.data.exists():
            self._pg_ctl("stop")

    def restart(self) -> None:
        """Restart on the same port; data is kept."""
        self._pg_ctl("restart")


def temp_root(prefix: str) -> Path:
    """A temp dir any user can enter (PostgreSQL runs as another user under root)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root

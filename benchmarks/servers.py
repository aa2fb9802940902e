"""Throwaway redis-server and PostgreSQL on free loopback ports, in temp dirs.

Never the machine's own services: servers of our own, which a caller may stop, kill and
restart. The benchmark uses them as they are; the test suite through ``tests/servers.py``,
which turns a missing binary into a skip (a failure under ``CI=true``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


class ServerMissing(Exception):
    """A server binary is not installed; the message says which and how to install it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 30.0) -> None:
    """Wait until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _raise_missing(message: str) -> NoReturn:
    raise ServerMissing(message)


class RedisServer:
    """A ``redis-server`` of our own, loopback only: no persistence, or with ``durable`` an
    append-only file synced at every write, so that a restart keeps every job. ``extra``
    holds more command-line options. ``missing`` is called when the binary is not installed
    (by default it raises ServerMissing)."""

    missing: Callable[[str], NoReturn] = staticmethod(_raise_missing)

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
        """Start it and wait until it accepts connections.

        Raises:
            ServerMissing: redis-server is not installed.
        """
        binary = shutil.which("redis-server")
        if binary is None:
            self.missing("redis-server is not installed (on Debian: apt-get install redis-server)")
        aof = ["yes", "--appendfsync", "always"] if self.durable else ["no"]
        self.proc = subprocess.Popen(
            [
                binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", *aof, "--dir", str(self.root), "--protected-mode", "no",
                "--logfile", str(self.root / "redis.log"), *self.extra,
            ],
        )  # fmt: skip
        wait_port(self.port)

    @property
    def pids(self) -> list[int]:
        """Its process, for CPU accounting."""
        return [self.proc.pid] if self.proc is not None else []

    def command(self, *args: str) -> bytes:
        """Send one command (RESP) and return the raw reply: enough for FLUSHALL and INFO,
        with no Redis client installed."""
        payload = f"*{len(args)}\r\n".encode()
        for arg in args:
            data = arg.encode()
            payload += b"$%d\r\n%s\r\n" % (len(data), data)
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall(payload)
            reply = s.recv(1 << 20)
        if reply.startswith(b"-"):
            raise RuntimeError(f"redis {args[0]}: {reply.decode().strip()}")
        return reply

    def flush(self) -> None:
        """Empty every database."""
        self.command("FLUSHALL")

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


def pg_bin(name: str) -> str | None:
    """A PostgreSQL program: the newest packaged version's, else the one on PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PostgresServer:
    """A PostgreSQL cluster of our own, made with ``initdb`` in a temp dir, trust auth.

    Settings for a throwaway server: fsync, synchronous_commit and full_page_writes off.
    ``missing`` as for :class:`RedisServer`.
    """

    missing: Callable[[str], NoReturn] = staticmethod(_raise_missing)

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self._as_user: list[str] = []
        self._started = False

    def url(self, database: str = "postgres") -> str:
        """A URL for ``database`` as the superuser ``postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self._as_user, *cmd], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """initdb (once) and start; waits until it accepts connections.

        Raises:
            ServerMissing: PostgreSQL's initdb or pg_ctl is not installed.
        """
        initdb = pg_bin("initdb")
        if initdb is None or pg_bin("pg_ctl") is None:
            self.missing(
                "postgresql (initdb, pg_ctl) is not installed "
                "(on Debian: apt-get install postgresql)"
            )
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: run it as the packaged `postgres` user.
            shutil.chown(self.root, "postgres", "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        if not self.data.exists():
            self._run(initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._pg_ctl("start")
        self._started = True

    def _pg_ctl(self, action: str) -> None:
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl is not None
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.root / "pg.log"),
            "-w", "-m", "fast", action,
        )  # fmt: skip

    @property
    def pids(self) -> list[int]:
        """The postmaster (its backends descend from it), for CPU accounting."""
        try:
            return [int((self.data / "postmaster.pid").read_text().split()[0])]
        except (OSError, ValueError, IndexError):
            return []

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its URL."""
        psql = pg_bin("psql")
        if psql is None:
            self.missing("psql is not installed (on Debian: apt-get install postgresql)")
        for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
            subprocess.run(
                [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.url(), "-c", sql],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        return self.url(name)

    def stop(self) -> None:
        """Stop it (fast shutdown: connections are closed)."""
        if self._started:
            self._pg_ctl("stop")
            self._started = False

    def restart(self) -> None:
        """Restart on the same port; data is kept."""
        self._pg_ctl("restart")
        self._started = True

"""Throwaway Redis and PostgreSQL servers for the test session, on free loopback ports.

The suite never uses the machine's own services: it starts its own in temp dirs (the
servers of ``benchmarks/servers.py``), so tests can stop, kill and restart them. A missing
binary skips those tests with a reason, except under ``CI=true``, where it fails them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import pytest

from benchmarks import servers
from benchmarks.servers import free_port

__all__ = ["PostgresServer", "RedisCluster", "RedisServer", "free_port", "missing", "temp_root"]


def missing(message: str) -> NoReturn:
    """Skip for lack of a server binary on a laptop; fail under CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs it: {message}")
    pytest.skip(message)


class RedisServer(servers.RedisServer):
    """A redis-server of the test session's own (see :class:`benchmarks.servers.RedisServer`):
    without the binary, its tests skip (fail under CI)."""

    missing = staticmethod(missing)


class PostgresServer(servers.PostgresServer):
    """A PostgreSQL of the test session's own (see :class:`benchmarks.servers.PostgresServer`):
    without the binaries, its tests skip (fail under CI)."""

    missing = staticmethod(missing)


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
            missing(
                "redis-server (with redis-cli) is not installed "
                "(on Debian: apt-get install redis-server)"
            )
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


def temp_root(prefix: str) -> Path:
    """A temp dir any user can enter (PostgreSQL runs as another user under root)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root

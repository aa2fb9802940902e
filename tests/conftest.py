"""Session-wide fixtures: the throwaway servers of tests/servers.py, started on first use."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.servers import PostgresServer, RedisCluster, RedisServer, temp_root


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the session's own on a free loopback port."""
    root = temp_root("conveyor-redis-")
    server = RedisServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of the session's own on a free loopback port."""
    root = temp_root("conveyor-pg-")
    server = PostgresServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A three-node Redis Cluster of the session's own on free loopback ports."""
    root = temp_root("conveyor-redis-cluster-")
    cluster = RedisCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

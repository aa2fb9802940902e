"""Fixtures of the Redis tests: URLs with a fresh key prefix on the session's servers, and a
durable server of the test's own for the tests that restart it."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from conveyor.brokers import from_url
from conveyor.brokers.redis import RedisBroker
from tests.servers import RedisCluster, RedisServer, temp_root


def fresh(url: str) -> str:
    """``url`` with a key prefix of its own: an empty namespace."""
    return f"{url}?prefix=t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A fresh namespace on the session's redis-server."""
    return fresh(redis_server.url)


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster) -> str:
    """A fresh namespace on the session's Redis Cluster."""
    return fresh(redis_cluster.url)


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[RedisBroker]:
    """A connected broker on a fresh namespace of the single server."""
    b = from_url(redis_url)
    assert isinstance(b, RedisBroker)
    await b.connect()
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own that keeps its data across a restart (an
    append-only file synced at every write)."""
    root = temp_root("conveyor-redis-durable-")
    server = RedisServer(root, durable=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

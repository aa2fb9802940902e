"""The kinds of broker the suites run over, each as a factory of the URL of a fresh store.

A kind is a name and a factory of the URL of a fresh store. Adding a broker means adding a
kind whose factory starts (or finds) its server through ``request`` and calls
``pytest.skip`` with a reason when the server is unavailable; every test of the conformance
suite (tests/brokers/) and of the worker (tests/worker/) then runs on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import PostgresServer, RedisCluster, RedisServer


@dataclass(frozen=True)
class BrokerKind:
    """How to get a fresh store of one kind of broker."""

    url: Callable[[pytest.FixtureRequest, Path], str]
    """The URL of a new, empty store (may skip the test when the server is unavailable)."""
    shared: bool
    """Whether separate processes opening the URL share one store."""


def _memory_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://"


def _sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # An absolute path gives four slashes: sqlite:////tmp/.../t.db
    return "sqlite:///" + str(tmp_path / "t.db")


def _postgres_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # A fresh PostgreSQL schema per test in the session's server: the broker creates it.
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.url() + f"?schema=t_{uuid.uuid4().hex[:16]}"


def _redis_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # A fresh key prefix per test in the session's server: nothing to create or clean.
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url + f"?prefix=t{uuid.uuid4().hex[:12]}"


def _redis_cluster_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return cluster.url + f"?prefix=t{uuid.uuid4().hex[:12]}"


KINDS: dict[str, BrokerKind] = {
    "memory": BrokerKind(url=_memory_url, shared=False),
    "sqlite": BrokerKind(url=_sqlite_url, shared=True),
    "postgres": BrokerKind(url=_postgres_url, shared=True),
    "redis": BrokerKind(url=_redis_url, shared=True),
    "redis-cluster": BrokerKind(url=_redis_cluster_url, shared=True),
}
"""Every kind of broker, by the name tests are parametrized with."""

"""Fixtures of the web tests: one app per broker kind, each on a fresh, empty store."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import RedisServer
from tests.web.support import Tasks, serving


def _redis_url(request: pytest.FixtureRequest) -> str:
    if importlib.util.find_spec("conveyor.brokers.redis") is None:
        pytest.skip("the Redis broker (conveyor/brokers/redis.py) is not there yet")
    if importlib.util.find_spec("redis") is None:
        pytest.skip("the redis package is not installed: pip install 'conveyor[redis]'")
    server: RedisServer = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=web{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store, once in memory and once in SQLite."""
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'web.db'}"


@pytest.fixture(params=["memory", "sqlite", "redis"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of every broker kind the web tests run the whole flow on."""
    if request.param == "redis":
        return _redis_url(request)
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'web.db'}"


@pytest.fixture
def tasks(url: str) -> Iterator[Tasks]:
    """The test tasks on a fresh store; their switches are opened after the test."""
    t = Tasks(url)
    try:
        yield t
    finally:
        t.fixed.set()
        t.release.set()
        t.app.close()


@pytest.fixture
async def client(tasks: Tasks) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the web app of ``tasks``, served in-process without a token."""
    async with serving(tasks.app) as c:
        yield c

"""Fixtures of the worker tests: an app on a fresh store, once per kind of broker.

Every worker test runs on every broker of tests/kinds.py, so that a change to how the worker
claims, waits, beats or records cannot silently break one broker. The few tests that inject
faults by subclassing :class:`~conveyor.brokers.memory.MemoryBroker` take ``memory_app``
instead: they test the worker's own logic, which a fault-injecting broker isolates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import conveyor
from conveyor.brokers.base import Broker
from tests.kinds import KINDS
from tests.worker.support import store_of


@pytest.fixture(params=list(KINDS))
def app_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh store, once per kind of broker."""
    kind: str = request.param
    return KINDS[kind].url(request, tmp_path)


@pytest.fixture
async def app(app_url: str) -> AsyncIterator[conveyor.Conveyor]:
    """An app on a fresh store; its connections and portal thread are closed after the test."""
    app = conveyor.Conveyor(app_url)
    try:
        yield app
    finally:
        await app.close_async()


@pytest.fixture
async def memory_app() -> AsyncIterator[conveyor.Conveyor]:
    """An app on a fresh memory broker, for a test that swaps in a fault-injecting subclass
    of it (the worker's own logic, which needs no other broker)."""
    app = conveyor.Conveyor("memory://")
    try:
        yield app
    finally:
        await app.close_async()


@pytest.fixture
async def store(app: conveyor.Conveyor) -> AsyncIterator[Broker]:
    """The app's store, connected on the test's loop, for what a test does behind the
    worker's back (recover, claim as another worker, count)."""
    async with store_of(app) as broker:
        yield broker

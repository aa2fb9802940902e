"""One ``broker`` fixture per kind of broker (see tests/kinds.py), each on a fresh, empty store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor.brokers import Broker, from_url
from tests.kinds import KINDS


@pytest.fixture(params=list(KINDS))
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh store, once per kind of broker."""
    kind: str = request.param
    return KINDS[kind].url(request, tmp_path)


@pytest.fixture(params=[name for name, kind in KINDS.items() if kind.shared])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh store that separate processes share, once per such kind."""
    kind: str = request.param
    return KINDS[kind].url(request, tmp_path)


@pytest.fixture
async def broker(broker_url: str) -> AsyncIterator[Broker]:
    """A connected broker on a fresh store, closed after the test."""
    b = from_url(broker_url)
    await b.connect()
    try:
        yield b
    finally:
        await b.close()

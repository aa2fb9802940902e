"""Fixtures of the worker tests: a fresh in-memory app per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import conveyor


@pytest.fixture
def app() -> Iterator[conveyor.Conveyor]:
    """An app on a fresh memory broker; its portal thread is stopped after the test."""
    app = conveyor.Conveyor("memory://")
    try:
        yield app
    finally:
        app.close()

"""A SQLite file made by an earlier Conveyor is upgraded in place when first opened."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path

from conveyor.brokers.sql import queries
from conveyor.brokers.sqlite import SCHEMA_VERSION, SQLiteBroker
from conveyor.job import Status
from tests.brokers.support import claim_one, make_job, must_get


def _version_1(path: Path) -> None:
    """A file as schema version 1 left it: no ``losses`` column, one queued job."""
    schema = re.sub(r",\s*losses INTEGER[^\n]*", "", queries("sqlite")["schema"])
    assert "losses" not in schema
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(f"{schema}\nPRAGMA user_version = 1;")
    conn.execute(
        "INSERT INTO jobs VALUES ('0001', 'tests.noop', 'default', '[1]', '{}', 'queued', 0, 0,"
        " 1, 0, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0, NULL, 0)"
    )
    conn.close()


async def test_a_version_1_file_gains_the_losses_column(tmp_path: Path) -> None:
    """Opening a version 1 file adds ``losses`` (0 for the jobs already there) and sets the
    version; its jobs are read, claimed and lost as on a new file."""
    path = tmp_path / "old.db"
    _version_1(path)
    broker = SQLiteBroker(f"sqlite:///{path}")
    try:
        old = await must_get(broker, "0001")
        assert (old.args, old.losses, old.status) == ([1], 0, Status.QUEUED)
        [new] = await broker.enqueue([make_job()])
        assert (await must_get(broker, new.id)).losses == 0

        now = time.time()
        await claim_one(broker, "0001", now=now, lease=5)
        assert await broker.recover(now + 6) == ["0001"]
        assert (await must_get(broker, "0001")).losses == 1
    finally:
        await broker.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    finally:
        conn.close()
    # Opened again: already at the current version, nothing to do.
    again = SQLiteBroker(f"sqlite:///{path}")
    try:
        assert (await must_get(again, "0001")).losses == 1
    finally:
        await again.close()


async def test_brokers_opening_a_version_1_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    """Several connections upgrading one file at the same moment: the write lock runs them
    one after the other and the later ones find the column there (no duplicate column)."""
    path = tmp_path / "old.db"
    _version_1(path)
    brokers = [SQLiteBroker(f"sqlite:///{path}") for _ in range(4)]
    try:
        await asyncio.gather(*(b.connect() for b in brokers))
        for b in brokers:
            assert (await must_get(b, "0001")).losses == 0
    finally:
        await asyncio.gather(*(b.close() for b in brokers))

"""Opening a SQLite file that other processes are creating or switching to WAL."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor.brokers.sqlite import SQLiteBroker
from conveyor.errors import BrokerUnavailable
from tests.brokers.support import make_job


class _Flaky:
    """A connection whose first ``busy`` executions answer "locked" at once, as SQLite does
    while another connection switches a new file to WAL."""

    def __init__(self, conn: sqlite3.Connection, busy: int) -> None:
        self._conn = conn
        self._busy = busy

    def execute(self, sql: str, *args: Any) -> Any:
        if self._busy > 0 and sql.startswith("PRAGMA journal_mode"):
            self._busy -= 1
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorname = "SQLITE_BUSY"
            raise exc
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def flaky_connect(monkeypatch: pytest.MonkeyPatch, busy: int) -> list[int]:
    opened: list[int] = []
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        opened.append(1)
        return _Flaky(real(*args, **kwargs), busy - len(opened) + 1)

    monkeypatch.setattr("conveyor.brokers.sqlite.sqlite3.connect", connect)
    return opened


async def test_an_immediate_locked_answer_at_open_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = flaky_connect(monkeypatch, busy=3)
    broker = SQLiteBroker(f"sqlite:///{tmp_path / 'q.db'}")
    try:
        await broker.connect()
        (job,) = await broker.enqueue([make_job()])
        assert await broker.get(job.id) is not None
    finally:
        await broker.close()
    assert len(opened) == 4  # three answered "locked", the fourth opened


async def test_a_file_locked_past_the_busy_timeout_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky_connect(monkeypatch, busy=1_000_000)
    broker = SQLiteBroker(f"sqlite:///{tmp_path / 'q.db'}?busy_timeout=200")
    started = time.monotonic()
    try:
        with pytest.raises(BrokerUnavailable, match=r"stayed locked .* over 200 ms"):
            await broker.connect()
    finally:
        await broker.close()
    assert time.monotonic() - started < 5


OPEN_AND_ENQUEUE = """
import asyncio, sys
from conveyor.brokers.sqlite import SQLiteBroker
from tests.brokers.support import make_job

async def main():
    broker = SQLiteBroker(sys.argv[1])
    try:
        await broker.enqueue([make_job()])
    finally:
        await broker.close()

asyncio.run(main())
"""


def test_processes_creating_one_file_at_once_all_get_in(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_ENQUEUE, url], cwd=root, stderr=subprocess.PIPE
        )
        for _ in range(8)
    ]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [e for p, e in zip(procs, errors, strict=True) if p.returncode] == []
    with contextlib.closing(sqlite3.connect(tmp_path / "new.db")) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 8

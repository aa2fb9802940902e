"""Could ``memory://`` be the SQLite broker on an in-memory database? Measured, not guessed.

    PYTHONPATH=. .venv/bin/python benchmarks/memory_as_sqlite.py [--jobs 20000] [--batch 100]

Runs the same workloads through the memory broker and through the SQLite broker on a file on
disk, on a file in /dev/shm, and on a shared-cache in-memory database (``file:…?mode=memory&
cache=shared``, which the SQLite broker refuses by URL, so a subclass opens it here):

- drain: enqueue ``--jobs`` jobs in batches of ``--batch``, then claim and finish them in
  batches of ``--batch``;
- one by one: enqueue one job, claim it, finish it, ``--jobs // 10`` times (a user's test);
- two threads: each on its own event loop and broker ``copy()``, as a user's sync code (the
  portal thread) and a worker's loop share ``memory://``; each enqueues, claims and finishes
  ``--jobs // 10`` jobs one by one at the same time; errors are counted.

As a pytest plugin it makes ``memory://`` (the URL of the worker suite) the SQLite broker on a
fresh file in /dev/shm (``MEMORY_AS=shm``, the default) or on a shared-cache in-memory
database (``MEMORY_AS=shared``)::

    PYTHONPATH=. .venv/bin/python -m pytest -p benchmarks.memory_as_sqlite tests/worker

The findings and the decision are in docs/design-notes.md ("memory:// stays in memory").
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import functools
import itertools
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conveyor.brokers.base import Broker, Outcome  # noqa: E402
from conveyor.brokers.memory import MemoryBroker  # noqa: E402
from conveyor.brokers.sql import queries  # noqa: E402
from conveyor.brokers.sqlite import SQLiteBroker  # noqa: E402
from conveyor.job import JobRecord, Status, new_id  # noqa: E402

_names = itertools.count()


class InMemorySQLiteBroker(SQLiteBroker):
    """The SQLite broker on a named shared-cache in-memory database of this process.

    A keeper connection holds the database: SQLite drops an in-memory database with its last
    connection, and each broker object (and each ``copy()``) closes its own.
    """

    def __init__(self, url: str = "memory://", *, name: str | None = None) -> None:
        super().__init__("sqlite:///unused.db")
        self.url = url
        self.name = name or f"conveyor-bench-{next(_names)}"
        self.path = f"file:{self.name}?mode=memory&cache=shared"
        self.keeper = sqlite3.connect(self.path, uri=True, check_same_thread=False)

    def copy(self) -> Broker:
        """Another broker object on the same in-memory database."""
        return InMemorySQLiteBroker(self.url, name=self.name)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, uri=True, timeout=self._busy_timeout / 1000, isolation_level=None
        )
        # No WAL in memory; the schema script is idempotent (IF NOT EXISTS).
        conn.executescript(queries("sqlite")["schema"])
        return conn


class ShmSQLiteBroker(SQLiteBroker):
    """The SQLite broker on a fresh file in /dev/shm, whatever ``memory://`` URL it is given."""

    def __init__(self, url: str = "memory://", *, path: str | None = None) -> None:
        if path is None:
            path = tempfile.mkstemp(".db", "conveyor-memory-as-sqlite-", dir=_shm_folder())[1]
        super().__init__(f"sqlite:///{path}")
        self.url = url

    def copy(self) -> Broker:
        """Another broker object on the same file."""
        return ShmSQLiteBroker(self.url, path=self.path)


@functools.cache
def _shm_folder() -> str:
    folder = tempfile.mkdtemp(prefix="conveyor-memory-as-sqlite-", dir="/dev/shm")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def pytest_configure(config: object) -> None:
    """As a pytest plugin: ``memory://`` becomes one of the SQLite brokers above."""
    from conveyor import brokers

    kind = "InMemorySQLiteBroker" if os.environ.get("MEMORY_AS") == "shared" else "ShmSQLiteBroker"
    brokers._SCHEMES["memory"] = ("benchmarks.memory_as_sqlite", kind, None)


def _jobs(n: int) -> list[JobRecord]:
    now = time.time()
    return [JobRecord(id=new_id(), task="bench.noop", eta=now, created_at=now) for _ in range(n)]


def _succeeded(jobs: list[JobRecord]) -> list[Outcome]:
    now = time.time()
    return [
        Outcome(id=j.id, token=j.token, status=Status.SUCCEEDED, finished_at=now, result=b"null")
        for j in jobs
    ]


async def drain(broker: Broker, jobs: int, batch: int) -> tuple[float, float]:
    """Seconds to enqueue ``jobs`` in batches, then to claim and finish them all."""
    session = broker.consumer("bench", ["default"], 30.0)
    start = time.perf_counter()
    for _ in range(0, jobs, batch):
        await broker.enqueue(_jobs(batch))
    enqueued = time.perf_counter()
    done = 0
    while done < jobs:
        claimed = await session.claim(batch, time.time())
        assert claimed, "the queue ran dry early"
        assert await session.finish(_succeeded(claimed)) == []
        done += len(claimed)
    await session.close()
    return enqueued - start, time.perf_counter() - enqueued


async def one_by_one(broker: Broker, rounds: int) -> float:
    """Seconds per round of enqueue one, claim it, finish it."""
    session = broker.consumer("bench", ["default"], 30.0)
    start = time.perf_counter()
    for _ in range(rounds):
        await broker.enqueue(_jobs(1))
        claimed = await session.claim(1, time.time())
        assert await session.finish(_succeeded(claimed)) == []
    await session.close()
    return (time.perf_counter() - start) / rounds


def two_threads(broker: Broker, rounds: int) -> tuple[float, list[str]]:
    """Seconds for two threads, each with a loop and a broker copy of its own, to run
    ``rounds`` one-by-one rounds at once; and the errors they met."""
    errors: list[str] = []

    def run() -> None:
        async def rounds_on_a_copy() -> None:
            mine = broker.copy()
            await mine.connect()
            try:
                session = mine.consumer(f"bench-{threading.get_ident()}", ["default"], 30.0)
                for _ in range(rounds):
                    try:
                        await mine.enqueue(_jobs(1))
                        claimed = await session.claim(1, time.time())
                        await session.finish(_succeeded(claimed))
                    except Exception as exc:  # counted, not fatal: the point is how many
                        errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                await mine.close()

        asyncio.run(rounds_on_a_copy())

    threads = [threading.Thread(target=run) for _ in range(2)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, errors


@contextlib.contextmanager
def _backends(folder: Path) -> Iterator[list[tuple[str, Callable[[], Broker]]]]:
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as fast:
        made = itertools.count()
        yield [
            ("memory", MemoryBroker),
            ("sqlite file (disk)", lambda: SQLiteBroker(f"sqlite:///{folder}/d{next(made)}.db")),
            ("sqlite file (/dev/shm)", lambda: SQLiteBroker(f"sqlite:///{fast}/m{next(made)}.db")),
            ("sqlite :memory: shared", InMemorySQLiteBroker),
        ]


async def _measure(make: Callable[[], Broker], jobs: int, batch: int) -> tuple[float, float, float]:
    broker = make()
    await broker.connect()
    try:
        enqueue, claim_finish = await drain(broker, jobs, batch)
    finally:
        await broker.close()
    broker = make()
    await broker.connect()
    try:
        per_round = await one_by_one(broker, jobs // 10)
    finally:
        await broker.close()
    return enqueue, claim_finish, per_round


def main() -> None:
    """Print one line per backend."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} cpus"
    )
    print(
        f"{'backend':24} {'enqueue/s':>10} {'claim+finish/s':>15} {'one-by-one µs':>14} "
        f"{'2 threads s':>12} errors"
    )
    with tempfile.TemporaryDirectory() as disk, _backends(Path(disk)) as backends:
        for name, make in backends:
            enqueue, claim_finish, per_round = asyncio.run(_measure(make, args.jobs, args.batch))
            shared = make()
            seconds, errors = two_threads(shared, args.jobs // 10)
            kinds = sorted({e.split(":")[0] for e in errors})
            print(
                f"{name:24} {args.jobs / enqueue:>10,.0f} {args.jobs / claim_finish:>15,.0f} "
                f"{per_round * 1e6:>14,.0f} {seconds:>12.2f} {len(errors)} {' '.join(kinds)}"
            )
            if errors:
                print(f"{'':24} first: {errors[0][:110]}")


if __name__ == "__main__":
    main()

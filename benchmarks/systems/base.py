"""The interface every system module implements, and the recorder its tasks call.

Standard library only: peer modules import this in the benchmark's venv, where Conveyor is
not installed.

Completion is counted outside every library: each job, when it ends, appends one fixed-size
record (enqueued at, started at, finished at, pid) to the file ``$BENCH_RECORDS`` with a
single ``O_APPEND`` write, which Linux keeps whole under concurrent writers. The orchestrator
counts records by the file's size and reads the timestamps back, so no library's own status
is trusted and every system pays the same few microseconds per job for it.

The ``block`` task holds a worker slot until the orchestrator creates ``$BENCH_RECORDS.go``:
one per slot keeps the workers busy while a backlog is enqueued, so that a drain starts with
warm workers and a full queue, whether or not the library can enqueue in bulk. Blocked jobs
wait on an event (one watcher thread per process polls for the file), not in a busy loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from benchmarks.systems import procs

ROOT = Path(__file__).resolve().parent.parent.parent
RECORD = struct.Struct("<dddd")  # enqueued_at, started_at, finished_at, pid
TASKS = ("noop", "sleep", "block")  # drain and latency: noop; I/O: sleep; see block()
BLOCK_LIMIT = 300.0  # a blocked job gives up after this many seconds, whatever happens


@dataclass(frozen=True)
class Settings:
    """What a system needs to know, passed to its driver and workers as ``BENCH_*`` variables."""

    backend: str = "redis"
    redis_url: str = "redis://127.0.0.1:6379/0"
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    sqlite_path: str = "bench.db"
    records: str = "records.bin"
    log: str = "workers.log"
    concurrency: int = 50
    processes: int = 2
    sleep: float = 0.01

    @classmethod
    def from_env(cls) -> Settings:
        """Read the ``BENCH_*`` variables; missing ones take the defaults."""
        values: dict[str, str | int | float] = {}
        for f in fields(cls):
            raw = os.environ.get(f"BENCH_{f.name.upper()}")
            if raw is not None:
                kind = type(getattr(cls, f.name))
                values[f.name] = kind(raw)
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The ``BENCH_*`` variables that :meth:`from_env` reads back."""
        return {f"BENCH_{k.upper()}": str(v) for k, v in asdict(self).items()}


_fd: int | None = None
_fd_pid = 0


def record(enqueued_at: float, started_at: float) -> None:
    """Count one finished job: call it last in every benchmark task."""
    global _fd, _fd_pid
    pid = os.getpid()
    if _fd is None or _fd_pid != pid:  # a forked child opens its own descriptor
        _fd = os.open(os.environ["BENCH_RECORDS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fd_pid = pid
    os.write(_fd, RECORD.pack(enqueued_at, started_at, time.time(), float(pid)))


class _Gate:
    """Where ``block`` jobs wait for the go file: one watcher thread per process and batch."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.watcher: threading.Thread | None = None
        self.threads = threading.Event()
        self.tasks: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def join(self) -> threading.Event:
        """The event of the current batch; starts its watcher (call with the lock held)."""
        if self.pid != os.getpid():  # a forked child (RQ's work horse): no watcher runs here
            self.pid = os.getpid()
            self.watcher, self.threads, self.tasks = None, threading.Event(), []
        if self.watcher is None:
            self.watcher = threading.Thread(target=self._watch, daemon=True, name="bench-gate")
            self.watcher.start()
        return self.threads

    def _watch(self) -> None:
        go = os.environ["BENCH_RECORDS"] + ".go"
        deadline = time.monotonic() + BLOCK_LIMIT
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.001)
        with self.lock:
            threads, self.threads = self.threads, threading.Event()
            tasks, self.tasks = self.tasks, []
            self.watcher = None
        threads.set()
        for loop, event in tasks:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                loop.call_soon_threadsafe(event.set)


_gate = _Gate()


def _mark_blocked() -> None:
    fd = os.open(os.environ["BENCH_RECORDS"] + ".blocked", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"b")
    finally:
        os.close(fd)


def block() -> None:
    """Hold a worker slot until the go file exists (sync tasks)."""
    _mark_blocked()
    with _gate.lock:
        event = _gate.join()
    event.wait(BLOCK_LIMIT)


async def block_async() -> None:
    """Hold a worker slot until the go file exists (async tasks)."""
    _mark_blocked()
    event = asyncio.Event()
    with _gate.lock:
        _gate.join()
        _gate.tasks.append((asyncio.get_running_loop(), event))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), BLOCK_LIMIT)


def count_blocked(records: str | Path) -> int:
    """How many ``block`` jobs have started so far."""
    try:
        return os.stat(f"{records}.blocked").st_size
    except FileNotFoundError:
        return 0


def count_records(path: str | Path) -> int:
    """How many jobs have finished so far."""
    try:
        return os.stat(path).st_size // RECORD.size
    except FileNotFoundError:
        return 0


def read_records(path: str | Path, start: int) -> list[tuple[float, float, float, float]]:
    """The records from the ``start``-th on."""
    with open(path, "rb") as f:
        f.seek(start * RECORD.size)
        data = f.read()
    usable = len(data) - len(data) % RECORD.size
    return list(RECORD.iter_unpack(data[:usable]))


class System:
    """One task queue under test. Subclasses fill in the hooks; the driver calls them.

    ``start_workers`` runs :meth:`worker_commands` as separate processes (each in its own
    session, output to the log), ``stop_workers`` stops them. A system whose worker must run
    inside the driver (the memory broker) sets ``in_process`` and overrides both.
    """

    in_process = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._workers: list[subprocess.Popen[bytes]] = []

    # -- what a system module fills in -------------------------------------------------

    def version(self) -> str:
        """The library and version under test, e.g. ``celery 5.7.0``."""
        raise NotImplementedError

    def layout(self) -> str:
        """How its workers run, for the table, e.g. ``2 proc x 50 threads``."""
        raise NotImplementedError

    def worker_commands(self) -> list[list[str]]:
        """The commands that start its workers (run from the repository root)."""
        raise NotImplementedError

    def slots(self) -> int:
        """How many jobs its workers run at once, all processes together."""
        return self.settings.processes * self.settings.concurrency

    async def setup(self) -> None:
        """Connect the producer and create what the library needs (schema, groups)."""

    async def enqueue_many(self, task: str, args: list[float]) -> None:
        """Enqueue one ``task`` job per argument, in bulk where the library can."""
        raise NotImplementedError

    async def enqueue_one(self, task: str, arg: float) -> None:
        """Enqueue one ``task`` job, the way an application enqueues one."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the producer's connections."""

    # -- provided ------------------------------------------------------------------------

    def start_workers(self) -> list[int]:
        """Start the workers; returns the pids of the processes started."""
        with open(self.settings.log, "ab") as log:
            for command in self.worker_commands():
                log.write(f"$ {' '.join(command)}\n".encode())
                log.flush()
                self._workers.append(
                    subprocess.Popen(
                        command,
                        cwd=ROOT,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        return [p.pid for p in self._workers]

    def stop_workers(self, timeout: float = 15.0) -> None:
        """Stop the workers: SIGTERM, then SIGKILL for what is left after ``timeout``."""
        procs.terminate([p.pid for p in self._workers], timeout)
        for p in self._workers:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        self._workers.clear()


def python(*args: str) -> list[str]:
    """A command line running this venv's Python."""
    return [sys.executable, *args]

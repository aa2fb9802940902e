"""Conveyor under the benchmark, on the broker named by ``$BENCH_BACKEND``.

SQLite, Redis and PostgreSQL: ``conveyor worker --processes 2 --concurrency 50`` with async
tasks. Memory: the broker lives in one process, so the worker runs in a thread of the driver
(1 process x 50); the producer shares that process and its CPU time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import conveyor
from benchmarks.systems.base import Settings, System, block_async, python, record

SETTINGS = Settings.from_env()


def broker_url(settings: Settings) -> str:
    """Conveyor's URL for the benchmark's backend."""
    urls = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{settings.sqlite_path}",
        "redis": settings.redis_url,
        "postgres": settings.postgres_url,
    }
    return urls[settings.backend]


app = conveyor.Conveyor(broker_url(SETTINGS))


@app.task(name="bench.noop")
async def noop(enqueued_at: float) -> None:
    """Does nothing but count itself."""
    record(enqueued_at, time.time())


@app.task(name="bench.sleep")
async def sleep(enqueued_at: float) -> None:
    """Waits on I/O for 10 ms."""
    started = time.time()
    await asyncio.sleep(SETTINGS.sleep)
    record(enqueued_at, started)


@app.task(name="bench.block")
async def block(enqueued_at: float) -> None:
    """Holds a slot until the orchestrator lets go (see benchmarks/systems/base.py)."""
    await block_async()


TASKS: dict[str, conveyor.Task[[float], None]] = {"noop": noop, "sleep": sleep, "block": block}


class ConveyorQueue(System):
    """Conveyor's own worker command, or an in-process worker for the memory broker."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.in_process = settings.backend == "memory"
        self._thread: threading.Thread | None = None
        self._worker: conveyor.Worker | None = None

    def version(self) -> str:
        return f"conveyor {conveyor.__version__} ({self.settings.backend})"

    def layout(self) -> str:
        s = self.settings
        if self.in_process:
            return f"1 proc x {s.concurrency} async (in-process)"
        return f"{s.processes} proc x {s.concurrency} async"

    def slots(self) -> int:
        s = self.settings
        return s.concurrency if self.in_process else s.processes * s.concurrency

    def worker_commands(self) -> list[list[str]]:
        s = self.settings
        return [
            python(
                "-m", "conveyor", "--log-level", "WARNING", "worker",
                "benchmarks.systems.conveyor_queue:app", "--processes", str(s.processes),
                "--concurrency", str(s.concurrency),
            )
        ]  # fmt: skip

    async def enqueue_many(self, task: str, args: list[float]) -> None:
        await TASKS[task].enqueue_many_async([conveyor.Call(a) for a in args])

    async def enqueue_one(self, task: str, arg: float) -> None:
        await TASKS[task].enqueue_async(arg)

    async def close(self) -> None:
        await app.close_async()

    # -- the memory broker: a worker thread inside this process ---------------------------

    def start_workers(self) -> list[int]:
        if not self.in_process:
            return super().start_workers()
        worker = conveyor.Worker(app, concurrency=self.settings.concurrency)
        self._worker = worker
        self._thread = threading.Thread(target=_run, args=(worker,), name="bench-worker")
        self._thread.start()
        return []

    def stop_workers(self, timeout: float = 15.0) -> None:
        if not self.in_process:
            super().stop_workers(timeout)
        elif self._worker is not None and self._thread is not None:
            self._worker.stop()
            self._thread.join(timeout=60)
            self._worker = self._thread = None


def _run(worker: conveyor.Worker) -> None:
    """Run a worker on a fresh event loop, uvloop when installed (as ``conveyor worker`` does)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(worker.run())
        return
    runner: Any = uvloop.run
    runner(worker.run())


SYSTEM = ConveyorQueue

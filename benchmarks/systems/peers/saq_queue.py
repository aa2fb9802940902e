"""SAQ on Redis: ``saq --workers 2`` with ``concurrency = 50``."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version
from typing import Any

from saq import Queue

from benchmarks.systems.base import Settings, System, block_async, python, record

SETTINGS = Settings.from_env()

queue = Queue.from_url(SETTINGS.redis_url, name="bench")


async def noop(ctx: dict[str, Any], *, enqueued_at: float) -> None:
    record(enqueued_at, time.time())


async def sleep(ctx: dict[str, Any], *, enqueued_at: float) -> None:
    started = time.time()
    await asyncio.sleep(SETTINGS.sleep)
    record(enqueued_at, started)


async def block(ctx: dict[str, Any], *, enqueued_at: float) -> None:
    await block_async()


settings = {
    "queue": queue,
    "functions": [noop, sleep, block],
    "concurrency": SETTINGS.concurrency,
}


class SaqQueue(System):
    def version(self) -> str:
        return f"saq {version('saq')}"

    def layout(self) -> str:
        return f"{self.settings.processes} proc x {self.settings.concurrency} async"

    def worker_commands(self) -> list[list[str]]:
        return [
            python(
                "-m", "saq", f"{__name__}.settings",
                "--workers", str(self.settings.processes), "--quiet",
            )
        ]  # fmt: skip

    async def setup(self) -> None:
        await queue.connect()

    async def enqueue_many(self, task: str, args: list[float]) -> None:
        # SAQ's map() also waits for results: enqueue one by one. Its jobs time out after 10 s
        # by default; the blocking jobs must outlast the enqueue of the backlog.
        options = {"timeout": 0} if task == "block" else {}
        for arg in args:
            await queue.enqueue(task, enqueued_at=arg, **options)

    async def enqueue_one(self, task: str, arg: float) -> None:
        await queue.enqueue(task, enqueued_at=arg)

    async def close(self) -> None:
        await queue.disconnect()


SYSTEM = SaqQueue

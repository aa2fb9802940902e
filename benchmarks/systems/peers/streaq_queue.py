"""streaQ on Redis: 2 worker processes, ``concurrency=50``.

``streaq run`` configures logging at INFO and logs two lines per task; every library here runs
at WARNING, so the workers are started by ``python -m`` this module, which does what
``streaq run`` does (``worker.run_sync()``) with logging at WARNING.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib.metadata import version

from streaq import Worker

from benchmarks.systems.base import Settings, System, block_async, python, record

SETTINGS = Settings.from_env()

worker = Worker(redis_url=SETTINGS.redis_url, concurrency=SETTINGS.concurrency, queue_name="bench")


@worker.task(name="noop")
async def noop(enqueued_at: float) -> None:
    record(enqueued_at, time.time())


@worker.task(name="sleep")
async def sleep(enqueued_at: float) -> None:
    started = time.time()
    await asyncio.sleep(SETTINGS.sleep)
    record(enqueued_at, started)


@worker.task(name="block")
async def block(enqueued_at: float) -> None:
    await block_async()


TASKS = {"noop": noop, "sleep": sleep, "block": block}


class StreaqQueue(System):
    def version(self) -> str:
        return f"streaq {version('streaq')}"

    def layout(self) -> str:
        return f"{self.settings.processes} proc x {self.settings.concurrency} async"

    def worker_commands(self) -> list[list[str]]:
        return [python("-m", __name__) for _ in range(self.settings.processes)]

    async def setup(self) -> None:
        await worker.__aenter__()

    async def enqueue_many(self, task: str, args: list[float]) -> None:
        fn = TASKS[task]
        for i in range(0, len(args), 1000):  # enqueue_many: one pipeline per 1,000
            await worker.enqueue_many([fn.enqueue(a) for a in args[i : i + 1000]])

    async def enqueue_one(self, task: str, arg: float) -> None:
        await TASKS[task].enqueue(arg)

    async def close(self) -> None:
        await worker.__aexit__(None, None, None)


SYSTEM = StreaqQueue

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    worker.run_sync()

"""taskiq with taskiq-redis's ``RedisStreamBroker`` (a consumer group with acknowledgements,
the broker taskiq-redis recommends for reliable delivery): ``taskiq worker --workers 2
--max-async-tasks 50``."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version

from taskiq_redis import RedisStreamBroker

from benchmarks.systems.base import Settings, System, block_async, python, record

SETTINGS = Settings.from_env()

broker = RedisStreamBroker(url=SETTINGS.redis_url, queue_name="bench")


@broker.task(task_name="bench.noop")
async def noop(enqueued_at: float) -> None:
    record(enqueued_at, time.time())


@broker.task(task_name="bench.sleep")
async def sleep(enqueued_at: float) -> None:
    started = time.time()
    await asyncio.sleep(SETTINGS.sleep)
    record(enqueued_at, started)


@broker.task(task_name="bench.block")
async def block(enqueued_at: float) -> None:
    await block_async()


TASKS = {"noop": noop, "sleep": sleep, "block": block}


class TaskiqQueue(System):
    def version(self) -> str:
        return f"taskiq {version('taskiq')} + taskiq-redis {version('taskiq-redis')}"

    def layout(self) -> str:
        return f"{self.settings.processes} proc x {self.settings.concurrency} async"

    def worker_commands(self) -> list[list[str]]:
        return [
            python(
                "-m", "taskiq", "worker", f"{__name__}:broker",
                "--workers", str(self.settings.processes),
                "--max-async-tasks", str(self.settings.concurrency),
                "--log-level", "WARNING",
            )
        ]  # fmt: skip

    async def setup(self) -> None:
        await broker.startup()

    async def enqueue_many(self, task: str, args: list[float]) -> None:
        for arg in args:  # no bulk enqueue in taskiq
            await TASKS[task].kiq(arg)

    async def enqueue_one(self, task: str, arg: float) -> None:
        await TASKS[task].kiq(arg)

    async def close(self) -> None:
        await broker.shutdown()


SYSTEM = TaskiqQueue

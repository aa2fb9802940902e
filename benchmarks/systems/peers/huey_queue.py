"""Huey on Redis (``RedisHuey``, blocking dequeue): 2 ``huey_consumer`` processes, each with
50 worker threads (``-k thread -w 50``)."""

from __future__ import annotations

import time
from importlib.metadata import version

from huey import RedisHuey

from benchmarks.systems.base import Settings, System, block, python, record

SETTINGS = Settings.from_env()

huey = RedisHuey("bench", url=SETTINGS.redis_url)


@huey.task(name="noop")
def noop(enqueued_at: float) -> None:
    record(enqueued_at, time.time())


@huey.task(name="sleep")
def sleep(enqueued_at: float) -> None:
    started = time.time()
    time.sleep(SETTINGS.sleep)
    record(enqueued_at, started)


@huey.task(name="block")
def block_task(enqueued_at: float) -> None:
    block()


TASKS = {"noop": noop, "sleep": sleep, "block": block_task}


class HueyQueue(System):
    def version(self) -> str:
        return f"huey {version('huey')}"

    def layout(self) -> str:
        return f"{self.settings.processes} proc x {self.settings.concurrency} threads"

    def worker_commands(self) -> list[list[str]]:
        return [
            python(
                "-m", "huey.bin.huey_consumer", f"{__name__}.huey",
                "-k", "thread", "-w", str(self.settings.concurrency), "-q",
            )
            for _ in range(self.settings.processes)
        ]  # fmt: skip

    async def enqueue_many(self, task: str, args: list[float]) -> None:
        for arg in args:  # no bulk enqueue in Huey
            TASKS[task](arg)

    async def enqueue_one(self, task: str, arg: float) -> None:
        TASKS[task](arg)


SYSTEM = HueyQueue

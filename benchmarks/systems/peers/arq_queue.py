"""arq on Redis: 2 ``arq`` worker processes, ``max_jobs = 50``, default settings otherwise
(arq's worker polls the queue every ``poll_delay`` = 0.5 s when idle)."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from benchmarks.systems.base import Settings, System, block_async, python, record

SETTINGS = Settings.from_env()
QUEUE = "bench"

# arq logs every job at INFO; the benchmark runs every library at WARNING.
LOG_CONFIG = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


async def noop(ctx: dict[str, Any], enqueued_at: float) -> None:
    record(enqueued_at, time.time())


async def sleep(ctx: dict[str, Any], enqueued_at: float) -> None:
    started = time.time()
    await asyncio.sleep(SETTINGS.sleep)
    record(enqueued_at, started)


async def block(ctx: dict[str, Any], enqueued_at: float) -> None:
    await block_async()


class WorkerSettings:
    functions = [noop, sleep, block]
    redis_settings = RedisSettings.from_dsn(SETTINGS.redis_url)
    queue_name = QUEUE
    max_jobs = SETTINGS.concurrency


class ArqQueue(System):
    pool: ArqRedis

    def version(self) -> str:
        return f"arq {version('arq')}"

    def layout(self) -> str:
        return f"{self.settings.processes} proc x {self.settings.concurrency} async"

    def worker_commands(self) -> list[list[str]]:
        return [
            python(
                "-m", "arq", f"{__name__}.WorkerSettings",
                "--custom-log-dict", f"{__name__}.LOG_CONFIG",
            )
            for _ in range(self.settings.processes)
        ]  # fmt: skip

    async def setup(self) -> None:
        self.pool = await create_pool(WorkerSettings.redis_settings, default_queue_name=QUEUE)

    async def enqueue_many(self, task: str, args: list[float]) -> None:
        for arg in args:  # no bulk enqueue in arq
            await self.pool.enqueue_job(task, arg)

    async def enqueue_one(self, task: str, arg: float) -> None:
        await self.pool.enqueue_job(task, arg)

    async def close(self) -> None:
        await self.pool.aclose()


SYSTEM = ArqQueue

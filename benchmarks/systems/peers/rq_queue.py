"""RQ on Redis: 2 ``rq worker`` processes. RQ runs one job at a time per worker, in a forked
child (its default ``Worker``), so there is no "50 per process": the nearest equivalent is 2
workers x 1, and the I/O workload shows it."""

from __future__ import annotations

import time
from importlib.metadata import version

from redis import Redis
from rq import Queue

from benchmarks.systems.base import Settings, System, block, python, record

SETTINGS = Settings.from_env()
QUEUE = "bench"


def noop(enqueued_at: float) -> None:
    record(enqueued_at, time.time())


def sleep(enqueued_at: float) -> None:
    started = time.time()
    time.sleep(SETTINGS.sleep)
    record(enqueued_at, started)


def block_task(enqueued_at: float) -> None:
    block()


TASKS = {"noop": noop, "sleep": sleep, "block": block_task}


class RQQueue(System):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.queue = Queue(QUEUE, connection=Redis.from_url(settings.redis_url))

    def version(self) -> str:
        return f"rq {version('rq')}"

    def layout(self) -> str:
        return f"{self.settings.processes} proc x 1 (fork per job)"

    def slots(self) -> int:
        return self.settings.processes

    def worker_commands(self) -> list[list[str]]:
        return [
            python("-m", "rq.cli", "worker", "--url", self.settings.redis_url, "--quiet", QUEUE)
            for _ in range(self.settings.processes)
        ]

    async def enqueue_many(self, task: str, args: list[float]) -> None:
        fn = TASKS[task]
        for i in range(0, len(args), 1000):  # enqueue_many: one pipeline per 1,000
            chunk = args[i : i + 1000]
            self.queue.enqueue_many([Queue.prepare_data(fn, args=(a,)) for a in chunk])

    async def enqueue_one(self, task: str, arg: float) -> None:
        self.queue.enqueue(TASKS[task], arg)


SYSTEM = RQQueue

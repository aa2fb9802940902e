"""Celery on Redis: 2 ``celery worker`` processes, each with the threads pool x 50.

Celery's default prefork pool runs one job per child process, so 50 jobs at once per worker
would take 50 processes each; the threads pool is Celery's own way to run I/O-bound tasks
concurrently in one process, the nearest equivalent of "2 processes x 50".
"""

from __future__ import annotations

import time
from importlib.metadata import version

from celery import Celery

from benchmarks.systems.base import Settings, System, block, python, record

SETTINGS = Settings.from_env()
QUEUE = "bench"

app = Celery("bench", broker=SETTINGS.redis_url)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop(enqueued_at: float) -> None:
    record(enqueued_at, time.time())


@app.task(name="bench.sleep")
def sleep(enqueued_at: float) -> None:
    started = time.time()
    time.sleep(SETTINGS.sleep)
    record(enqueued_at, started)


@app.task(name="bench.block")
def block_task(enqueued_at: float) -> None:
    block()


TASKS = {"noop": noop, "sleep": sleep, "block": block_task}


class CeleryQueue(System):
    def version(self) -> str:
        return f"celery {version('celery')}"

    def layout(self) -> str:
        return f"{self.settings.processes} proc x {self.settings.concurrency} threads"

    def worker_commands(self) -> list[list[str]]:
        return [
            python(
                "-m", "celery", "-A", __name__, "worker", "--pool", "threads",
                "--concurrency", str(self.settings.concurrency), "--loglevel", "WARNING",
                "--hostname", f"bench{i}@%h", "--queues", QUEUE,
            )
            for i in range(self.settings.processes)
        ]  # fmt: skip

    async def enqueue_many(self, task: str, args: list[float]) -> None:
        # No bulk send in Celery: one message each, through one producer.
        with app.producer_or_acquire() as producer:
            for arg in args:
                TASKS[task].apply_async((arg,), producer=producer)

    async def enqueue_one(self, task: str, arg: float) -> None:
        TASKS[task].apply_async((arg,))


SYSTEM = CeleryQueue

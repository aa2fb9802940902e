"""Dramatiq on Redis: ``dramatiq --processes 2 --threads 50``."""

from __future__ import annotations

import time
from importlib.metadata import version

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks.systems.base import Settings, System, block, python, record

SETTINGS = Settings.from_env()
QUEUE = "bench"

broker = RedisBroker(url=SETTINGS.redis_url)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, actor_name="bench_noop")
def noop(enqueued_at: float) -> None:
    record(enqueued_at, time.time())


@dramatiq.actor(queue_name=QUEUE, actor_name="bench_sleep")
def sleep(enqueued_at: float) -> None:
    started = time.time()
    time.sleep(SETTINGS.sleep)
    record(enqueued_at, started)


@dramatiq.actor(queue_name=QUEUE, actor_name="bench_block")
def block_task(enqueued_at: float) -> None:
    block()


TASKS = {"noop": noop, "sleep": sleep, "block": block_task}


class DramatiqQueue(System):
    def version(self) -> str:
        return f"dramatiq {version('dramatiq')}"

    def layout(self) -> str:
        return f"{self.settings.processes} proc x {self.settings.concurrency} threads"

    def worker_commands(self) -> list[list[str]]:
        return [
            python(
                "-m", "dramatiq", __name__, "--processes", str(self.settings.processes),
                "--threads", str(self.settings.concurrency), "--queues", QUEUE,
            )
        ]  # fmt: skip

    async def enqueue_many(self, task: str, args: list[float]) -> None:
        actor = TASKS[task]
        for arg in args:  # no bulk enqueue in Dramatiq
            actor.send(arg)

    async def enqueue_one(self, task: str, arg: float) -> None:
        TASKS[task].send(arg)


SYSTEM = DramatiqQueue

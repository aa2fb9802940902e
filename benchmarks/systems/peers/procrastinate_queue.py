"""Procrastinate on PostgreSQL (psycopg 3): 2 ``procrastinate worker`` processes with
``--concurrency 50``, LISTEN/NOTIFY on (its default)."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version

from procrastinate import App, PsycopgConnector

from benchmarks.systems.base import Settings, System, block_async, python, record

SETTINGS = Settings.from_env()
QUEUE = "bench"

app = App(connector=PsycopgConnector(conninfo=SETTINGS.postgres_url))


@app.task(name="bench.noop", queue=QUEUE)
async def noop(enqueued_at: float) -> None:
    record(enqueued_at, time.time())


@app.task(name="bench.sleep", queue=QUEUE)
async def sleep(enqueued_at: float) -> None:
    started = time.time()
    await asyncio.sleep(SETTINGS.sleep)
    record(enqueued_at, started)


@app.task(name="bench.block", queue=QUEUE)
async def block(enqueued_at: float) -> None:
    await block_async()


TASKS = {"noop": noop, "sleep": sleep, "block": block}


class ProcrastinateQueue(System):
    def version(self) -> str:
        return f"procrastinate {version('procrastinate')} (psycopg {version('psycopg')})"

    def layout(self) -> str:
        return f"{self.settings.processes} proc x {self.settings.concurrency} async"

    def worker_commands(self) -> list[list[str]]:
        return [
            python(
                "-m", "procrastinate", "--app", f"{__name__}.app", "--log-level", "warning",
                "worker", "--concurrency", str(self.settings.concurrency), "--queues", QUEUE,
            )
            for _ in range(self.settings.processes)
        ]  # fmt: skip

    async def setup(self) -> None:
        await app.open_async()
        try:
            await app.schema_manager.apply_schema_async()
        except Exception as exc:  # already there: a second run on the same database
            if "already exists" not in str(exc):
                raise

    async def enqueue_many(self, task: str, args: list[float]) -> None:
        for i in range(0, len(args), 5000):  # batch_defer_async: one statement per 5,000
            await TASKS[task].batch_defer_async(*({"enqueued_at": a} for a in args[i : i + 5000]))

    async def enqueue_one(self, task: str, arg: float) -> None:
        await TASKS[task].defer_async(enqueued_at=arg)

    async def close(self) -> None:
        await app.close_async()


SYSTEM = ProcrastinateQueue

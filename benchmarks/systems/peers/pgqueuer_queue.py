"""PgQueuer on PostgreSQL (asyncpg driver, as its README): 2 worker processes with
``max_concurrent_tasks=50``, the default batch size (10) and LISTEN/NOTIFY wake-ups.

``pgq run`` fails at start-up in this version (its ``--log-level`` option reaches the logging
set-up as a string), so each worker process runs ``pgqueuer.run(factory, ...)``, the function
that ``pgq run`` calls, through ``python -m`` this module.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import asyncpg
import pgqueuer
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

from benchmarks.systems.base import Settings, System, block_async, python, record

SETTINGS = Settings.from_env()
ARG = struct.Struct("<d")  # the payload: the enqueue time as 8 bytes


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    """The factory ``pgqueuer.run`` enters in each worker process."""
    connection = await asyncpg.connect(SETTINGS.postgres_url)
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        started = time.time()
        record(ARG.unpack(job.payload or b"")[0], started)

    @pgq.entrypoint("sleep")
    async def sleep(job: Job) -> None:
        started = time.time()
        await asyncio.sleep(SETTINGS.sleep)
        record(ARG.unpack(job.payload or b"")[0], started)

    @pgq.entrypoint("block")
    async def block(job: Job) -> None:
        await block_async()

    try:
        yield pgq
    finally:
        await connection.close()


class PgQueuerQueue(System):
    connection: asyncpg.Connection
    queries: Queries

    def version(self) -> str:
        return f"pgqueuer {version('pgqueuer')} (asyncpg {version('asyncpg')})"

    def layout(self) -> str:
        return f"{self.settings.processes} proc x {self.settings.concurrency} async"

    def worker_commands(self) -> list[list[str]]:
        return [python("-m", __name__) for _ in range(self.settings.processes)]

    async def setup(self) -> None:
        self.connection = await asyncpg.connect(self.settings.postgres_url)
        self.queries = Queries(AsyncpgDriver(self.connection))
        if not await self.queries.schema_is_installed():
            await self.queries.install()

    async def enqueue_many(self, task: str, args: list[float]) -> None:
        for i in range(0, len(args), 5000):  # a list enqueue: one statement per 5,000
            chunk = args[i : i + 5000]
            await self.queries.enqueue(
                [task] * len(chunk), [ARG.pack(a) for a in chunk], [0] * len(chunk)
            )

    async def enqueue_one(self, task: str, arg: float) -> None:
        await self.queries.enqueue(task, ARG.pack(arg))

    async def close(self) -> None:
        await self.connection.close()


SYSTEM = PgQueuerQueue

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(pgqueuer.run(create_pgqueuer, max_concurrent_tasks=SETTINGS.concurrency))

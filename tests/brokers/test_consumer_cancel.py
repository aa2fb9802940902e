"""A claim whose caller is cancelled after the request went out loses no job.

The store may apply the claim although its caller is gone (SQLite's thread, a server that had
the command already): the consumer session then keeps the reply, returns those jobs with its
next claim, and hands them back when it closes. Either way no job stays running under the
worker's name without the worker knowing it (until its lease expired, a lost attempt).

To be sure the claim is under way in the store when its caller is cancelled, the store is
stalled (a write lock held from outside) while the claim goes out, and let go after the
cancel. A store that cannot be stalled from outside (the memory broker, whose claim is one
step that nothing interrupts) runs the same checks without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from conveyor.brokers.base import Broker, Consumer, JobFilter
from conveyor.brokers.sqlite import SQLiteBroker
from conveyor.job import JobRecord, Status
from tests.brokers.support import eventually, make_job, must_get, session

JOBS = 3

_Check = Callable[[], bool | Awaitable[bool]]


@contextlib.asynccontextmanager
async def _stalled(broker: Broker) -> AsyncIterator[_Check]:
    """Hold the store's write lock from outside while the block runs, where that can be
    done; yields a check of whether a claim is under way in the store (blocked on it)."""
    if isinstance(broker, SQLiteBroker):
        outside = sqlite3.connect(broker.path, isolation_level=None)
        outside.execute("BEGIN IMMEDIATE")
        try:
            # The consumer hands the claim to the broker's thread before its first await.
            yield lambda: True
        finally:
            outside.execute("ROLLBACK")
            outside.close()
    elif urlsplit(broker.url).scheme.startswith("postgres"):
        async with _postgres_lock(broker.url) as waiting:
            yield waiting
    else:
        yield lambda: True


@contextlib.asynccontextmanager
async def _postgres_lock(url: str) -> AsyncIterator[_Check]:
    import psycopg

    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    schema = options.pop("schema")
    conninfo = urlunsplit(parts._replace(query=urlencode(options)))
    async with await psycopg.AsyncConnection.connect(conninfo) as outside:
        await outside.execute(f"LOCK TABLE {schema}.jobs IN EXCLUSIVE MODE")
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as look:

            async def waiting() -> bool:
                cursor = await look.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                row = await cursor.fetchone()
                return row is not None and row[0] > 0

            try:
                yield waiting
            finally:
                await outside.rollback()


async def _cancel_in_flight(broker: Broker, consumer: Consumer) -> list[JobRecord]:
    """Start a claim of every due job, cancel it while the store runs it, and return what the
    caller received after all (nothing, unless the claim ended before the cancel)."""
    async with _stalled(broker) as under_way:
        claiming = asyncio.create_task(consumer.claim(10, time.time()))
        await asyncio.sleep(0)  # let the claim go out
        await eventually(under_way)
        claiming.cancel()
        await asyncio.gather(claiming, return_exceptions=True)
    return [] if claiming.cancelled() or claiming.exception() else claiming.result()


async def _running_under(broker: Broker, worker: str) -> set[str]:
    page = await broker.list(JobFilter(status=Status.RUNNING, limit=1000))
    return {j.id for j in page if j.worker == worker}


async def test_the_next_claim_returns_the_jobs_of_a_claim_cancelled_in_flight(
    broker: Broker,
) -> None:
    """After the session's next claims, every job is either with the caller or queued."""
    jobs = [make_job() for _ in range(JOBS)]
    await broker.enqueue(jobs)
    consumer = session(broker)
    received = await _cancel_in_flight(broker, consumer)
    received += await consumer.claim(1, time.time())
    received += await consumer.claim(10, time.time())
    ids = [j.id for j in received]
    assert len(ids) == len(set(ids)), "a job was handed out twice"
    assert await _running_under(broker, "w1") <= set(ids)
    for job in jobs:
        stored = await must_get(broker, job.id)
        assert job.id in ids or stored.status is Status.QUEUED
    await consumer.close()


async def test_close_hands_back_the_jobs_of_a_claim_cancelled_in_flight(broker: Broker) -> None:
    """Closed without claiming again, the session leaves no job running under its worker
    but those its caller received; the others are queued again, the attempt not counted."""
    jobs = [make_job() for _ in range(JOBS)]
    await broker.enqueue(jobs)
    consumer = session(broker)
    received = {j.id for j in await _cancel_in_flight(broker, consumer)}
    await consumer.close()
    assert await _running_under(broker, "w1") <= received
    for job in jobs:
        if job.id not in received:
            stored = await must_get(broker, job.id)
            assert (stored.status, stored.attempts) == (Status.QUEUED, 0)

"""Enqueue on PostgreSQL, on the broker's own connection or inside the application's
transaction (the transactional outbox): the job exists if and only if that transaction
commits, and the workers' NOTIFY leaves with the commit.

:func:`enqueue_statements` is the one enqueue, written once for every driver: a generator
that yields each statement and gets its rows back. The broker runs it on its pool; the
application's psycopg connection (sync or async, or one under a SQLAlchemy session or
Django) runs it with :func:`run_sync` or :func:`run_async`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import msgspec
import psycopg
from psycopg.rows import tuple_row

from conveyor.brokers.postgres_rows import shown
from conveyor.errors import BrokerUnavailable, ConfigurationError
from conveyor.job import UNFINISHED, JobRecord, Status

Query = tuple[str, dict[str, Any]]
Steps = Generator[Query, list[tuple[Any, ...]], list[JobRecord]]

_encode = msgspec.json.Encoder().encode


def enqueue_statements(sql: Mapping[str, str], jobs: Sequence[JobRecord], now: float) -> Steps:
    """The statements of one enqueue, for any driver: it sends each query and its rows back.

    First the insert of the whole batch, which skips the jobs whose key an unfinished job
    holds; only then, if some were skipped, one read of the holders. A holder may finish in
    between, freeing its key: the jobs that wanted it are inserted again.
    """
    staged = [
        msgspec.structs.replace(
            job,
            status=Status.SCHEDULED if job.eta > now else Status.QUEUED,
            args=list(job.args),
            kwargs=dict(job.kwargs),
        )
        for job in jobs
    ]
    stored: list[JobRecord | None] = [None] * len(staged)
    pending = list(range(len(staged)))
    for _ in range(5):
        batch = _encode([staged[i] for i in pending]).decode()
        inserted = {job_id for (job_id,) in (yield sql["enqueue"], {"jobs": batch})}
        skipped: list[int] = []
        for i in pending:
            if staged[i].id in inserted:
                inserted.discard(staged[i].id)  # a job given twice is inserted once
                stored[i] = staged[i]
            else:
                skipped.append(i)
        if not skipped:
            break
        keys = [k for i in skipped if (k := staged[i].key) is not None]
        ids = [staged[i].id for i in skipped]
        rows = yield sql["holders"], {"keys": keys, "ids": ids}
        found = [shown(text) for (text,) in rows]
        by_key = {j.key: j for j in found if j.key is not None and j.status in UNFINISHED}
        by_id = {j.id: j for j in found}
        pending = []
        for i in skipped:
            job = staged[i]
            holder = by_key.get(job.key) if job.key is not None else None
            stored[i] = holder or by_id.get(job.id)
            if stored[i] is None:
                pending.append(i)
        if not pending:
            break
    done = [job for job in stored if job is not None]
    if len(done) != len(stored):
        raise BrokerUnavailable("enqueue: jobs were neither inserted nor found (keys in flux)")
    return done


def sync_driver(connection: object) -> psycopg.Connection[Any]:
    """The psycopg connection under a psycopg, SQLAlchemy or Django connection or session."""
    obj = connection
    for _ in range(4):
        if isinstance(obj, psycopg.Connection):
            return obj
        if isinstance(obj, psycopg.AsyncConnection):
            raise ConfigurationError(
                "an async connection enqueues with enqueue_async(), not enqueue()"
            )
        if hasattr(obj, "driver_connection"):  # SQLAlchemy's pooled DBAPI connection
            obj = obj.driver_connection
            continue
        if callable(getattr(obj, "ensure_connection", None)):  # django.db.connection
            obj.ensure_connection()  # type: ignore[attr-defined]
        inner = getattr(obj, "connection", None)  # a SQLAlchemy Connection or Session, a cursor
        obj = inner() if callable(inner) else inner
    raise ConfigurationError(
        f"cannot enqueue inside a transaction of {type(connection).__name__}: pass a psycopg 3 "
        "connection or cursor, a SQLAlchemy Session or Connection, or django.db.connection"
    )


async def async_driver(connection: object) -> psycopg.AsyncConnection[Any]:
    """The psycopg AsyncConnection under a psycopg or SQLAlchemy async connection or session."""
    obj = connection
    for _ in range(4):
        if isinstance(obj, psycopg.AsyncConnection):
            return obj
        if isinstance(obj, psycopg.Connection):
            raise ConfigurationError(
                "a sync connection enqueues with enqueue(), not enqueue_async()"
            )
        if hasattr(obj, "driver_connection"):
            obj = obj.driver_connection
        elif callable(getattr(obj, "get_raw_connection", None)):  # SQLAlchemy AsyncConnection
            obj = await obj.get_raw_connection()  # type: ignore[attr-defined]
        else:  # a SQLAlchemy AsyncSession (connection() is a coroutine), a cursor
            inner = getattr(obj, "connection", None)
            obj = inner() if callable(inner) else inner
            if asyncio.iscoroutine(obj):
                obj = await obj
    raise ConfigurationError(
        f"cannot enqueue inside a transaction of {type(connection).__name__}: pass a psycopg 3 "
        "AsyncConnection or cursor, or a SQLAlchemy AsyncSession or AsyncConnection"
    )


def run_sync(conn: psycopg.Connection[Any], steps: Steps) -> list[JobRecord]:
    """Run ``steps`` on ``conn``: each query, its rows sent back."""
    try:
        with conn.cursor(row_factory=tuple_row) as cur:
            query = next(steps)
            while True:
                cur.execute(*query)
                query = steps.send(cur.fetchall())
    except StopIteration as done:
        stored: list[JobRecord] = done.value
        return stored


async def run_async(conn: psycopg.AsyncConnection[Any], steps: Steps) -> list[JobRecord]:
    """Run ``steps`` on ``conn``: each query, its rows sent back."""
    try:
        async with conn.cursor(row_factory=tuple_row) as cur:
            query = next(steps)
            while True:
                await cur.execute(*query)
                query = steps.send(await cur.fetchall())
    except StopIteration as done:
        stored: list[JobRecord] = done.value
        return stored


__all__ = [
    "Query",
    "Steps",
    "async_driver",
    "enqueue_statements",
    "run_async",
    "run_sync",
    "sync_driver",
]

"""The PostgreSQL broker: workers on many machines, and jobs enqueued inside the
application's own transaction.

Every operation is one SQL statement (a batch is one JSON array parameter), so each is
atomic on its own and runs on an autocommit connection from a small pool. Claims lock due
jobs with ``FOR UPDATE SKIP LOCKED``, so concurrent claimers pass each other by. The SQL
lives in ``sql/postgres.sql``; all names are in one PostgreSQL schema (``conveyor``, or
``?schema=NAME`` in the URL), created on first use and versioned in its ``schema_version``
table.

Idle workers wait on ``LISTEN``: every statement that makes a job due sends
``NOTIFY <schema>, '<queue>'``, which PostgreSQL delivers at commit. A dedicated connection
per broker object listens (``postgres_connection.py``), for every worker's session on it.

The broker is in three modules: this one holds the store (enqueue, reads, admin, recovery, the
schema); ``postgres_consumer.py``, a worker's session (claim, wait, heartbeat, finish,
release) and the state it keeps between its calls; ``postgres_connection.py``, the URL,
the pool and the listener.

:meth:`PostgresBroker.enqueue_in` runs the enqueue on the caller's connection, inside the
caller's transaction (see ``outbox.py``).

A lost connection raises :class:`~conveyor.errors.BrokerUnavailable`; the next operation
connects again.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import msgspec
import psycopg

from conveyor.brokers.base import (
    Broker,
    Consumer,
    Counts,
    JobFilter,
    Retention,
    WorkerInfo,
)
from conveyor.brokers.common import ForkGuard, lease_expired_error, poison_pill_error, redact
from conveyor.brokers.outbox import (
    async_driver,
    enqueue_statements,
    run_async,
    run_sync,
    sync_driver,
)
from conveyor.brokers.postgres_connection import (
    DEFAULT_SCHEMA,
    Connection,
    Listener,
    Pool,
    close_quietly,
    parse_url,
)
from conveyor.brokers.postgres_consumer import PostgresConsumer
from conveyor.brokers.postgres_rows import encode, shown
from conveyor.brokers.sql import queries
from conveyor.errors import BrokerUnavailable, ConfigurationError
from conveyor.job import FINISHED, MAX_LOSSES, JobRecord, Status

_SQL_TEXT = queries("postgres")
SCHEMA_VERSION = max(int(m[1]) for n in _SQL_TEXT if (m := re.fullmatch(r"migrate_(\d+)", n)))
"""The schema version this Conveyor writes; a newer database is refused, an older migrated."""

_STATUS = {s.value: s for s in Status}
_decode_worker = msgspec.json.Decoder(WorkerInfo).decode


@functools.cache
def _statements(schema: str) -> Mapping[str, str]:
    """The named queries with the schema's name written in."""
    return {name: text.replace("{schema}", schema) for name, text in _SQL_TEXT.items()}


# -- the broker -----------------------------------------------------------------------------


class PostgresBroker:
    """Keeps jobs in a PostgreSQL database shared by workers and producers on many machines.

    ``postgresql://user:password@host:5432/db`` takes libpq's options in its query string
    (``sslmode``, ``connect_timeout``...) and two of Conveyor's: ``schema`` (default
    ``conveyor``), the PostgreSQL schema that holds the tables, and ``pool_size`` (default 4),
    the connections of one broker object. The schema is created on first use; ``conveyor
    migrate`` creates it ahead, or prints its SQL.

    A broker object keeps, besides facts that never change (the schema's statements, that
    it was migrated): its pool of connections, and the listener (one ``LISTEN`` connection
    and the counts of what it heard), which wakes every consumer session opened on this
    object and lets each tell whether its queues were notified since it last looked. A
    worker's own state (cached answers to "is a job due?", receipts of claims whose answer
    was lost) lives in its session, a
    :class:`~conveyor.brokers.postgres_consumer.PostgresConsumer`.

    Raises:
        ConfigurationError: the URL is malformed or has a bad option.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._conninfo, self.schema, self._pool_size = parse_url(url)
        self._sql = _statements(self.schema)
        self._pool: Pool | None = None
        self._fork = ForkGuard()
        self._migrated = False
        self.listener = Listener(self._open, self._sql["listen"], self._unavailable)

    @property
    def location(self) -> str:
        """The URL without its password."""
        return redact(self.url)

    def copy(self) -> Broker:
        """A new broker on the same database, with its own connections."""
        return PostgresBroker(self.url)

    def consumer(self, worker: str, queues: Sequence[str], lease: float) -> Consumer:
        """A worker's session, a
        :class:`~conveyor.brokers.postgres_consumer.PostgresConsumer`: it keeps its own
        cached answers and lost-claim receipts, and shares this broker's connections and
        listener."""
        return PostgresConsumer(self, worker, queues, lease)

    async def connect(self) -> None:
        """Connect, and create or migrate the schema if needed.

        Raises:
            BrokerUnavailable: the server cannot be reached.
            ConfigurationError: the schema is newer than this Conveyor, or cannot be created.
        """
        async with self._connection():
            pass

    async def close(self) -> None:
        """Stop listening and close the connections; a later operation connects again."""
        await self.listener.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- plumbing, also for the consumer sessions -------------------------------------------

    def _unavailable(self, exc: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(f"PostgreSQL {redact(self.url)}: {exc}")

    async def _connect(self) -> Connection:
        try:
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    async def _open(self) -> Connection:
        conn = await self._connect()
        if not self._migrated:
            try:
                await self._migrate(conn)
            except BaseException:
                await close_quietly(conn)
                raise
        return conn

    def _after_fork(self) -> None:
        if self._fork.forked:
            self._fork.abandon(self._pool, self.listener.abandon())
            self._pool = None

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        self._after_fork()
        if self._pool is None:
            self._pool = Pool(self._open, self._pool_size)
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    async def rows(self, name: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of the named statement (none for one that returns nothing)."""
        async with self._connection() as conn:
            cur = await conn.execute(self._sql[name], params)
            return await cur.fetchall() if cur.description else []

    async def count(self, name: str, params: Mapping[str, Any]) -> int:
        """The number of rows the named statement changed."""
        async with self._connection() as conn:
            return (await conn.execute(self._sql[name], params)).rowcount

    async def listen(self) -> None:
        """Return once the listener listens (see :meth:`Listener.listen`)."""
        self._after_fork()
        await self.listener.listen()

    # -- the schema -------------------------------------------------------------------------

    async def _migrate(self, conn: Connection) -> tuple[int, int]:
        """Bring the schema to SCHEMA_VERSION; returns the versions before and after."""
        sql = self._sql

        async def version() -> int:
            row = await (await conn.execute(sql["installed"])).fetchone()
            if not (row and row[0]):
                return 0
            row = await (await conn.execute(sql["version"])).fetchone()
            return int(row[0]) if row else 0

        before = await version()
        if before > SCHEMA_VERSION:
            raise ConfigurationError(
                f"the PostgreSQL schema {self.schema} has version {before}, newer than this "
                f"Conveyor's {SCHEMA_VERSION}: upgrade Conveyor"
            )
        if before < SCHEMA_VERSION:
            try:
                async with conn.transaction():
                    # Workers starting together take turns; the later ones find it done.
                    await conn.execute(sql["migrate_lock"])
                    await conn.execute(sql["prepare"])
                    for number in range(await version() + 1, SCHEMA_VERSION + 1):
                        await conn.execute(sql[f"migrate_{number}"])
                        await conn.execute(sql["set_version"], {"version": number})
            except psycopg.errors.InsufficientPrivilege as exc:
                raise ConfigurationError(
                    f"cannot create the Conveyor schema {self.schema} ({exc}): run "
                    "`conveyor migrate` as a user allowed to, or grant CREATE"
                ) from exc
        self._migrated = True
        return before, SCHEMA_VERSION

    async def migrate(self) -> tuple[int, int]:
        """Create or migrate the schema now; returns the versions before and after.

        Raises:
            BrokerUnavailable: the server cannot be reached.
            ConfigurationError: the schema is newer than this Conveyor, or cannot be created.
        """
        conn = await self._connect()
        try:
            return await self._migrate(conn)
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc
        finally:
            await close_quietly(conn)

    def migration_sql(self) -> str:
        """The SQL that creates or migrates the schema, for teams that apply it themselves.

        It can be applied more than once: each step checks what is already there.
        """
        sql = self._sql
        steps = ["BEGIN;", sql["migrate_lock"], sql["prepare"]]
        for number in range(1, SCHEMA_VERSION + 1):
            steps += [
                f"-- version {number}",
                sql[f"migrate_{number}"],
                sql["set_version"].replace("%(version)s", str(number)),
            ]
        return "\n\n".join([*steps, "COMMIT;"]) + "\n"

    # -- enqueue, also inside the caller's transaction --------------------------------------

    async def enqueue(self, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        """Insert a batch in one statement; a job whose key an unfinished job holds returns
        that job instead."""
        if not jobs:
            return []
        steps = enqueue_statements(self._sql, jobs, time.time())
        async with self._connection() as conn:
            return await run_async(conn, steps)

    def enqueue_in(self, connection: object, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        """Enqueue on the caller's own connection, inside its current transaction.

        Nothing is committed: the jobs exist if and only if the caller commits, and the
        workers are woken by that commit. ``connection`` is a psycopg 3 Connection or
        cursor, a SQLAlchemy Session or Connection, or ``django.db.connection``.

        Raises:
            ConfigurationError: ``connection`` is none of those.
            BrokerUnavailable: the connection failed.
        """
        conn = sync_driver(connection)
        if not jobs:
            return []
        try:
            return run_sync(conn, enqueue_statements(self._sql, jobs, time.time()))
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    async def enqueue_in_async(
        self, connection: object, jobs: Sequence[JobRecord]
    ) -> list[JobRecord]:
        """Async twin of :meth:`enqueue_in`, for a psycopg AsyncConnection or a SQLAlchemy
        AsyncSession or AsyncConnection."""
        conn = await async_driver(connection)
        if not jobs:
            return []
        try:
            return await run_async(conn, enqueue_statements(self._sql, jobs, time.time()))
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    # -- leases -----------------------------------------------------------------------------

    async def recover(self, now: float) -> list[str]:
        """Expired leases go back to queued without spending the attempt (a loss, counted);
        the loss after :data:`~conveyor.job.MAX_LOSSES` fails the job as a poison pill; a
        job asked to cancel ends cancelled. Returns their ids."""
        # A cheap look first: nearly always nothing has expired.
        expired = await self.rows("expired", {"now": now})
        if not expired:
            return []
        # Both errors go: the statement picks one from the row as it finds it (cancel asked
        # or not), and its token check makes the losses read here the row's.
        entries = [
            {
                "id": i,
                "token": t,
                "error": lease_expired_error(w, a),
                "poison": poison_pill_error(w, losses + 1),
            }
            for i, t, w, a, losses in expired
        ]
        params = {"expired": encode(entries), "now": now, "max_losses": MAX_LOSSES}
        return sorted(job_id for (job_id,) in await self.rows("recover", params))

    # -- reading ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        """One job, or None."""
        rows = await self.rows("get", {"id": job_id})
        return shown(rows[0][0]) if rows else None

    async def list(self, where: JobFilter) -> builtins.list[JobRecord]:
        """A page of jobs, newest (highest id) first, below the ``before`` cursor."""
        params = {
            "before": where.before,
            "status": None if where.status is None else where.status.value,
            "queue": where.queue,
            "task": where.task,
            "limit": max(where.limit, 0),
        }
        return [shown(text) for (text,) in await self.rows("list", params)]

    async def counts(self) -> Counts:
        """Jobs per queue and status; a scheduled job whose eta has come counts as queued."""
        result: dict[str, dict[Status, int]] = {}
        for queue, status, n in await self.rows("counts", {"now": time.time()}):
            result.setdefault(queue, {})[_STATUS[status]] = n
        return result

    async def workers(self, now: float, ttl: float) -> builtins.list[WorkerInfo]:
        """Workers whose last heartbeat is under ``ttl`` seconds old."""
        rows = await self.rows("workers", {"since": now - ttl})
        return [_decode_worker(info) for (info,) in rows]

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue for every worker; resuming wakes the idle ones."""
        await self.rows("pause" if paused else "resume", {"queue": queue})

    async def paused(self) -> builtins.list[str]:
        """The paused queues, sorted."""
        return [queue for (queue,) in await self.rows("paused", {})]

    # -- managing ---------------------------------------------------------------------------

    async def cancel(self, job_id: str, now: float) -> JobRecord | None:
        """Cancel a pending job at once, flag a running one for its worker; None if unknown."""
        rows = await self.rows("cancel", {"id": job_id, "now": now})
        return shown(rows[0][0]) if rows else None

    async def retry_failed(self, ids: Sequence[str] | None, queue: str | None, now: float) -> int:
        """Redrive failed jobs to queued with attempts reset; a job whose key an unfinished
        job holds stays failed."""
        params = {"ids": None if ids is None else builtins.list(ids), "queue": queue, "now": now}
        for attempt in range(3):
            try:
                [(moved,)] = await self.rows("retry_failed", params)
                return int(moved)
            except psycopg.errors.UniqueViolation:
                # A producer took one of those keys meanwhile: look again.
                if attempt == 2:
                    raise
        return 0  # not reached

    async def purge(self, status: Status, queue: str | None, ids: Sequence[str] | None) -> int:
        """Delete jobs in a finished ``status`` (of one queue, or by id).

        Raises:
            ValueError: ``status`` is not a finished one.
        """
        if status not in FINISHED:
            raise ValueError(f"purge takes a finished status, not {status.value!r}")
        params = {
            "status": status.value,
            "queue": queue,
            "ids": None if ids is None else builtins.list(ids),
        }
        return await self.count("purge", params)

    async def prune(self, retention: Retention, now: float, limit: int) -> int:
        """Delete up to ``limit`` finished jobs older than their retention, oldest first
        (and the records of workers gone for longer than every retention)."""
        if limit <= 0:
            return 0
        longest = max(retention.succeeded, retention.failed, retention.cancelled)
        params = {
            "succeeded": now - retention.succeeded,
            "failed": now - retention.failed,
            "cancelled": now - retention.cancelled,
            "workers_before": now - longest,
            "limit": limit,
        }
        return await self.count("prune", params)


__all__ = ["DEFAULT_SCHEMA", "SCHEMA_VERSION", "PostgresBroker"]

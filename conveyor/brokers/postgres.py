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
per broker object listens; ``wait`` looks at the queues first (unless this broker's last
claim just did) and sleeps no longer than the next scheduled eta.

:meth:`PostgresBroker.enqueue_in` runs the enqueue on the caller's connection, inside the
caller's transaction (see ``outbox.py``).

A lost connection raises :class:`~conveyor.errors.BrokerUnavailable`; the next operation
connects again. A claim whose answer was lost with the connection is undone at the next
claim, so its jobs are neither lost nor charged an attempt.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import os
import re
import select
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import psycopg
from psycopg.conninfo import conninfo_to_dict

from conveyor.brokers.base import (
    Broker,
    Consumer,
    Counts,
    HeartbeatReply,
    JobFilter,
    Lease,
    Outcome,
    Retention,
    WorkerInfo,
)
from conveyor.brokers.memory import lease_expired_error
from conveyor.brokers.outbox import (
    async_driver,
    enqueue_statements,
    run_async,
    run_sync,
    sync_driver,
)
from conveyor.brokers.session import StatelessConsumer
from conveyor.brokers.sql import queries
from conveyor.errors import BrokerUnavailable, ConfigurationError
from conveyor.job import FINISHED, PENDING, ErrorInfo, JobRecord, Status

DEFAULT_SCHEMA = "conveyor"
DEFAULT_POOL_SIZE = 4
"""Connections per broker object (plus one that listens): a worker's claimer, outcome
flusher, heartbeat and sweeper each get one."""

_SQL_TEXT = queries("postgres")
SCHEMA_VERSION = max(int(m[1]) for n in _SQL_TEXT if (m := re.fullmatch(r"migrate_(\d+)", n)))
"""The schema version this Conveyor writes; a newer database is refused, an older migrated."""

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,49}")
_STATUS = {s.value: s for s in Status}
_encode = msgspec.json.Encoder().encode
_decode_job = msgspec.json.Decoder(JobRecord).decode
_decode_jobs = msgspec.json.Decoder(list[JobRecord]).decode
_decode_worker = msgspec.json.Decoder(WorkerInfo).decode

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


@functools.cache
def _statements(schema: str) -> Mapping[str, str]:
    """The named queries with the schema's name written in."""
    return {name: text.replace("{schema}", schema) for name, text in _SQL_TEXT.items()}


def _parse_url(url: str) -> tuple[str, str, int]:
    """The libpq connection string, the schema and the pool size of a PostgreSQL URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigurationError(f"not a PostgreSQL URL: {url!r} (expected postgresql://...)")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema = options.pop("schema", DEFAULT_SCHEMA)
    if not _IDENTIFIER.fullmatch(schema):
        raise ConfigurationError(
            f"schema {schema!r} in URL {_redact(url)!r} must be a lower-case identifier "
            "(letters, digits and _, at most 50 characters)"
        )
    size = options.pop("pool_size", str(DEFAULT_POOL_SIZE))
    if not size.isdecimal() or int(size) < 1:
        raise ConfigurationError(f"pool_size in URL {_redact(url)!r} must be a whole number >= 1")
    options.setdefault("connect_timeout", "10")
    options.setdefault("application_name", "conveyor")
    conninfo = urlunsplit(parts._replace(query=urlencode(options)))
    try:
        conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"bad PostgreSQL URL {_redact(url)!r}: {exc}") from None
    return conninfo, schema, int(size)


def _redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class _OutcomeRow(msgspec.Struct):
    id: str
    token: int
    status: Status
    finished_at: float
    result: msgspec.Raw | None
    error: ErrorInfo | None
    eta: float | None


def _outcome_rows(outcomes: Sequence[Outcome]) -> list[_OutcomeRow]:
    rows: list[_OutcomeRow] = []
    for out in outcomes:
        status, result, eta = out.status, None, None
        if out.status in PENDING:  # a retry: scheduled until its eta, queued once it has come
            eta = out.finished_at if out.eta is None else out.eta
            status = Status.SCHEDULED if eta > out.finished_at else Status.QUEUED
        elif out.result is not None:
            result = msgspec.Raw(out.result)
        rows.append(_OutcomeRow(out.id, out.token, status, out.finished_at, result, out.error, eta))
    return rows


# -- connections ----------------------------------------------------------------------------


class _Pool:
    """Up to ``size`` autocommit connections, opened when needed, for one event loop."""

    def __init__(self, connect: Any, size: int) -> None:
        self._connect = connect
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        async with self._slots:
            conn = None
            while self._idle and conn is None:
                conn = self._idle.pop()
                if _ended(conn):
                    await _close_quietly(conn)
                    conn = None
            if conn is None:
                conn = await self._connect()
            try:
                yield conn
            except psycopg.Error:
                if conn.broken or conn.closed or not _idle(conn) or self._closed:
                    await _close_quietly(conn)
                else:  # a statement failed, the connection did not
                    self._idle.append(conn)
                raise
            except BaseException:
                # Cancelled, maybe in the middle of a statement: never reuse it.
                await _close_quietly(conn)
                raise
            if self._closed:  # closed while this connection was out
                await _close_quietly(conn)
            else:
                self._idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close_quietly(conn)


def _ended(conn: Connection) -> bool:
    """Whether the server has ended an idle connection (a restart, an idle timeout).

    An idle connection has nothing to say: anything to read is the server's farewell. One
    look at the socket, so that a restart costs no operation an error.
    """
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # looked at: asyncio would log it as never retrieved


def _idle(conn: Connection) -> bool:
    return conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


async def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        await conn.close()


class _Look(NamedTuple):
    """A look at queues (a claim or a probe): the listener's generation and the count of
    notifications it had heard when the look began."""

    generation: int
    heard: int
    queues: frozenset[str]
    next_eta: float | None


class _Waiter:
    __slots__ = ("event", "queues")

    def __init__(self, queues: frozenset[str]) -> None:
        self.queues = queues
        self.event = asyncio.Event()


# -- the broker -----------------------------------------------------------------------------


class PostgresBroker:
    """Keeps jobs in a PostgreSQL database shared by workers and producers on many machines.

    ``postgresql://user:password@host:5432/db`` takes libpq's options in its query string
    (``sslmode``, ``connect_timeout``...) and two of Conveyor's: ``schema`` (default
    ``conveyor``), the PostgreSQL schema that holds the tables, and ``pool_size`` (default 4),
    the connections of one broker object. The schema is created on first use; ``conveyor
    migrate`` creates it ahead, or prints its SQL.

    Raises:
        ConfigurationError: the URL is malformed or has a bad option.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._conninfo, self.schema, self._pool_size = _parse_url(url)
        self._sql = _statements(self.schema)
        self._pool: _Pool | None = None
        self._pid = os.getpid()
        self._migrated = False
        self._listener: asyncio.Task[None] | None = None
        self._listening: asyncio.Future[None] | None = None
        # What the listener heard, so that wait can skip looking at the queues when the
        # last claim looked already (see _look).
        self._generation = 0
        self._heard_count = 0
        self._heard: dict[str, int] = {}  # queue -> _heard_count at its last notification
        self._drained: _Look | None = None
        self._probed: _Look | None = None
        self._waiters: set[_Waiter] = set()
        # Claims whose answer a lost connection swallowed: undone at the next claim.
        self._lost_claims: list[dict[str, Any]] = []  # worker, started_at

    def copy(self) -> Broker:
        """A new broker on the same database, with its own connections."""
        return PostgresBroker(self.url)

    def consumer(self, worker: str, queues: Sequence[str], lease: float) -> Consumer:
        """A worker's session: each of its calls is one atomic step of this store."""
        return StatelessConsumer(self, worker, queues, lease)

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
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(f"PostgreSQL {_redact(self.url)}: {exc}")

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
                await _close_quietly(conn)
                raise
        return conn

    def _after_fork(self) -> None:
        if self._pid != os.getpid():
            # A forked child shares its parent's sockets: closing them would end the
            # parent's sessions, so they are dropped unclosed.
            _orphans.append((self._pool, self._listener))
            self._pool, self._listener, self._pid = None, None, os.getpid()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        self._after_fork()
        if self._pool is None:
            self._pool = _Pool(self._open, self._pool_size)
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    async def _rows(self, name: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        async with self._connection() as conn:
            cur = await conn.execute(self._sql[name], params)
            return await cur.fetchall() if cur.description else []

    async def _count(self, name: str, params: Mapping[str, Any]) -> int:
        async with self._connection() as conn:
            return (await conn.execute(self._sql[name], params)).rowcount

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
            await _close_quietly(conn)

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

    # -- claims and waiting -----------------------------------------------------------------

    async def claim_for(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float
    ) -> list[JobRecord]:
        """Take up to ``limit`` due jobs of the unpaused ``queues`` in one statement,
        highest priority then oldest eta first."""
        names = list(dict.fromkeys(queues))
        if not names or limit <= 0:
            return []
        if self._lost_claims:
            lost, self._lost_claims = self._lost_claims, []
            try:
                await self._count("unclaim", {"claims": _encode(lost).decode()})
            except BaseException:
                self._lost_claims[:0] = lost
                raise
        params = {
            "queues": names,
            "worker": worker,
            "limit": limit,
            "now": now,
            "lease_until": now + lease,
        }
        heard = self._heard_so_far()
        self._drained = None
        try:
            [(text,)] = await self._rows("claim", params)
        except BrokerUnavailable:
            # The claim may have committed with its answer lost: undo it at the next one.
            self._lost_claims.append({"worker": worker, "started_at": now})
            raise
        jobs = [] if text is None else _decode_jobs(text)
        if heard is not None and len(jobs) < limit:
            self._drained = _Look(*heard, frozenset(names), None)
        return jobs

    async def wait_for(self, queues: Sequence[str], timeout: float) -> None:
        """Return when a job may be due in the unpaused ``queues``, or after ``timeout``.

        Wakes on a NOTIFY from any producer or worker, at the eta of the next scheduled job,
        and at once when a job is due already. While the server is unreachable it just
        sleeps ``timeout``: the caller's next claim reports the outage.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiter = _Waiter(frozenset(queues))
        # Registered before the look at the queues, so no notification after it is missed.
        self._waiters.add(waiter)
        try:
            try:
                await self._listen()
                ready, next_eta = await self._look(waiter.queues)
            except BrokerUnavailable:
                ready, next_eta = False, None
            if ready or waiter.event.is_set():
                return
            if next_eta is not None:
                deadline = min(deadline, loop.time() + next_eta - time.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(max(deadline, loop.time())):
                    await waiter.event.wait()
        finally:
            self._waiters.discard(waiter)

    def _heard_so_far(self) -> tuple[int, int] | None:
        """The listener's generation and the notifications it heard, if it listens now."""
        listening, listener = self._listening, self._listener
        if listening is None or listener is None or listener.done() or not listening.done():
            return None
        return self._generation, self._heard_count

    def _heard_since(self, look: _Look | None, queues: frozenset[str]) -> bool | None:
        """Whether a notification for ``queues`` came after ``look``; None when unknown (no
        such look, another listener since, or other queues)."""
        if look is None or look.generation != self._generation or not queues <= look.queues:
            return None
        return any(self._heard.get(q, 0) > look.heard for q in queues)

    async def _look(self, queues: frozenset[str]) -> tuple[bool, float | None]:
        """Whether a job is due in ``queues``, and the next eta of their scheduled jobs.

        A query, unless this broker's last claim of these queues took less than it could
        while listening and nothing was notified since: then nothing is due (a job
        committed later would have been notified) and the next eta is that of the last
        query, if nothing was notified since it either and it has not come yet.
        """
        heard = self._heard_since(self._drained, queues)
        if heard:
            return True, None  # work came after that claim looked
        probed = self._probed
        if heard is False and probed is not None and probed.queues == queues:
            fresh = self._heard_since(probed, queues) is False
            if fresh and (probed.next_eta is None or probed.next_eta > time.time()):
                return False, probed.next_eta
        before = self._heard_so_far()
        [(ready, next_eta)] = await self._rows("probe", {"queues": list(queues)})
        if before is not None:
            self._probed = _Look(*before, queues, next_eta)
        return bool(ready), next_eta

    async def _listen(self) -> None:
        """Return once the listening connection listens; start it unless it runs.

        The connection lives and dies inside one task, which close() cancels: a waiter
        cancelled meanwhile leaves nothing open behind it.
        """
        self._after_fork()
        listening = self._listening
        if listening is None or self._listener is None or self._listener.done():
            listening = self._listening = asyncio.get_running_loop().create_future()
            listening.add_done_callback(_retrieve)
            self._listener = asyncio.create_task(
                self._notifications(listening), name="conveyor-listen"
            )
        await asyncio.shield(listening)

    async def _notifications(self, listening: asyncio.Future[None]) -> None:
        conn: Connection | None = None
        try:
            conn = await self._open()
            await conn.execute(self._sql["listen"])
            self._generation += 1
            listening.set_result(None)
            async for note in conn.notifies():
                self._heard_count += 1
                self._heard[note.payload] = self._heard_count
                for waiter in self._waiters:
                    if note.payload in waiter.queues:
                        waiter.event.set()
        except psycopg.Error as exc:  # lost: the next wait listens again
            if not listening.done():
                listening.set_exception(self._unavailable(exc))
        except Exception as exc:
            if not listening.done():
                listening.set_exception(exc)
        finally:
            if not listening.done():
                listening.set_exception(BrokerUnavailable("the broker was closed"))
            # Notifications may have been missed: every waiter looks again.
            for waiter in self._waiters:
                waiter.event.set()
            if conn is not None:
                await _close_quietly(conn)

    # -- leases and outcomes ----------------------------------------------------------------

    async def extend(
        self, worker: WorkerInfo, leases: Sequence[Lease], lease: float, now: float
    ) -> HeartbeatReply:
        """Record the worker and extend its leases still held, in one statement; report the
        lost ones and those asked to cancel."""
        params = {
            "id": worker.id,
            "info": _encode(worker).decode(),
            "seen_at": worker.seen_at,
            "leases": _encode(leases).decode(),
            "lease_until": now + lease,
        }
        rows = await self._rows("heartbeat", params)
        held = {(job_id, token): cancel for job_id, token, cancel in rows}
        return HeartbeatReply(
            lost=[h.id for h in leases if (h.id, h.token) not in held],
            cancel=[h.id for h in leases if held.get((h.id, h.token))],
        )

    async def record(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Apply a batch of outcomes in one statement, each only with a current token;
        return the refused ids."""
        if not outcomes:
            return []
        first: dict[tuple[str, int], Outcome] = {}
        for out in outcomes:
            first.setdefault((out.id, out.token), out)  # a repeat is refused below
        batch = _encode(_outcome_rows(list(first.values()))).decode()
        applied = set(await self._rows("finish", {"outcomes": batch}))
        refused: list[str] = []
        for out in outcomes:
            if (out.id, out.token) in applied:
                applied.discard((out.id, out.token))
            else:
                refused.append(out.id)
        return refused

    async def hand_back(self, leases: Sequence[Lease], now: float) -> None:
        """Hand running jobs back as due now; the attempt does not count."""
        if leases:
            await self._rows("release", {"leases": _encode(leases).decode(), "now": now})

    async def recover(self, now: float) -> list[str]:
        """Expired leases go back to queued, to failed when no attempts are left, or to
        cancelled when cancellation was asked; returns their ids."""
        # A cheap look first: nearly always nothing has expired.
        expired = await self._rows("expired", {"now": now})
        if not expired:
            return []
        entries = [
            {
                "id": i,
                "token": t,
                "error": lease_expired_error(JobRecord(id=i, task="", worker=w, attempts=a)),
            }
            for i, t, w, a in expired
        ]
        params = {"expired": _encode(entries).decode(), "now": now}
        return sorted(job_id for (job_id,) in await self._rows("recover", params))

    # -- reading ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        """One job, or None."""
        rows = await self._rows("get", {"id": job_id})
        return _decode_job(rows[0][0]) if rows else None

    async def list(self, where: JobFilter) -> builtins.list[JobRecord]:
        """A page of jobs, newest (highest id) first, below the ``before`` cursor."""
        params = {
            "before": where.before,
            "status": None if where.status is None else where.status.value,
            "queue": where.queue,
            "task": where.task,
            "limit": max(where.limit, 0),
        }
        return [_decode_job(text) for (text,) in await self._rows("list", params)]

    async def counts(self) -> Counts:
        """Jobs per queue and status; a scheduled job whose eta has come counts as queued."""
        result: dict[str, dict[Status, int]] = {}
        for queue, status, n in await self._rows("counts", {"now": time.time()}):
            result.setdefault(queue, {})[_STATUS[status]] = n
        return result

    async def workers(self, now: float, ttl: float) -> builtins.list[WorkerInfo]:
        """Workers whose last heartbeat is under ``ttl`` seconds old."""
        rows = await self._rows("workers", {"since": now - ttl})
        return [_decode_worker(info) for (info,) in rows]

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue for every worker; resuming wakes the idle ones."""
        await self._rows("pause" if paused else "resume", {"queue": queue})

    async def paused(self) -> builtins.list[str]:
        """The paused queues, sorted."""
        return [queue for (queue,) in await self._rows("paused", {})]

    # -- managing ---------------------------------------------------------------------------

    async def cancel(self, job_id: str, now: float) -> JobRecord | None:
        """Cancel a pending job at once, flag a running one for its worker; None if unknown."""
        rows = await self._rows("cancel", {"id": job_id, "now": now})
        return _decode_job(rows[0][0]) if rows else None

    async def retry_failed(self, ids: Sequence[str] | None, queue: str | None, now: float) -> int:
        """Redrive failed jobs to queued with attempts reset; a job whose key an unfinished
        job holds stays failed."""
        params = {"ids": None if ids is None else builtins.list(ids), "queue": queue, "now": now}
        for attempt in range(3):
            try:
                [(moved,)] = await self._rows("retry_failed", params)
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
        return await self._count("purge", params)

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
        return await self._count("prune", params)


# Pools and listeners inherited through fork(): kept referenced so that they are never closed.
_orphans: list[object] = []

__all__ = ["DEFAULT_SCHEMA", "SCHEMA_VERSION", "PostgresBroker"]

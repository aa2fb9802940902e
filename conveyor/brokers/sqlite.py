"""The SQLite broker: the embedded default, durable, for the processes of one machine.

One database file in write-ahead-log mode. Each operation is one transaction, opened with
``BEGIN IMMEDIATE`` so that it takes SQLite's single write lock up front (waiting up to the
busy timeout) instead of failing half-way on a lock upgrade. A batch (claim, outcomes,
heartbeat, release) is one statement over a JSON array parameter read with ``json_each``,
never one statement per job. The SQL lives in ``sql/sqlite.sql``.

The ``sqlite3`` module blocks, so each broker object owns one connection used only from one
thread of its own; every async method hands its whole operation to that thread.

Idle workers wake on two signals: a change made through any SQLiteBroker on the same file in
this process sets their asyncio event at once, and a change committed by another process is
seen by polling ``PRAGMA data_version``, which reads no page from disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import unquote

import msgspec

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
from conveyor.brokers.common import (
    ForkGuard,
    decode_error,
    first_outcomes,
    heartbeat_reply,
    lease_expired_error,
    poison_pill_error,
    refused_ids,
    shared_waiters,
    split_url,
    whole_number,
)
from conveyor.brokers.session import StoreConsumer
from conveyor.brokers.sql import queries
from conveyor.brokers.sqlite_rows import (
    STATUS,
    TOKEN,
    UNREADABLE,
    damage,
    insert_params,
    job_of,
    shown,
)
from conveyor.errors import BrokerUnavailable, ConfigurationError
from conveyor.job import FINISHED, MAX_LOSSES, PENDING, ErrorInfo, JobRecord, Status

T = TypeVar("T")

SCHEMA_VERSION = 2
"""Kept in the file's ``PRAGMA user_version``; a newer file is refused rather than misread, an
older one migrated (1 to 2: the ``losses`` column)."""

DEFAULT_BUSY_TIMEOUT_MS = 10_000
"""How long an operation waits for another connection's write lock before giving up."""

_POLL = 0.01
"""Seconds between two looks at ``PRAGMA data_version`` while waiting: the longest a waiter
sleeps through a change another process committed."""

_SQL = queries("sqlite")
_encode = msgspec.json.Encoder().encode
_decode_worker = msgspec.json.Decoder(WorkerInfo).decode


def _json(value: object) -> str:
    """``value`` as JSON text: SQLite's JSON functions read TEXT, not BLOB."""
    return _encode(value).decode()


# -- the URL ---------------------------------------------------------------------------------


def _parse_url(url: str) -> tuple[str, int]:
    """The absolute database path and busy timeout (ms) of a ``sqlite:///path`` URL."""
    parts, query = split_url(url, ("sqlite",), name="SQLite", example="sqlite:///path/to/file.db")
    if parts.netloc:
        raise ConfigurationError(
            f"SQLite URL {url!r} names a host ({parts.netloc!r}): write sqlite:///relative.db "
            "or sqlite:////absolute/path.db"
        )
    # sqlite:///jobs.db has the path "/jobs.db" (relative), sqlite:////srv/jobs.db "//srv/jobs.db".
    path = unquote(parts.path)[1:]
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ConfigurationError(
            f"SQLite URL {url!r} needs a database file, as in sqlite:///conveyor.db: workers "
            "and producers are separate processes, which cannot share an in-memory database"
        )
    options = dict(query)
    if unknown := sorted(set(options) - {"busy_timeout"}):
        raise ConfigurationError(
            f"unknown option {unknown[0]!r} in SQLite URL {url!r}: the only one is busy_timeout"
        )
    busy_timeout = options.get("busy_timeout", str(DEFAULT_BUSY_TIMEOUT_MS))
    return os.path.realpath(path), whole_number(url, "busy_timeout (ms)", busy_timeout)


# -- rows and transactions -------------------------------------------------------------------


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: the write lock is taken at BEGIN, so it cannot fail later on
    a lock held by another connection."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _write(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> tuple[list[Any], int]:
    """One statement in its own write transaction: the rows it returns, the rows it changed."""
    with _transaction(conn):
        cursor = conn.execute(sql, params)
        return cursor.fetchall(), cursor.rowcount


@functools.cache
def _claim_sql(n_queues: int) -> str:
    """The claim statement for ``n_queues`` queues (constant text per count, so cached)."""
    candidates = "\nUNION ALL\n".join(
        _SQL["claim_candidates"].replace(":queue", f":queue_{i}") for i in range(n_queues)
    )
    return _SQL["claim"].replace("/*candidates*/", candidates)


# -- the operations, each run whole on the broker's thread ------------------------------------


def _enqueue(conn: sqlite3.Connection, jobs: Sequence[JobRecord], now: float) -> list[JobRecord]:
    stored: list[JobRecord] = []
    # One INSERT per job inside the one transaction, as executemany would do: its rowcount
    # tells whether that job went in, and binding parameters beats parsing a JSON batch.
    with _transaction(conn):
        for job in jobs:
            status = Status.SCHEDULED if job.eta > now else Status.QUEUED
            # ON CONFLICT DO NOTHING: jobs_key refuses a second unfinished job with the same
            # key, also one inserted earlier in this batch or by a concurrent producer.
            if conn.execute(_SQL["insert"], insert_params(job, status)).rowcount:
                copy = msgspec.structs.replace(
                    job, status=status, args=list(job.args), kwargs=dict(job.kwargs)
                )
                stored.append(copy)
                continue
            row = None
            if job.key is not None:
                row = conn.execute(_SQL["key_holder"], {"key": job.key}).fetchone()
            if row is None:  # the conflict was on the id: this very job was enqueued before
                row = conn.execute(_SQL["get"], {"id": job.id}).fetchone()
            if row is None:
                raise BrokerUnavailable(f"job {job.id} was neither inserted nor found")
            stored.append(shown(row))
    return stored


def _claim(
    conn: sqlite3.Connection,
    queues: list[str],
    *,
    worker: str,
    limit: int,
    lease_until: float,
    now: float,
) -> list[JobRecord]:
    params: dict[str, Any] = {
        "queues": _json(queues),
        "worker": worker,
        "limit": limit,
        "lease_until": lease_until,
        "now": now,
    }
    params.update({f"queue_{i}": q for i, q in enumerate(queues)})
    with _transaction(conn):
        conn.execute(_SQL["promote"], params)
        rows = conn.execute(_claim_sql(len(queues)), params).fetchall()
    claimed: list[JobRecord] = []
    damaged: list[tuple[str, int, ErrorInfo]] = []
    for row in rows:
        try:
            claimed.append(job_of(row))
        except UNREADABLE:
            # Decoded after the commit, so the common case holds the write lock no longer;
            # a damaged job fails alone in a second, rare transaction (token-checked).
            _, field, reason, raw = damage(row) or (0, "record", "unreadable", row[0])
            damaged.append((row[0], row[TOKEN], decode_error(field, reason, raw)))
    if damaged:
        _write(conn, _SQL["fail_damaged"], {"damaged": _json(damaged), "now": now})
    claimed.sort(key=lambda j: (-j.priority, j.eta, j.id))
    return claimed


def _probe(
    conn: sqlite3.Connection, queues: list[str], version: int | None
) -> tuple[int, bool, float | None] | None:
    """For ``wait``: None when no other connection committed since ``version``, else the new
    version, whether a job is queued in ``queues``, and the earliest eta of their scheduled jobs.

    One small query per queue: each is an index probe (a min() or an EXISTS), which an
    ``IN`` over all the queues would not be.
    """
    current: int = conn.execute(_SQL["data_version"]).fetchone()[0]
    if current == version:
        return None
    next_eta: float | None = None
    paused = {queue for (queue,) in conn.execute(_SQL["paused"])}
    for queue in (q for q in queues if q not in paused):
        if conn.execute(_SQL["any_queued"], {"queue": queue}).fetchone()[0]:
            return current, True, None
        eta = conn.execute(_SQL["next_eta"], {"queue": queue}).fetchone()[0]
        if eta is not None and (next_eta is None or eta < next_eta):
            next_eta = eta
    return current, False, next_eta


def _heartbeat(
    conn: sqlite3.Connection, worker: WorkerInfo, leases: Sequence[Lease], lease_until: float
) -> HeartbeatReply:
    with _transaction(conn):
        conn.execute(
            _SQL["worker_seen"], {"id": worker.id, "info": _json(worker), "seen_at": worker.seen_at}
        )
        rows = (
            conn.execute(
                _SQL["heartbeat"], {"leases": _json(leases), "lease_until": lease_until}
            ).fetchall()
            if leases
            else []
        )
    return heartbeat_reply(
        leases, {(job_id, token): bool(cancel) for job_id, token, cancel in rows}
    )


def _finish(conn: sqlite3.Connection, outcomes: Sequence[Outcome]) -> tuple[list[str], set[str]]:
    """Returns the refused ids and the queues that got a job back (a retry)."""
    batch: list[tuple[Any, ...]] = []
    for out in first_outcomes(outcomes):
        if out.status in PENDING:
            # A retry: scheduled until its eta, queued when that has come already.
            eta = out.finished_at if out.eta is None else out.eta
            status = Status.SCHEDULED if eta > out.finished_at else Status.QUEUED
            batch.append((out.id, out.token, status, None, None, out.error, eta))
        else:
            # The result is JSON already: it is stored as that text, not decoded and re-encoded.
            result = None if out.result is None else out.result.decode()
            batch.append((out.id, out.token, out.status, out.finished_at, result, out.error, None))
    with _transaction(conn):
        rows = conn.execute(_SQL["finish"], {"outcomes": _json(batch)}).fetchall()
    refused = refused_ids(outcomes, [(job_id, token) for job_id, token, _, _ in rows])
    return refused, {queue for _, _, queue, status in rows if status in PENDING}


def _release(
    conn: sqlite3.Connection, leases: Sequence[Lease], now: float, delay: float
) -> set[str]:
    params = {"leases": _json(leases), "now": now, "eta": now + delay}
    rows, _ = _write(conn, _SQL["release"], params)
    return {queue for (queue, status) in rows if status == "queued"}


def _recover(conn: sqlite3.Connection, now: float) -> tuple[list[str], set[str]]:
    # Look before taking the write lock: nearly always nothing has expired.
    if not conn.execute(_SQL["expired"], {"now": now}).fetchone():
        return [], set()
    with _transaction(conn):
        expired = sorted(conn.execute(_SQL["expired"], {"now": now}).fetchall())
        errors = [
            (
                job_id,
                poison_pill_error(w, losses + 1)
                if losses >= MAX_LOSSES and not cancel
                else lease_expired_error(w, a),
            )
            for job_id, w, a, losses, cancel in expired
        ]
        params = {"expired": _json(errors), "now": now, "max_losses": MAX_LOSSES}
        rows = conn.execute(_SQL["recover"], params).fetchall()
    done = {job_id for job_id, _, _ in rows}
    return (
        [job_id for job_id, _ in errors if job_id in done],
        {queue for _, queue, status in rows if status in PENDING},
    )


def _cancel(conn: sqlite3.Connection, job_id: str, now: float) -> JobRecord | None:
    with _transaction(conn):
        conn.execute(_SQL["cancel_pending"], {"id": job_id, "now": now})
        conn.execute(_SQL["cancel_running"], {"id": job_id})
        row = conn.execute(_SQL["get"], {"id": job_id}).fetchone()
    return None if row is None else shown(row)


def _prune(conn: sqlite3.Connection, retention: Retention, now: float, limit: int) -> int:
    params = {
        "succeeded": now - retention.succeeded,
        "failed": now - retention.failed,
        "cancelled": now - retention.cancelled,
        "limit": limit,
    }
    longest = max(retention.succeeded, retention.failed, retention.cancelled)
    with _transaction(conn):
        deleted = conn.execute(_SQL["prune"], params).rowcount
        conn.execute(_SQL["prune_workers"], {"before": now - longest})
    return deleted


# -- the broker ----------------------------------------------------------------------------


class SQLiteBroker:
    """Keeps jobs in one SQLite file, shared by the worker and producer processes of a machine.

    ``sqlite:///conveyor.db`` is relative to the working directory, ``sqlite:////srv/q.db``
    absolute; ``?busy_timeout=`` sets how many milliseconds an operation waits for another
    process's write lock (default 10 000). The directory must exist; the file and its tables
    are created on first use. Operations connect on first use; :meth:`connect` only does it
    early, to fail fast.

    Raises:
        ConfigurationError: the URL names no file (or ``:memory:``, which processes cannot
            share), or has an unknown option.
    """

    def __init__(self, url: str = "sqlite:///conveyor.db") -> None:
        self.url = url
        self.path, self._busy_timeout = _parse_url(url)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used on the executor's thread only
        self._fork = ForkGuard()
        self._waiters = shared_waiters(self.path)

    @property
    def location(self) -> str:
        """The database file's absolute path (a relative URL is relative to where the process
        started, which the URL does not show)."""
        return self.path

    def copy(self) -> Broker:
        """A new broker on the same file, with its own connection and thread."""
        return SQLiteBroker(self.url)

    def consumer(self, worker: str, queues: Sequence[str], lease: float) -> Consumer:
        """A worker's session: each of its calls is one atomic step of this store."""
        return StoreConsumer(self, worker, queues, lease)

    async def connect(self) -> None:
        """Open the file, switch it to WAL and create the tables if needed.

        Raises:
            ConfigurationError: the directory does not exist, or the file was made by a newer
                version of Conveyor.
            BrokerUnavailable: SQLite cannot open the file, or it stays locked.
        """
        await self._run(lambda conn: None)

    async def close(self) -> None:
        """Close the connection and stop the thread; a later operation connects again."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
        finally:
            executor.shutdown(wait=False)

    # -- plumbing ---------------------------------------------------------------------------

    def _thread(self) -> ThreadPoolExecutor:
        if self._fork.forked:
            # A forked child has a copy of the parent's connection but not its thread. SQLite
            # forbids using that connection in the child, even to close it: drop it unclosed.
            self._fork.abandon(self._conn)
            self._executor, self._conn = None, None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="conveyor-sqlite")
        return self._executor

    async def _run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``operation`` on the broker's thread with its connection (opened if needed)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread(), self._call, operation)

    def _call(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        try:
            if self._conn is None:
                self._conn = self._open()
            return operation(self._conn)
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc) from exc
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # a bug (IntegrityError...), not an outage
                raise
            raise self._unavailable(exc) from exc  # "file is not a database", corruption

    def _unavailable(self, exc: sqlite3.Error) -> BrokerUnavailable:
        if getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return BrokerUnavailable(
                f"SQLite database {self.path} stayed locked by another connection for over "
                f"{self._busy_timeout} ms ({exc}); raise it with ?busy_timeout= in the URL "
                "if long transactions are expected"
            )
        return BrokerUnavailable(f"SQLite database {self.path}: {exc}")

    def _open(self) -> sqlite3.Connection:
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            raise ConfigurationError(
                f"cannot create the SQLite database {self.path}: the directory {folder} does "
                f"not exist (create it, or change the URL {self.url!r})"
            )
        # SQLite waits out a lock held by another connection for up to its busy timeout,
        # except in a few moments of a new file's life (switching it to WAL, recovering the
        # WAL index) where it answers "locked" at once: those are retried here.
        deadline = time.monotonic() + self._busy_timeout / 1000
        pause = 0.005
        while True:
            try:
                return self._connect()
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorname", "").startswith(
                    ("SQLITE_BUSY", "SQLITE_LOCKED")
                )
                if not busy or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)  # on the broker's own thread
            pause = min(pause * 2, 0.1)

    def _connect(self) -> sqlite3.Connection:
        # timeout: SQLite's busy timeout. isolation_level=None: no implicit transactions;
        # every write transaction is an explicit BEGIN IMMEDIATE ... COMMIT.
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout / 1000, isolation_level=None)
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise BrokerUnavailable(
                    f"SQLite database {self.path} cannot use write-ahead logging (journal mode "
                    f"{mode!r}): put it on a local file system"
                )
            # NORMAL in WAL mode: a crash of the process loses nothing; a power loss may lose
            # the last commits but never corrupts the file.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = OFF")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"SQLite database {self.path} has schema version {version}, newer than this "
                f"Conveyor's {SCHEMA_VERSION}: upgrade Conveyor"
            )
        # Several processes may get here at once: the write lock runs them one after the
        # other. On a new file IF NOT EXISTS makes the later ones no-ops; an upgrade looks at
        # the version again once it holds the lock. (executescript commits first, so the
        # upgrade runs its statements one by one.)
        try:
            if version == 0:
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{_SQL['schema']}\n"
                    f"PRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
                )
                return
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("PRAGMA user_version").fetchone()[0] == 1:
                conn.execute(_SQL["migrate_2"])
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _wake(self, queues: set[str]) -> None:
        self._waiters.notify(queues)

    # -- the contract -------------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        """Insert a batch in one transaction; a job whose key an unfinished job holds returns
        that job instead."""
        if not jobs:
            return []
        now = time.time()
        stored = await self._run(lambda conn: _enqueue(conn, jobs, now))
        self._wake({j.queue for j in stored})
        return stored

    def claim_for(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float
    ) -> asyncio.Future[list[JobRecord]]:
        """Take up to ``limit`` due jobs, highest priority then oldest eta first, in one
        transaction: promote the due scheduled jobs, then mark the chosen ones running.

        Returns the future of the claim on the broker's thread: cancelling a caller that
        awaits it does not stop a claim under way there (see :class:`StoreConsumer`).
        """
        names = list(dict.fromkeys(queues))
        if not names or limit <= 0:
            nothing: asyncio.Future[list[JobRecord]] = asyncio.get_running_loop().create_future()
            nothing.set_result([])
            return nothing
        claiming = self._thread().submit(
            self._call,
            lambda conn: _claim(
                conn, names, worker=worker, limit=limit, lease_until=now + lease, now=now
            ),
        )
        return asyncio.wrap_future(claiming)

    async def wait_for(self, queues: Sequence[str], timeout: float) -> None:
        """Return when a job may be due in ``queues``, or after ``timeout`` seconds.

        Wakes at once on a change through a SQLiteBroker of this process, within ``_POLL``
        on a change committed by another process, and at the eta of the next scheduled job.
        It may return early although nothing is due.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        names = list(dict.fromkeys(queues))
        # Registered before the first look at the file, so no change after it goes unseen.
        with self._waiters.waiting(names) as waiter:
            executor = self._thread()
            version: int | None = None
            # The executor changes when the broker is closed during the wait: then return.
            while self._executor is executor:
                probe = await self._run(functools.partial(_probe, queues=names, version=version))
                if probe is not None:
                    version, ready, next_eta = probe
                    if ready:
                        return
                    if next_eta is not None:
                        deadline = min(deadline, loop.time() + next_eta - time.time())
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                try:
                    async with asyncio.timeout(min(remaining, _POLL)):
                        await waiter.event.wait()
                    # A change in this process: look again, as it may concern only a paused
                    # queue or a later eta (returning would make the caller claim for nothing).
                    waiter.event.clear()
                    version = None
                except TimeoutError:
                    pass

    async def extend(
        self, worker: WorkerInfo, leases: Sequence[Lease], lease: float, now: float
    ) -> HeartbeatReply:
        """Record the worker and extend its leases still held, in one transaction; report
        the lost ones and those asked to cancel."""
        return await self._run(lambda conn: _heartbeat(conn, worker, leases, now + lease))

    async def record(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Apply a batch of outcomes in one statement, each only with a current token;
        return the refused ids."""
        if not outcomes:
            return []
        refused, retried = await self._run(lambda conn: _finish(conn, outcomes))
        self._wake(retried)
        return refused

    async def hand_back(self, leases: Sequence[Lease], now: float, delay: float = 0.0) -> None:
        """Hand running jobs back, due after ``delay``; the attempt does not count."""
        if leases:
            self._wake(await self._run(lambda conn: _release(conn, leases, now, delay)))

    async def recover(self, now: float) -> list[str]:
        """Expired leases go back to queued, to failed when no attempts are left, or to
        cancelled when cancellation was asked; returns their ids."""
        recovered, requeued = await self._run(lambda conn: _recover(conn, now))
        self._wake(requeued)
        return recovered

    async def get(self, job_id: str) -> JobRecord | None:
        """One job, or None."""
        row = await self._run(lambda conn: conn.execute(_SQL["get"], {"id": job_id}).fetchone())
        return None if row is None else shown(row)

    async def counts(self) -> Counts:
        """Jobs per queue and status; a scheduled job whose eta has come counts as queued."""
        params = {"now": time.time()}
        rows = await self._run(lambda conn: conn.execute(_SQL["counts"], params).fetchall())
        result: dict[str, dict[Status, int]] = {}
        for queue, status, n in rows:
            result.setdefault(queue, {})[STATUS[status]] = n
        return result

    async def workers(self, now: float, ttl: float) -> list[WorkerInfo]:
        """Workers whose last heartbeat is under ``ttl`` seconds old."""
        params = {"since": now - ttl}
        rows = await self._run(lambda conn: conn.execute(_SQL["workers"], params).fetchall())
        return [_decode_worker(info) for (info,) in rows]

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume ``queue``; every worker honours it at its next claim."""
        sql = _SQL["pause" if paused else "resume"]
        await self._run(lambda conn: conn.execute(sql, {"queue": queue}))
        if not paused:
            self._wake({queue})

    async def paused(self) -> list[str]:
        """The paused queues, sorted."""
        rows = await self._run(lambda conn: conn.execute(_SQL["paused"]).fetchall())
        return [queue for (queue,) in rows]

    async def cancel(self, job_id: str, now: float) -> JobRecord | None:
        """Cancel a pending job at once, flag a running one for its worker; None if unknown."""
        return await self._run(lambda conn: _cancel(conn, job_id, now))

    async def retry_failed(self, ids: Sequence[str] | None, queue: str | None, now: float) -> int:
        """Redrive failed jobs to queued with attempts reset; a job whose key an unfinished
        job holds stays failed."""
        if ids is None:
            sql, params = _SQL["retry_failed_all"], {"queue": queue, "now": now}
        else:
            sql, params = _SQL["retry_failed_ids"], {"ids": _json(ids), "queue": queue, "now": now}
        rows, _ = await self._run(lambda conn: _write(conn, sql, params))
        self._wake({q for (q,) in rows})
        return len(rows)

    async def purge(self, status: Status, queue: str | None, ids: Sequence[str] | None) -> int:
        """Delete jobs in a finished ``status`` (of one queue, or by id).

        Raises:
            ValueError: ``status`` is not a finished one.
        """
        if status not in FINISHED:
            raise ValueError(f"purge takes a finished status, not {status.value!r}")
        params = {"status": status.value, "queue": queue}
        if ids is None:
            sql = _SQL["purge_all"]
        else:
            sql, params["ids"] = _SQL["purge_ids"], _json(ids)
        _, deleted = await self._run(lambda conn: _write(conn, sql, params))
        return deleted

    async def prune(self, retention: Retention, now: float, limit: int) -> int:
        """Delete up to ``limit`` finished jobs older than their retention, oldest first (and
        the records of workers gone for longer than every retention)."""
        if limit <= 0:
            return 0
        return await self._run(lambda conn: _prune(conn, retention, now, limit))

    # Last in the class: a method named ``list`` would shadow the builtin in the
    # annotations that follow it.
    async def list(self, where: JobFilter) -> list[JobRecord]:
        """A page of jobs, newest (highest id) first, below the ``before`` cursor."""
        params = {
            "before": where.before,
            "status": None if where.status is None else where.status.value,
            "queue": where.queue,
            "task": where.task,
            "limit": max(where.limit, 0),
        }
        rows = await self._run(lambda conn: conn.execute(_SQL["list"], params).fetchall())
        return [shown(r) for r in rows]


__all__ = ["DEFAULT_BUSY_TIMEOUT_MS", "SCHEMA_VERSION", "SQLiteBroker"]

"""What only the PostgreSQL broker does: enqueue inside the application's own transaction,
its schema (created on first use, versioned, ``conveyor migrate``), and riding out a lost
connection or a server restart without losing a job.

The conformance suite runs on PostgreSQL too (the ``postgres`` kind of conftest.py).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import conveyor
from conveyor.brokers.base import JobFilter
from conveyor.brokers.postgres import SCHEMA_VERSION, PostgresBroker
from conveyor.errors import BrokerUnavailable, ConfigurationError
from conveyor.job import Status
from conveyor.testing import drain_async
from tests.brokers.support import eventually, make_job, must_get
from tests.servers import PostgresServer


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh schema in the session's PostgreSQL."""
    return postgres_server.url() + f"?schema=t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def dsn(postgres_server: PostgresServer) -> str:
    """The plain libpq URL of the session's database, as an application would have it."""
    return postgres_server.url()


@pytest.fixture
def app(pg_url: str) -> Iterator[conveyor.Conveyor]:
    """An app on a fresh schema, with a task that records its argument in ``app.seen``."""
    app = conveyor.Conveyor(pg_url)
    app.seen = []  # type: ignore[attr-defined]

    @app.task(name="signup.welcome")
    def welcome(user: str) -> str:
        app.seen.append(user)  # type: ignore[attr-defined]
        return f"hi {user}"

    try:
        yield app
    finally:
        app.close()


def welcome_task(app: conveyor.Conveyor) -> conveyor.Task[[str], str]:
    """The app fixture's task."""
    task: conveyor.Task[[str], str] = app.tasks["signup.welcome"]
    return task


async def jobs_of(app: conveyor.Conveyor) -> list[str]:
    """The args of every stored job, oldest first."""
    broker = app.broker.copy()
    try:
        return [j.args[0] for j in reversed(await broker.list(JobFilter(limit=100)))]
    finally:
        await broker.close()


# -- enqueue inside the application's transaction ----------------------------------------------


async def test_psycopg_rollback_leaves_no_job_and_commit_runs_it(
    app: conveyor.Conveyor, dsn: str
) -> None:
    """With a psycopg connection, the job exists only if the transaction commits."""
    welcome = welcome_task(app)
    with psycopg.connect(dsn) as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("CREATE TEMP TABLE users (name text)")
            job = welcome.options(connection=conn).enqueue("ann")
            assert job.status is Status.QUEUED
        with conn.transaction():
            welcome.options(connection=conn).enqueue("bob")
            app.enqueue("signup.welcome", ["cid"], connection=conn)
            # Not visible to anyone else until the commit.
            assert await jobs_of(app) == []
    assert await jobs_of(app) == ["bob", "cid"]
    assert (await drain_async(app))["succeeded"] == 2
    assert sorted(app.seen) == ["bob", "cid"]  # type: ignore[attr-defined]


async def test_async_psycopg_rollback_and_commit(app: conveyor.Conveyor, dsn: str) -> None:
    """With a psycopg AsyncConnection, enqueue_async joins its transaction."""
    welcome = welcome_task(app)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.transaction(force_rollback=True):
            await welcome.options(connection=conn).enqueue_async("ann")
        async with conn.transaction():
            await welcome.options(connection=conn).enqueue_many_async([conveyor.Call("bob")])
            await app.enqueue_async("signup.welcome", ["cid"], connection=conn)
    assert await jobs_of(app) == ["bob", "cid"]
    assert (await drain_async(app))["succeeded"] == 2


async def test_sqlalchemy_session_rollback_and_commit(app: conveyor.Conveyor, dsn: str) -> None:
    """With a SQLAlchemy Session (or its Connection), the job follows the session's fate."""
    welcome = welcome_task(app)
    engine = sqlalchemy.create_engine(dsn.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with Session(engine) as session:
            session.execute(sqlalchemy.text("SELECT 1"))
            welcome.options(connection=session).enqueue("ann")
            session.rollback()
            welcome.options(connection=session).enqueue("bob")
            session.commit()
        with engine.begin() as connection:
            welcome.options(connection=connection).enqueue("cid")
    finally:
        engine.dispose()
    assert await jobs_of(app) == ["bob", "cid"]
    assert (await drain_async(app))["succeeded"] == 2


async def test_sqlalchemy_async_session_rollback_and_commit(
    app: conveyor.Conveyor, dsn: str
) -> None:
    """With a SQLAlchemy AsyncSession, enqueue_async follows the session's fate."""
    welcome = welcome_task(app)
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+psycopg://"))
    try:
        async with AsyncSession(engine) as session:
            await welcome.options(connection=session).enqueue_async("ann")
            await session.rollback()
            await welcome.options(connection=session).enqueue_async("bob")
            await session.commit()
    finally:
        await engine.dispose()
    assert await jobs_of(app) == ["bob"]


async def test_client_side_cursors_as_django_uses(app: conveyor.Conveyor, dsn: str) -> None:
    """Django's psycopg 3 backend binds parameters client-side (ClientCursor): that works
    too, and a cursor stands for its connection."""
    welcome = welcome_task(app)
    with psycopg.connect(dsn, cursor_factory=psycopg.ClientCursor) as conn:
        with conn.transaction(force_rollback=True):
            welcome.options(connection=conn.cursor()).enqueue("ann")
        with conn.transaction():
            welcome.options(connection=conn, key="welcome:bob").enqueue("bob")
            # The key is held by the uncommitted job: this transaction sees it.
            again = welcome.options(connection=conn, key="welcome:bob").enqueue("bob2")
    assert await jobs_of(app) == ["bob"]
    assert again.record.args == ["bob"]


async def test_notification_leaves_with_the_commit(app: conveyor.Conveyor, dsn: str) -> None:
    """An idle worker is woken by the commit, not before it."""
    broker = app.broker.copy()
    try:
        await broker.consumer("w1", ["default"], 30.0).wait(0.01)  # listening from now on
        waiter = asyncio.create_task(broker.consumer("w1", ["default"], 30.0).wait(30))
        with psycopg.connect(dsn) as conn:
            welcome_task(app).options(connection=conn).enqueue("ann")
            done, _ = await asyncio.wait({waiter}, timeout=0.3)
            assert not done, "woken before the commit"
            conn.commit()
        await asyncio.wait_for(waiter, 5)
    finally:
        await broker.close()


async def test_connection_needs_the_postgres_broker(dsn: str) -> None:
    """Other brokers refuse connection=; the wrong kind of connection is refused clearly."""
    memory = conveyor.Conveyor("memory://")

    @memory.task
    def noop() -> None: ...

    with pytest.raises(ConfigurationError, match="needs the PostgreSQL broker"):
        noop.options(connection=object()).enqueue()
    with pytest.raises(ConfigurationError, match="needs the PostgreSQL broker"):
        await memory.enqueue_async("noop", connection=object())
    memory.close()

    broker = PostgresBroker(dsn + "?schema=unused")
    with psycopg.connect(dsn) as conn, pytest.raises(ConfigurationError, match="enqueue_async"):
        await broker.enqueue_in_async(conn, [make_job()])
    async with await psycopg.AsyncConnection.connect(dsn) as aconn:
        with pytest.raises(ConfigurationError, match=r"enqueue\(\)"):
            broker.enqueue_in(aconn, [make_job()])
    with pytest.raises(ConfigurationError, match="psycopg 3"):
        broker.enqueue_in(object(), [make_job()])


# -- the schema ---------------------------------------------------------------------------------


async def test_many_brokers_create_the_schema_at_once(pg_url: str) -> None:
    """Brokers connecting together to an empty database all succeed, and migrate once."""
    brokers = [PostgresBroker(pg_url) for _ in range(8)]
    try:
        await asyncio.gather(*(b.connect() for b in brokers))
        assert await brokers[0].migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)
    finally:
        await asyncio.gather(*(b.close() for b in brokers))


async def test_a_newer_schema_is_refused(pg_url: str, dsn: str) -> None:
    """A schema written by a later Conveyor is not misread."""
    broker = PostgresBroker(pg_url)
    await broker.connect()
    await broker.close()
    schema = broker.schema
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {schema}.schema_version (version) VALUES (99)")
    with pytest.raises(ConfigurationError, match="version 99, newer"):
        await PostgresBroker(pg_url).connect()


@pytest.mark.parametrize(
    ("query", "message"),
    [("schema=Bad-Name", "lower-case identifier"), ("pool_size=0", "pool_size")],
)
def test_bad_url_options(dsn: str, query: str, message: str) -> None:
    """A bad ``schema`` or ``pool_size`` is a ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=message):
        PostgresBroker(f"{dsn}?{query}")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``conveyor ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_migrate_command(pg_url: str, dsn: str) -> None:
    """``conveyor migrate --sql`` prints a script that creates the schema (twice without
    harm); ``conveyor migrate`` applies it, then finds it up to date."""
    printed = cli("migrate", "--sql", "--url", pg_url)
    assert printed.returncode == 0, printed.stderr
    assert "CREATE TABLE IF NOT EXISTS" in printed.stdout
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(printed.stdout)
        conn.execute(printed.stdout)
    applied = cli("migrate", "--url", pg_url)
    assert applied.returncode == 0, applied.stderr
    assert f"up to date (version {SCHEMA_VERSION})" in applied.stdout

    fresh = pg_url.replace("?schema=", "?schema=m")
    applied = cli("migrate", "--url", fresh)
    assert f"migrated from version 0 to {SCHEMA_VERSION}" in applied.stdout

    other = cli("migrate", "--url", "memory://")
    assert other.returncode == 0
    assert "nothing to migrate" in other.stdout


# -- lost connections ---------------------------------------------------------------------------


@pytest.fixture
async def broker(pg_url: str) -> AsyncIterator[PostgresBroker]:
    """A connected broker on a fresh schema."""
    b = PostgresBroker(pg_url)
    await b.connect()
    try:
        yield b
    finally:
        await b.close()


def lose_answer_of(broker: PostgresBroker, statement: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``statement`` run and commit once, then fail as if the connection dropped."""
    real = broker.rows

    async def rows(name: str, params: Any) -> list[tuple[Any, ...]]:
        result = await real(name, params)
        if name == statement:
            monkeypatch.setattr(broker, "rows", real)
            raise BrokerUnavailable("connection lost (simulated)")
        return result

    monkeypatch.setattr(broker, "rows", rows)


async def test_a_claim_whose_answer_was_lost_is_undone(
    broker: PostgresBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs claimed by a claim whose answer never arrived are claimable again at once by
    the same session's next claim, the attempt uncounted, instead of waiting for their
    lease to expire."""
    [job] = await broker.enqueue([make_job(max_attempts=1)])
    consumer = broker.consumer("w1", ["default"], 30.0)
    lose_answer_of(broker, "claim", monkeypatch)
    with pytest.raises(BrokerUnavailable):
        await consumer.claim(10, time.time())
    [again] = await consumer.claim(10, time.time())
    assert again.id == job.id
    assert again.attempts == 1


async def test_close_undoes_a_claim_whose_answer_was_lost(
    broker: PostgresBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session closed after a claim whose answer was lost puts that claim's jobs back
    as they were, rather than leaving them running until their lease expires."""
    [job] = await broker.enqueue([make_job()])
    consumer = broker.consumer("w1", ["default"], 30.0)
    lose_answer_of(broker, "claim", monkeypatch)
    with pytest.raises(BrokerUnavailable):
        await consumer.claim(10, time.time())
    assert (await must_get(broker, job.id)).status is Status.RUNNING  # it did commit
    await consumer.close()
    stored = await must_get(broker, job.id)
    assert (stored.status, stored.attempts, stored.worker) == (Status.QUEUED, 0, None)


async def test_close_gives_up_on_a_lost_claim_when_the_server_is_gone(
    broker: PostgresBroker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When the lost claim cannot be undone at close, close says so and returns: the jobs
    come back when their lease expires."""
    await broker.enqueue([make_job()])
    consumer = broker.consumer("w1", ["default"], 30.0)
    lose_answer_of(broker, "claim", monkeypatch)
    with pytest.raises(BrokerUnavailable):
        await consumer.claim(10, time.time())

    async def unreachable(name: str, params: Any) -> int:
        raise BrokerUnavailable("connection refused (simulated)")

    monkeypatch.setattr(broker, "count", unreachable)
    await consumer.close()
    assert "could not hand back the jobs of 1 claim(s)" in caplog.text


def count_statements(broker: PostgresBroker, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the statements ``broker`` runs from now on, as they run."""
    asked: list[str] = []
    real = broker.rows

    async def rows(name: str, params: Any) -> list[tuple[Any, ...]]:
        asked.append(name)
        return await real(name, params)

    monkeypatch.setattr(broker, "rows", rows)
    return asked


async def test_an_idle_wait_after_an_empty_claim_asks_nothing_yet_misses_nothing(
    broker: PostgresBroker, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a claim that found nothing, the session's wait relies on the notifications
    instead of querying again, and a job committed between the claim and the wait still
    wakes it."""
    consumer = broker.consumer("w1", ["default"], 30.0)
    await consumer.wait(0.01)  # listening from now on
    assert await consumer.claim(10, time.time()) == []
    asked = count_statements(broker, monkeypatch)
    await consumer.wait(0.05)
    await consumer.wait(0.05)
    assert asked == []

    assert await consumer.claim(10, time.time()) == []
    other = PostgresBroker(pg_url)
    try:
        await other.enqueue([make_job()])
    finally:
        await other.close()
    await asyncio.wait_for(consumer.wait(30), 5)
    assert len(await consumer.claim(10, time.time())) == 1


async def test_sessions_on_one_broker_keep_their_own_looks(
    broker: PostgresBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One session's claim that found nothing lets that session's wait skip its query, not
    another's: each session's cached answers are its own, and close forgets them."""
    drained = broker.consumer("w1", ["default"], 30.0)
    other = broker.consumer("w2", ["default"], 30.0)
    await drained.wait(0.01)  # listening from now on
    assert await drained.claim(10, time.time()) == []
    asked = count_statements(broker, monkeypatch)
    await drained.wait(0.01)
    assert asked == []
    await other.wait(0.01)
    assert asked == ["probe"]
    await drained.close()
    await drained.wait(0.01)
    assert asked == ["probe", "probe"]


async def test_a_session_looks_again_after_its_listener_was_lost(
    broker: PostgresBroker, dsn: str
) -> None:
    """A job committed while the listening connection was down was never notified: the
    session's next wait does not trust what it learned under the lost connection (its
    claim found nothing), and finds the job."""
    consumer = broker.consumer("w1", ["default"], 30.0)
    await consumer.wait(0.01)  # listening from now on
    assert await consumer.claim(10, time.time()) == []
    # This loop stands still until the job is in: the listener cannot listen again before.
    with psycopg.connect(dsn, autocommit=True) as conn:
        [(ended,)] = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE query = %s",
            (f"LISTEN {broker.schema};",),
        ).fetchall()
        assert ended
        [job] = broker.enqueue_in(conn, [make_job()])
    # Noticed while no session waits: none is woken by the loss itself.
    await eventually(lambda: broker.listener.mark() is None)
    await asyncio.wait_for(consumer.wait(30), 5)
    assert [j.id for j in await consumer.claim(10, time.time())] == [job.id]


async def test_workers_ride_out_a_server_restart(
    pg_url: str, postgres_server: PostgresServer
) -> None:
    """Under load, PostgreSQL restarts: the worker and the producer reconnect by
    themselves, and every job runs and succeeds (none lost, none failed)."""
    app = conveyor.Conveyor(pg_url)
    runs: Counter[int] = Counter()

    @app.task(name="load.touch")
    async def touch(n: int) -> None:
        runs[n] += 1
        await asyncio.sleep(0.001)

    async def produce(numbers: range) -> None:
        for n in numbers:
            while True:  # a producer retries through the outage; the key makes it safe
                try:
                    await touch.options(key=f"touch:{n}").enqueue_async(n)
                    break
                except BrokerUnavailable:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.001)

    total = 1500
    await touch.enqueue_many_async([conveyor.Call(n) for n in range(1000)])
    worker = conveyor.Worker(app, concurrency=20, lease=10.0, poll=0.2, grace=5.0)
    running = asyncio.create_task(worker.run())
    try:
        producer = asyncio.create_task(produce(range(1000, total)))
        deadline = time.monotonic() + 20
        while len(runs) < 300:
            assert time.monotonic() < deadline, "the worker did not start"
            await asyncio.sleep(0.01)
        await asyncio.to_thread(postgres_server.restart)
        await asyncio.wait_for(producer, 30)
        deadline = time.monotonic() + 40
        while len(runs) < total:
            assert time.monotonic() < deadline, f"only {len(runs)} of {total} jobs ran"
            await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    reader = app.broker.copy()
    try:
        counts = await reader.counts()
    finally:
        await reader.close()
    assert dict(counts["default"]) == {Status.SUCCEEDED: total}
    assert sorted(runs) == list(range(total))
    await app.close_async()

"""What only the PostgreSQL broker needs for losses and damaged rows (issue 16): schema
version 2 (the ``losses`` column) migrated from a database at version 1 with jobs in it; a
column of the wrong JSON type failed alone at claim; and a claim whose failing of its damaged
rows is lost does not put them back to be claimed again.

The conformance suite (test_losses.py, test_damaged.py) covers the rest on PostgreSQL too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import psycopg
import pytest

from conveyor.brokers.base import JobFilter
from conveyor.brokers.common import DECODE_ERROR
from conveyor.brokers.postgres import SCHEMA_VERSION, PostgresBroker
from conveyor.brokers.postgres_connection import Listener
from conveyor.brokers.postgres_consumer import PostgresConsumer
from conveyor.brokers.sql import queries
from conveyor.errors import BrokerUnavailable
from conveyor.job import Status
from tests.brokers.support import claim, claim_one, make_job, must_get
from tests.servers import PostgresServer


@pytest.fixture
def schema() -> str:
    """A fresh PostgreSQL schema name."""
    return f"t_{uuid.uuid4().hex[:16]}"


async def _execute(dsn: str, sql: str, params: Mapping[str, Any] | None = None) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql.encode(), params)


async def _version_1(dsn: str, schema: str) -> None:
    """A schema as version 1 left it: no ``losses`` column, one queued job in it."""
    sql = {name: text.replace("{schema}", schema) for name, text in queries("postgres").items()}
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        async with conn.transaction():
            await conn.execute(sql["prepare"].encode())
            await conn.execute(sql["migrate_1"].encode())
            await conn.execute(sql["set_version"].encode(), {"version": 1})
        await conn.execute(
            f"INSERT INTO {schema}.jobs VALUES ('0001', 'tests.noop', 'default', '[1]', '{{}}',"
            " 'queued', 0, 0, 1, 0, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0, NULL, false)"
            .encode()
        )  # fmt: skip


async def test_a_version_1_schema_gains_the_losses_column(
    postgres_server: PostgresServer, schema: str
) -> None:
    """Opening a version 1 schema adds ``losses`` (0 for the jobs already there) and records
    version 2; its jobs are read, claimed and lost as on a new schema, and the next broker
    finds nothing to do."""
    dsn = postgres_server.url()
    await _version_1(dsn, schema)
    assert SCHEMA_VERSION == 2
    broker = PostgresBroker(f"{dsn}?schema={schema}")
    try:
        assert await broker.migrate() == (1, 2)
        old = await must_get(broker, "0001")
        assert (old.args, old.losses, old.status) == ([1], 0, Status.QUEUED)
        [new] = await broker.enqueue([make_job()])
        assert (await must_get(broker, new.id)).losses == 0

        now = time.time()
        await claim_one(broker, "0001", now=now, lease=5)
        assert await broker.recover(now + 6) == ["0001"]
        lost = await must_get(broker, "0001")
        assert (lost.status, lost.attempts, lost.losses) == (Status.QUEUED, 0, 1)
    finally:
        await broker.close()
    again = PostgresBroker(f"{dsn}?schema={schema}")
    try:
        assert await again.migrate() == (2, 2)
        assert (await must_get(again, "0001")).losses == 1
    finally:
        await again.close()


@pytest.mark.parametrize(
    ("field", "text"),
    [("args", '"a string"'), ("kwargs", "null"), ("error", '"not an object"'), ("error", "[]")],
)
async def test_a_json_column_of_the_wrong_type_fails_alone(
    postgres_server: PostgresServer, schema: str, field: str, text: str
) -> None:
    """Any JSON column holding the wrong JSON type (a retried job's error among them) fails
    its job alone at claim with a decode error naming the column; reads show a placeholder."""
    dsn = postgres_server.url()
    broker = PostgresBroker(f"{dsn}?schema={schema}")
    try:
        good, bad = await broker.enqueue([make_job(args=[1]), make_job(args=[2])])
        # The column name comes from the parameters above, never from input.
        sql = f"UPDATE {schema}.jobs SET {field} = %(text)s::json WHERE id = %(id)s"
        await _execute(dsn, sql, {"text": text, "id": bad.id})
        shown = await must_get(broker, bad.id)
        assert text in repr(shown)
        assert [j.id for j in await broker.list(JobFilter())] == [bad.id, good.id]

        assert [j.id for j in await claim(broker)] == [good.id]
        failed = await must_get(broker, bad.id)
        assert failed.status is Status.FAILED
        assert failed.error is not None
        assert failed.error.type == DECODE_ERROR
        assert f"stored {field}" in failed.error.message
    finally:
        await broker.close()


class _LosesFailDamaged:
    """The broker's statements, but the answer of the first ``fail_damaged`` is lost: after
    the statement ran (``applied``, as on a connection dropped at its commit) or before."""

    def __init__(self, broker: PostgresBroker, applied: bool) -> None:
        self.broker = broker
        self.applied = applied
        self.lost = 0

    @property
    def listener(self) -> Listener:
        return self.broker.listener

    async def rows(self, name: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        if name == "fail_damaged" and not self.lost:
            self.lost += 1
            if self.applied:
                await self.broker.rows(name, params)
            raise BrokerUnavailable("the answer of fail_damaged was lost")
        return await self.broker.rows(name, params)

    async def count(self, name: str, params: Mapping[str, Any]) -> int:
        return await self.broker.count(name, params)

    async def listen(self) -> None:
        await self.broker.listen()


@pytest.mark.parametrize("applied", [True, False])
async def test_a_lost_failing_of_damaged_rows_does_not_requeue_them(
    postgres_server: PostgresServer, schema: str, applied: bool
) -> None:
    """When failing a claim's damaged row is lost (applied or not), the claim raises and its
    receipt is kept; undoing it (at close, as at the next claim) fails the damaged row for
    good instead of queuing it to be claimed again, and puts the good jobs back uncounted."""
    dsn = postgres_server.url()
    broker = PostgresBroker(f"{dsn}?schema={schema}")
    consumer = PostgresConsumer(_LosesFailDamaged(broker, applied), "w1", ["default"], 30.0)
    try:
        jobs = await broker.enqueue([make_job(args=[i]) for i in range(3)])
        sql = f"UPDATE {schema}.jobs SET args = '{{\"x\": 1}}'::json WHERE id = %(id)s"
        await _execute(dsn, sql, {"id": jobs[1].id})
        with pytest.raises(BrokerUnavailable):
            await consumer.claim(10, time.time())
        await consumer.close()

        failed = await must_get(broker, jobs[1].id)
        assert (failed.status, failed.worker, failed.lease_until) == (Status.FAILED, None, None)
        assert failed.error is not None
        assert failed.error.type == DECODE_ERROR
        for good in (jobs[0], jobs[2]):
            back = await must_get(broker, good.id)
            assert (back.status, back.attempts, back.worker) == (Status.QUEUED, 0, None)
        again = await claim(broker)
        assert sorted(j.id for j in again) == sorted([jobs[0].id, jobs[2].id])
    finally:
        await consumer.close()
        await broker.close()

"""A lost worker costs a job nothing on PostgreSQL too: the worker tests of test_losses.py,
run here on a fresh PostgreSQL schema, and a row whose args are a JSON object failing alone
under a worker while the 20 jobs of its claim run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

import conveyor
from conveyor.brokers.common import DECODE_ERROR
from conveyor.job import Status
from tests.servers import PostgresServer
from tests.worker.support import WAIT, running, until_status

# Collected again in this module, so that they take this module's ``lossy_app``.
from tests.worker.test_losses import (
    test_a_job_whose_worker_died_runs_again_with_retries_0,
    test_a_poison_pill_fails_after_its_limit_while_the_others_run,
)


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh schema in the session's PostgreSQL."""
    return postgres_server.url() + f"?schema=t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def lossy_app(pg_url: str) -> AsyncIterator[conveyor.Conveyor]:
    """An app on a fresh PostgreSQL schema, closed on the test's loop. The tests lose their
    workers through ``app.broker`` on this loop: its connections are closed here too."""
    app = conveyor.Conveyor(pg_url)
    try:
        yield app
    finally:
        await app.broker.close()
        await app.close_async()


async def test_a_damaged_row_fails_alone_under_a_worker(
    lossy_app: conveyor.Conveyor, postgres_server: PostgresServer, pg_url: str
) -> None:
    """One job whose args are a JSON object among 20 good ones fails with a decode error;
    the 20 succeed (their claim is not lost with it)."""
    app = lossy_app

    @app.task
    async def double(n: int) -> int:
        return 2 * n

    jobs = await double.enqueue_many_async([conveyor.Call(n) for n in range(21)])
    schema = pg_url.rsplit("schema=", 1)[1]
    async with await psycopg.AsyncConnection.connect(
        postgres_server.url(), autocommit=True
    ) as conn:
        await conn.execute(
            f"UPDATE {schema}.jobs SET args = '{{\"n\": 7}}'::json WHERE id = %s".encode(),
            (jobs[7].id,),
        )
    async with running(app):
        damaged = await until_status(app, jobs[7].id, Status.FAILED)
        for n, handle in enumerate(jobs):
            if n != 7:
                assert await handle.result_async(timeout=WAIT) == 2 * n
    assert damaged.error is not None
    assert damaged.error.type == DECODE_ERROR


__all__ = [
    "test_a_job_whose_worker_died_runs_again_with_retries_0",
    "test_a_poison_pill_fails_after_its_limit_while_the_others_run",
]

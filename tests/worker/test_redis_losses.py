"""A lost worker costs a job nothing on Redis too: the worker tests of test_losses.py, run
here on a fresh key prefix, and damaged records (a garbage payload, a job hash whose
attempts are not a number) failing alone under a worker while the 20 jobs of their claim
run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis

import conveyor
from conveyor.brokers.common import DECODE_ERROR
from conveyor.brokers.redis import RedisBroker
from conveyor.brokers.redis_wire import parse_url
from conveyor.job import Status
from tests.servers import RedisServer
from tests.worker.support import WAIT, running, until_status

# Collected again in this module, so that they take this module's ``lossy_app``.
from tests.worker.test_losses import (
    test_a_job_whose_worker_died_runs_again_with_retries_0,
    test_a_poison_pill_fails_after_its_limit_while_the_others_run,
)


@pytest.fixture
async def lossy_app(redis_server: RedisServer) -> AsyncIterator[conveyor.Conveyor]:
    """An app on a fresh key prefix of the session's Redis, closed on the test's loop (the
    tests lose their workers through ``app.broker`` on this loop)."""
    app = conveyor.Conveyor(f"{redis_server.url}?prefix=t{uuid.uuid4().hex[:12]}")
    try:
        yield app
    finally:
        await app.broker.close()
        await app.close_async()


@pytest.mark.parametrize(
    ("field", "value"), [("p", "garbage {"), ("p", '{"args": {"n": 7}}'), ("a", "x")]
)
async def test_a_damaged_job_fails_alone_under_a_worker(
    lossy_app: conveyor.Conveyor, field: str, value: str
) -> None:
    """One job whose payload (p) or hash (its attempts) is damaged among 20 good ones fails
    with a decode error; the 20 succeed (their claim is not lost with it)."""
    app = lossy_app

    @app.task
    async def double(n: int) -> int:
        return 2 * n

    jobs = await double.enqueue_many_async([conveyor.Call(n) for n in range(21)])
    broker = app.broker
    assert isinstance(broker, RedisBroker)
    tag = broker._tag("default")
    raw = redis.Redis.from_url(parse_url(broker.url)[0])
    try:
        if field == "p":
            raw.set(f"{tag}:p:{jobs[7].id}", value)
        else:
            raw.hset(f"{tag}:j:{jobs[7].id}", field, value)
    finally:
        raw.close()
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

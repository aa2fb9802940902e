"""Rolling deploys: old and new workers side by side, a task only the new code knows."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest

import conveyor
from conveyor.brokers.base import Broker, WorkerInfo
from conveyor.deploys import pass_on
from conveyor.job import Status
from tests.brokers.support import make_job
from tests.worker.support import WAIT, eventually, running, until_seen, until_status


@pytest.fixture
def old_app(app: conveyor.Conveyor) -> Iterator[conveyor.Conveyor]:
    """An app on the same store as ``app``, running older code: it lacks ``app``'s tasks."""
    old = conveyor.Conveyor(app.url)
    if app.url.startswith("memory:"):
        old.broker = app.broker  # each memory:// app has a store of its own
    try:
        yield old
    finally:
        old.close()


async def test_a_task_only_another_live_worker_knows_waits_for_it(
    app: conveyor.Conveyor,
    old_app: conveyor.Conveyor,
    store: Broker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The old worker, idle, claims the new task's job first (the new worker is busy): it
    hands the job back for a moment, without spending the attempt, until the new worker is
    free to run it."""
    caplog.set_level(logging.WARNING, logger="conveyor.worker")
    hold = asyncio.Event()
    started = asyncio.Event()

    @app.task
    async def busy() -> None:
        started.set()
        await hold.wait()

    @app.task(retries=0)
    async def new_feature(n: int) -> int:
        return n * 2

    busy.enqueue()
    async with running(app, name="new", concurrency=1, queues=["default"]):
        await asyncio.wait_for(started.wait(), WAIT)  # the new worker is full
        # ... and alive in the store's eyes: else the old worker rightly fails the job.
        await until_seen(store, "new")
        async with running(old_app, name="old", concurrency=2, lease=3.0):
            job = new_feature.enqueue(21)
            await eventually(lambda: "handed back" in caplog.text, what="the hand-back")
            record = await until_status(app, job.id, Status.SCHEDULED, Status.QUEUED)
            assert (record.attempts, record.error) == (0, None)
            hold.set()  # the new worker is free
            assert await job.result_async(timeout=WAIT) == 42
    done = (await app.get_job_async(job.id)).record
    assert (done.attempts, done.worker is None or done.worker == "new") == (1, True)
    assert "known to new" in caplog.text


async def test_a_task_no_live_worker_knows_fails_naming_it(
    app: conveyor.Conveyor, old_app: conveyor.Conveyor
) -> None:
    """With no live worker that knows the task, the job fails at once, naming the task."""
    job = old_app.enqueue("tests.worker.nowhere", args=[1])
    async with running(old_app, name="old"):
        with pytest.raises(conveyor.JobFailed) as info:
            await job.result_async(timeout=WAIT)
    assert info.value.error_type == "conveyor.errors.UnknownTask"
    assert "tests.worker.nowhere" in info.value.message


async def test_a_worker_is_alive_for_its_own_lease_not_the_askers(store: Broker) -> None:
    """A worker with a long lease, last seen longer ago than the lease of the worker that
    asks, is alive still: a job of its task goes back for it rather than failing."""
    now = time.time()
    info = WorkerInfo(
        id="new",
        hostname="host-1",
        pid=1,
        queues=["default"],
        concurrency=1,
        started_at=now - 10,
        seen_at=now - 5,  # its next heartbeat is due in five seconds (a third of 30 s)
        lease=30.0,
        tasks=["tests.new_feature"],
    )
    await store.consumer("new", ["default"], 30.0).heartbeat(info, [], now - 5)
    await store.enqueue([make_job("tests.new_feature")])
    old = store.consumer("old", ["default"], 3.0)
    [claimed] = await old.claim(1, time.time())
    assert await pass_on(store, old, claimed)
    record = await store.get(claimed.id)
    assert record is not None
    assert (record.status, record.attempts) == (Status.SCHEDULED, 0)

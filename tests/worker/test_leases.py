"""Leases and fencing: a worker that lost its lease cannot overwrite the new holder's result."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

import conveyor
from conveyor import Status
from conveyor.brokers.base import Broker
from conveyor.brokers.common import LEASE_EXPIRED
from tests.worker.support import (
    WAIT,
    FailingFinishBroker,
    eventually,
    record_of,
    running,
    until_seen,
)


async def test_lost_lease_outcome_is_refused(
    app: conveyor.Conveyor, store: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker paused past its lease has its late outcome refused and logged."""
    caplog.set_level(logging.WARNING, logger="conveyor.worker")
    first_started = asyncio.Event()
    release_first = asyncio.Event()
    attempt = 0

    @app.task(retries=2)
    async def render() -> str:
        nonlocal attempt
        attempt += 1
        if attempt == 1:
            first_started.set()
            await release_first.wait()  # the "paused" first worker
            return "first"
        return "second"

    job = render.enqueue()
    # concurrency=1 keeps the first worker from claiming the job back itself.
    async with running(app, name="w1", concurrency=1) as w1:
        await asyncio.wait_for(first_started.wait(), WAIT)
        # Its first heartbeat (at start) is in; the next is a third of the lease away.
        await until_seen(store, "w1")
        # w1 misses its heartbeats: from the broker's view its lease has long expired.
        assert await store.recover(time.time() + 3600) == [job.id]
        requeued = await record_of(app, job.id)
        # A lost worker does not spend the attempt; the loss is counted apart.
        assert (requeued.status, requeued.attempts, requeued.losses) == (Status.QUEUED, 0, 1)
        assert requeued.error is not None
        assert requeued.error.type == LEASE_EXPIRED
        async with running(app, name="w2"):
            assert await job.result_async(timeout=WAIT) == "second"
        # w1 wakes up and reports its (stale) outcome.
        release_first.set()
        await eventually(lambda: "refused" in caplog.text, what="the refusal to be logged")
    assert f"outcome of job {job.id} refused" in caplog.text
    record = await record_of(app, job.id)
    assert (record.status, record.result, record.attempts) == (Status.SUCCEEDED, "second", 1)
    assert w1.exit_code == 0
    # Counted and logged only as refused: the success is w2's, not w1's.
    assert w1.stats["succeeded"] == 0


async def test_lost_lease_noticed_by_heartbeat_stops_the_task(
    app: conveyor.Conveyor, store: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """When a heartbeat finds the lease lost, the worker stops the task and records nothing."""
    caplog.set_level(logging.WARNING, logger="conveyor.worker")
    started = asyncio.Event()
    stopped = asyncio.Event()

    @app.task(retries=2)
    async def long_job() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    job = long_job.enqueue()
    async with running(app, concurrency=1, lease=0.6) as worker:
        await asyncio.wait_for(started.wait(), WAIT)
        await store.recover(time.time() + 3600)
        # Another worker takes the job over (and keeps it) before w1's next heartbeat.
        [taken] = await store.consumer("other", ["default"], 3600).claim(1, time.time())
        assert taken.id == job.id
        await asyncio.wait_for(stopped.wait(), WAIT)
    assert "lease lost to another worker" in caplog.text
    record = await record_of(app, job.id)
    assert (record.status, record.worker, record.token) == (Status.RUNNING, "other", taken.token)
    assert worker.stats == {"succeeded": 0, "failed": 0, "retried": 0, "cancelled": 0}


async def test_heartbeats_keep_a_long_job_alive(app: conveyor.Conveyor) -> None:
    """A job running longer than its lease is kept: heartbeats renew the lease."""

    @app.task
    async def longer_than_lease() -> str:
        await asyncio.sleep(0.75)  # the work itself: two and a half leases of 0.3 s
        return "done"

    job = longer_than_lease.enqueue()
    async with running(app, lease=0.3):
        assert await job.result_async(timeout=WAIT) == "done"
    assert (await record_of(app, job.id)).attempts == 1


async def test_an_outcome_waiting_to_be_recorded_keeps_its_lease(
    memory_app: conveyor.Conveyor,
) -> None:
    """While the broker refuses an outcome, heartbeats go on renewing the finished job's
    lease, so that no sweep hands it to another worker; once recorded, it ran once."""
    # Memory only: the fault is injected by a subclass of the memory broker.
    app = memory_app
    broker = FailingFinishBroker()
    app.broker = broker
    runs = 0

    @app.task
    def quick() -> str:
        nonlocal runs
        runs += 1
        return "done"

    job = quick.enqueue()
    async with running(app, lease=0.3):
        await eventually(lambda: broker.refusals >= 1, what="a refused outcome")
        first = (await record_of(app, job.id)).lease_until
        assert first is not None
        # Two renewals past the lease it had when it ended: without them, the worker's own
        # sweep would have requeued the job as expired and run it again.
        await until_lease_after(app, job.id, first + 0.3)
        assert (await record_of(app, job.id)).status is Status.RUNNING
        broker.down = False
        assert await job.result_async(timeout=WAIT) == "done"
    record = await record_of(app, job.id)
    assert (runs, record.attempts, record.status) == (1, 1, Status.SUCCEEDED)


async def until_lease_after(app: conveyor.Conveyor, job_id: str, when: float) -> None:
    """Poll until the job's lease runs until after ``when``; fail after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while ((await record_of(app, job_id)).lease_until or 0.0) <= when:
        if time.monotonic() > deadline:
            raise AssertionError(f"the lease of job {job_id} was not renewed past {when}")
        await asyncio.sleep(0.01)

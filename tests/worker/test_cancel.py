"""Cancellation: a waiting job at once, a running one at its worker's next heartbeat."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import conveyor
from conveyor import Status
from tests.worker.support import WAIT, eventually, record_of, run_burst, running, until_status

SHORT_LEASE = 0.6
"""A lease whose heartbeat (every third of it) comes every 0.2 s."""


async def test_cancel_a_queued_job(app: conveyor.Conveyor) -> None:
    """A queued job cancelled before any worker sees it never runs."""
    calls: list[int] = []

    @app.task
    def work(n: int) -> None:
        calls.append(n)

    doomed, kept = work.enqueue(1), work.enqueue(2)
    assert doomed.cancel() is doomed
    assert doomed.status is Status.CANCELLED
    await run_burst(app)
    assert calls == [2]
    with pytest.raises(conveyor.JobCancelled) as info:
        await doomed.result_async(timeout=WAIT)
    assert info.value.job_id == doomed.id
    record = await record_of(app, doomed.id)
    assert (record.status, record.attempts) == (Status.CANCELLED, 0)
    assert (await record_of(app, kept.id)).status is Status.SUCCEEDED


async def test_cancel_a_scheduled_job(app: conveyor.Conveyor) -> None:
    """A delayed job cancelled before its eta never runs, even once it falls due."""
    calls: list[int] = []

    @app.task
    async def work() -> None:
        calls.append(1)

    job = work.options(delay=0.1).enqueue()
    cancelled = await app.cancel_async(job.id)
    assert cancelled.status is Status.CANCELLED
    async with running(app):
        later = work.options(delay=0.15).enqueue()  # a witness due after the cancelled one
        await later.result_async(timeout=WAIT)
    assert calls == [1]
    assert (await record_of(app, job.id)).status is Status.CANCELLED


async def test_cancel_a_running_async_job(app: conveyor.Conveyor) -> None:
    """A running async task is cancelled at the next heartbeat and the job ends cancelled."""
    started = asyncio.Event()
    saw_cancel: list[bool] = []

    @app.task(retries=3)
    async def long_report() -> str:
        started.set()
        try:
            await asyncio.Event().wait()  # runs until cancelled
        except asyncio.CancelledError:
            saw_cancel.append(True)
            raise
        return "never"

    job = long_report.enqueue()
    async with running(app, lease=SHORT_LEASE) as worker:
        await asyncio.wait_for(started.wait(), WAIT)
        flagged = await job.cancel_async()
        assert flagged.status is Status.RUNNING  # flagged; its worker acts on it
        with pytest.raises(conveyor.JobCancelled):
            await job.result_async(timeout=WAIT)
    assert saw_cancel == [True]
    record = await record_of(app, job.id)
    assert (record.status, record.attempts, record.cancel_requested) == (
        Status.CANCELLED,
        1,
        False,
    )
    assert record.finished_at is not None
    assert worker.stats["cancelled"] == 1


async def test_cancel_a_running_sync_job(app: conveyor.Conveyor) -> None:
    """A running sync task is interrupted in its thread; the job ends cancelled."""
    started = threading.Event()
    ended = threading.Event()

    @app.task
    def crunch() -> None:
        started.set()
        try:
            while True:
                time.sleep(0.005)
        finally:
            ended.set()

    job = crunch.enqueue()
    async with running(app, lease=SHORT_LEASE):
        await eventually(started.is_set, what="the sync task to start")
        await job.cancel_async()
        with pytest.raises(conveyor.JobCancelled):
            await job.result_async(timeout=WAIT)
        await eventually(ended.is_set, what="the task's thread to stop")
    assert (await record_of(app, job.id)).status is Status.CANCELLED


async def test_cancel_a_finished_job_changes_nothing(app: conveyor.Conveyor) -> None:
    """Cancelling a succeeded job leaves it succeeded with its result."""

    @app.task
    def answer() -> int:
        return 42

    job = answer.enqueue()
    await run_burst(app)
    assert (await job.cancel_async()).status is Status.SUCCEEDED
    assert await job.result_async(timeout=WAIT) == 42


async def test_worker_keeps_working_after_a_cancel(app: conveyor.Conveyor) -> None:
    """After a running job is cancelled, the worker takes the next job."""
    started = asyncio.Event()

    @app.task
    async def block() -> None:
        started.set()
        await asyncio.Event().wait()

    @app.task
    async def after() -> str:
        return "next"

    job = block.enqueue()
    async with running(app, lease=SHORT_LEASE, concurrency=1):
        await asyncio.wait_for(started.wait(), WAIT)
        follow = after.enqueue()
        await job.cancel_async()
        assert await follow.result_async(timeout=WAIT) == "next"


async def test_cancel_at_heartbeat_beside_a_release_on_stop(app: conveyor.Conveyor) -> None:
    """A running job is cancelled at a heartbeat while another runs on, and that one, past
    the grace period, is handed back without counting the attempt."""
    started: dict[str, asyncio.Event] = {"cancel": asyncio.Event(), "keep": asyncio.Event()}

    @app.task(retries=1)
    async def endless(name: str) -> None:
        started[name].set()
        await asyncio.Event().wait()

    to_cancel = await endless.enqueue_async("cancel")
    to_keep = await endless.enqueue_async("keep")
    async with running(app, lease=0.6, grace=0.2):
        await asyncio.wait_for(started["cancel"].wait(), WAIT)
        await asyncio.wait_for(started["keep"].wait(), WAIT)
        await to_cancel.cancel_async()
        with pytest.raises(conveyor.JobCancelled):
            await to_cancel.result_async(timeout=WAIT)
        running_job = await until_status(app, to_keep.id, Status.RUNNING)
        assert running_job.attempts == 1
    handed_back = await record_of(app, to_keep.id)
    assert (handed_back.status, handed_back.attempts, handed_back.worker) == (
        Status.QUEUED,
        0,
        None,
    )

"""How the worker takes jobs, on every broker: a claim split in two halves, jobs handed to an
idle worker as they are enqueued, and an idle worker that stops while a producer enqueues.

The Redis broker keeps state between a worker's calls (the slots an idle worker offers, the
jobs handed over in a wait); these tests make each path run there, and each must run every
job exactly once.
"""

from __future__ import annotations

import asyncio

import conveyor
from conveyor import Call, Status
from conveyor.worker import CLAIM_SPLIT
from tests.worker.support import WAIT, eventually, record_of, run_burst, running, until_status


async def test_a_full_worker_refilled_by_a_split_claim_runs_each_job_once(
    app: conveyor.Conveyor,
) -> None:
    """When every slot of a full worker frees at once, the claim that refills them goes out
    as two halves at once; each job still runs once, with its own result."""
    release = asyncio.Event()
    runs: list[int] = []

    @app.task
    async def hold(n: int) -> int:
        runs.append(n)
        await release.wait()
        return n

    jobs = await hold.enqueue_many_async([Call(n) for n in range(3 * CLAIM_SPLIT)])
    async with running(app, concurrency=CLAIM_SPLIT) as worker:
        await until_status(app, jobs[CLAIM_SPLIT - 1].id, Status.RUNNING)
        release.set()
        results = [await j.result_async(timeout=WAIT) for j in jobs]
    assert results == list(range(3 * CLAIM_SPLIT))
    assert sorted(runs) == results
    assert worker.stats["succeeded"] == 3 * CLAIM_SPLIT


async def test_jobs_enqueued_to_an_idle_worker_one_by_one_each_run_once(
    app: conveyor.Conveyor,
) -> None:
    """Producers enqueueing one job at a time, all at once, to a worker idle on its queue
    (which the Redis broker hands the jobs to as they come): each runs once."""
    runs: list[int] = []

    @app.task
    async def note(n: int) -> int:
        runs.append(n)
        return n

    async with running(app, concurrency=4) as worker:
        warm = await note.enqueue_async(-1)  # the worker has claimed once and now waits
        assert await warm.result_async(timeout=WAIT) == -1
        jobs = await asyncio.gather(*(note.enqueue_async(n) for n in range(40)))
        assert [await j.result_async(timeout=WAIT) for j in jobs] == list(range(40))
        await eventually(lambda: worker.stats["succeeded"] == 41, what="every outcome")
    assert sorted(runs) == list(range(-1, 40))


async def test_a_job_enqueued_after_an_idle_worker_stopped_waits_for_the_next(
    app: conveyor.Conveyor,
) -> None:
    """An idle worker that stops takes back what it offered producers: a job enqueued just
    after it has stopped stays queued, uncounted, and the next worker runs it."""

    @app.task
    async def echo(n: int) -> int:
        return n

    # A long poll: the slots offered in the idle wait would outlast the test, had the
    # stopping worker not taken them back.
    async with running(app, poll=WAIT * 10) as worker:
        warm = await echo.enqueue_async(0)
        assert await warm.result_async(timeout=WAIT) == 0
    assert worker.stats["succeeded"] == 1
    job = await echo.enqueue_async(1)
    record = await record_of(app, job.id)
    assert (record.status, record.attempts, record.worker) == (Status.QUEUED, 0, None)
    await run_burst(app)
    assert await job.result_async(timeout=WAIT) == 1

"""A lost worker costs a job nothing: a job whose worker died runs again (also with
retries=0), a poison pill fails after its limit while the others run, and a damaged record
fails alone. Every broker runs them."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

import conveyor
from conveyor.brokers.base import Broker
from conveyor.brokers.common import DECODE_ERROR, POISON_PILL
from conveyor.job import MAX_LOSSES, Status
from tests.brokers.damage import plant
from tests.worker.support import WAIT, record_of, running, until_status


async def _lose(store: Broker, job_id: str, worker: str) -> None:
    """A worker "dies" holding ``job_id``: it claims the job and never beats; the lease it
    took has passed once the sweep runs."""
    dead = store.consumer(worker, ["default"], 1.0)
    [held] = await dead.claim(1, time.time())
    assert held.id == job_id
    assert await store.recover(time.time() + 2.0) == [job_id]


async def test_a_job_whose_worker_died_runs_again_with_retries_0(
    app: conveyor.Conveyor, store: Broker, request: pytest.FixtureRequest
) -> None:
    """retries=0: its worker is lost once, a live worker runs it, it succeeds as attempt 1
    with one loss."""

    @app.task(retries=0)
    async def fragile(x: int) -> int:
        return x * 2

    job = await fragile.enqueue_async(21)
    await _lose(store, job.id, "doomed")
    requeued = await record_of(app, job.id)
    assert (requeued.status, requeued.attempts, requeued.losses) == (Status.QUEUED, 0, 1)
    async with running(app):
        assert await job.result_async(timeout=WAIT) == 42
    record = await record_of(app, job.id)
    assert (record.attempts, record.max_attempts, record.losses) == (1, 1, 1)


async def test_a_poison_pill_fails_after_its_limit_while_the_others_run(
    app: conveyor.Conveyor,
    store: Broker,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job whose worker dies each time it runs fails as a poison pill after MAX_LOSSES + 1
    losses (the worker's sweeper logs it so, never "recovered"); 200 others succeed."""
    caplog.set_level(logging.WARNING, logger="conveyor.worker")

    @app.task
    async def fine(n: int) -> int:
        return n

    @app.task
    async def pill() -> None:
        raise AssertionError("never run by a live worker here")

    bad = await pill.enqueue_async()
    for loss in range(MAX_LOSSES):
        await _lose(store, bad.id, f"dead-{loss}")
    # The last loss is found by the worker's own sweeper: its claim lease runs out at once.
    dead = store.consumer(f"dead-{MAX_LOSSES}", ["default"], 0.01)
    assert [j.id for j in await dead.claim(1, time.time())] == [bad.id]
    good = await fine.enqueue_many_async([conveyor.Call(n) for n in range(200)])
    async with running(app, concurrency=20):
        record = await until_status(app, bad.id, Status.FAILED)
        results = [await handle.result_async(timeout=WAIT) for handle in good]
    assert results == list(range(200))
    assert record.error is not None
    assert record.error.type == POISON_PILL
    assert f"lost {MAX_LOSSES + 1} times" in record.error.message
    assert record.losses == MAX_LOSSES + 1
    assert f"failed as a poison pill after {MAX_LOSSES + 1} losses" in caplog.text
    assert "recovered" not in caplog.text


@pytest.mark.parametrize("kind", ["args-not-json", "args-an-object"])
async def test_a_damaged_job_fails_alone_under_a_worker(
    app: conveyor.Conveyor, store: Broker, request: pytest.FixtureRequest, kind: str
) -> None:
    """One job whose stored args do not decode (or decode to the wrong shape) among 20 good
    ones fails with a decode error; the 20 succeed (their claim is not lost with it)."""

    @app.task
    async def double(n: int) -> int:
        return 2 * n

    jobs = await double.enqueue_many_async([conveyor.Call(n) for n in range(21)])
    await plant(store, jobs[7].record, kind)
    async with running(app):
        damaged = await until_status(app, jobs[7].id, Status.FAILED)
        for n, handle in enumerate(jobs):
            if n != 7:
                assert await handle.result_async(timeout=WAIT) == 2 * n
    assert damaged.error is not None
    assert damaged.error.type == DECODE_ERROR


async def test_a_job_lost_with_its_worker_runs_alone(app: conveyor.Conveyor, store: Broker) -> None:
    """A job that was running when its worker was lost runs with no other job beside it: were
    it a poison pill that kills its process, the jobs claimed with it would die with it
    again, and end taken for poison pills in their turn."""
    now_running: set[str] = set()
    seen_together: list[set[str]] = []

    @app.task
    async def work(name: str) -> str:
        now_running.add(name)
        seen_together.append(set(now_running))
        await asyncio.sleep(0.05)
        now_running.discard(name)
        return name

    suspect = work.enqueue("suspect")
    await _lose(store, suspect.id, "lost-worker")
    others = work.enqueue_many([conveyor.Call(f"job-{i}") for i in range(6)])
    async with running(app, concurrency=4):
        assert await suspect.result_async(timeout=WAIT) == "suspect"
        assert [await j.result_async(timeout=WAIT) for j in others] == [
            f"job-{i}" for i in range(6)
        ]
    assert [s for s in seen_together if "suspect" in s] == [{"suspect"}]
    assert max(len(s) for s in seen_together) > 1  # the others did run side by side

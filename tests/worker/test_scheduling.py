"""Order and timing: priorities, delays, uniqueness keys and the concurrency limit."""

from __future__ import annotations

import asyncio
import threading
import time

import conveyor
from conveyor import Call, Status
from tests.worker.support import WAIT, record_of, run_burst, running


async def test_higher_priority_runs_first(app: conveyor.Conveyor) -> None:
    """With one job at a time, jobs run by priority, then oldest first."""
    order: list[str] = []

    @app.task
    def step(name: str) -> None:
        order.append(name)

    step.options(priority=0).enqueue("low-1")
    step.options(priority=9).enqueue("high")
    step.options(priority=-5).enqueue("lowest")
    step.options(priority=5).enqueue("mid")
    step.options(priority=0).enqueue("low-2")
    await run_burst(app, concurrency=1)
    assert order == ["high", "mid", "low-1", "low-2", "lowest"]


async def test_task_priority_is_the_default(app: conveyor.Conveyor) -> None:
    """A task's own priority orders its jobs against other tasks' jobs."""
    order: list[str] = []

    @app.task(priority=3)
    def urgent() -> None:
        order.append("urgent")

    @app.task
    def routine() -> None:
        order.append("routine")

    routine.enqueue()
    urgent.enqueue()
    await run_burst(app, concurrency=1)
    assert order == ["urgent", "routine"]


async def test_delayed_job_does_not_run_before_its_eta(app: conveyor.Conveyor) -> None:
    """A job with a delay waits in the broker until its eta, then runs."""
    ran_at: dict[str, float] = {}

    @app.task
    async def stamp(name: str) -> None:
        ran_at[name] = time.time()

    async with running(app):
        # Once a first job has run, neither the producer nor the worker spends the delays
        # below connecting to a server broker; they are far above a loaded machine's stalls.
        await stamp.enqueue("warm").result_async(timeout=WAIT)
        delayed = stamp.options(delay=0.6).enqueue("delayed")
        at_eta = stamp.options(eta=time.time() + 0.3).enqueue("at")
        now = stamp.enqueue("now")
        assert (delayed.status, at_eta.status) == (Status.SCHEDULED, Status.SCHEDULED)
        # Redis hands a due job straight to a worker idle on its queue: running at once.
        assert now.status in (Status.QUEUED, Status.RUNNING)
        await now.result_async(timeout=WAIT)
        assert (await record_of(app, delayed.id)).status is Status.SCHEDULED
        await delayed.result_async(timeout=WAIT)
        await at_eta.result_async(timeout=WAIT)
    assert ran_at["delayed"] >= delayed.eta
    assert ran_at["at"] >= at_eta.eta
    assert ran_at["now"] < ran_at["at"] < ran_at["delayed"]


async def test_uniqueness_key_returns_the_same_job(app: conveyor.Conveyor) -> None:
    """While a job with a key is unfinished, enqueueing the key again returns that job."""
    calls: list[int] = []

    @app.task
    def sync_account(n: int) -> int:
        calls.append(n)
        return n

    first = sync_account.options(key="account:7").enqueue(1)
    again = sync_account.options(key="account:7").enqueue(2)
    batch = sync_account.options(key="account:7").enqueue_many([Call(3)])
    by_name = app.enqueue(sync_account.name, args=[4], key="account:7")
    other = sync_account.options(key="account:8").enqueue(5)
    assert again.id == batch[0].id == by_name.id == first.id
    assert other.id != first.id
    await run_burst(app)
    assert sorted(calls) == [1, 5]
    assert await again.result_async(timeout=WAIT) == 1
    # Once the job has finished, the key is free again.
    fresh = sync_account.options(key="account:7").enqueue(6)
    assert fresh.id != first.id
    await run_burst(app)
    assert await fresh.result_async(timeout=WAIT) == 6


async def test_concurrency_limit_is_respected(app: conveyor.Conveyor) -> None:
    """Never more than ``concurrency`` jobs run at once, and the limit is reached."""
    running_now = 0
    peak = 0

    @app.task
    async def busy(i: int) -> int:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        await asyncio.sleep(0.02)  # the work itself, so that jobs overlap
        running_now -= 1
        return i

    jobs = busy.enqueue_many([Call(i) for i in range(12)])
    async with running(app, concurrency=3):
        assert [await j.result_async(timeout=WAIT) for j in jobs] == list(range(12))
    assert peak == 3


async def test_sync_concurrency_limit_is_respected(app: conveyor.Conveyor) -> None:
    """Sync tasks in threads also never exceed ``concurrency`` at once."""
    lock = threading.Lock()
    running_now = 0
    peak = 0

    @app.task
    def busy(i: int) -> int:
        nonlocal running_now, peak
        with lock:
            running_now += 1
            peak = max(peak, running_now)
        time.sleep(0.02)  # the work itself, so that jobs overlap
        with lock:
            running_now -= 1
        return i

    jobs = busy.enqueue_many([Call(i) for i in range(8)])
    async with running(app, concurrency=2):
        assert [await j.result_async(timeout=WAIT) for j in jobs] == list(range(8))
    assert peak == 2

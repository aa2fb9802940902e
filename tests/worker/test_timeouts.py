"""Task timeouts: async tasks are cancelled, sync tasks interrupted in their thread."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time

import pytest

import conveyor
from conveyor import Backoff
from conveyor.worker import EXIT_RESTART
from tests.worker.support import WAIT, eventually, record_of, running

NO_WAIT = Backoff(base=0, jitter=False)


async def test_async_task_timeout_is_retried_then_fails(app: conveyor.Conveyor) -> None:
    """An async task over its timeout is cancelled: TaskTimeout, a retry, then failed."""
    cancelled: list[int] = []

    @app.task(timeout=0.1, retries=1, backoff=NO_WAIT)
    async def hang() -> None:
        try:
            await asyncio.Event().wait()  # never set: only the timeout ends this
        except asyncio.CancelledError:
            cancelled.append(1)
            raise

    job = hang.enqueue()
    async with running(app):
        with pytest.raises(conveyor.JobFailed) as info:
            await job.result_async(timeout=WAIT)
    assert info.value.error_type == "conveyor.errors.TaskTimeout"
    assert "ran over its timeout of 0.1s" in info.value.message
    assert hang.name in info.value.message
    assert cancelled == [1, 1]
    assert (await record_of(app, job.id)).attempts == 2


async def test_an_async_task_own_timeout_error_is_not_a_task_timeout(
    app: conveyor.Conveyor,
) -> None:
    """A TimeoutError the task raises itself is recorded as such, not as TaskTimeout."""

    @app.task(timeout=5.0)
    async def upstream_timeout() -> None:
        raise TimeoutError("upstream took too long")

    job = upstream_timeout.enqueue()
    async with running(app):
        with pytest.raises(conveyor.JobFailed) as info:
            await job.result_async(timeout=WAIT)
    assert (info.value.error_type, info.value.message) == ("TimeoutError", "upstream took too long")


async def test_timeout_option_overrides_the_task_timeout(app: conveyor.Conveyor) -> None:
    """options(timeout=...) applies to that job only."""

    @app.task(timeout=5.0)
    async def slow() -> str:
        await asyncio.sleep(0.2)  # the work itself, not a wait for the worker
        return "done"

    quick = slow.options(timeout=0.05).enqueue()
    normal = slow.enqueue()
    async with running(app):
        with pytest.raises(conveyor.JobFailed, match="TaskTimeout"):
            await quick.result_async(timeout=WAIT)
        assert await normal.result_async(timeout=WAIT) == "done"


async def test_sync_task_timeout_interrupts_its_thread(
    app: conveyor.Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    """A sync task spinning in a Python loop is interrupted at its timeout and retried."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    ended: list[threading.Thread] = []

    @app.task(timeout=0.2, retries=1, backoff=NO_WAIT)
    def spin() -> None:
        try:
            while True:
                time.sleep(0.005)
        finally:
            ended.append(threading.current_thread())

    job = spin.enqueue()
    async with running(app) as worker:
        with pytest.raises(conveyor.JobFailed) as info:
            await job.result_async(timeout=WAIT)
        assert info.value.error_type == "conveyor.errors.TaskTimeout"
        assert (await record_of(app, job.id)).attempts == 2
        # Both attempts' threads stopped: the interrupt reached the task's own code.
        await eventually(lambda: len(ended) == 2, what="both spinning threads to stop")
    assert worker.exit_code == 0  # nothing was stuck, so no restart is asked for
    gc.collect()
    assert "never retrieved" not in caplog.text  # the interrupt is expected, not an error


async def test_sync_task_catching_exception_is_still_interrupted(app: conveyor.Conveyor) -> None:
    """A task's own ``except Exception`` does not swallow the timeout interrupt."""
    swallowed: list[str] = []

    @app.task(timeout=0.1)
    def stubborn() -> None:
        while True:
            try:
                time.sleep(0.005)
            except Exception as exc:
                swallowed.append(type(exc).__name__)

    job = stubborn.enqueue()
    async with running(app):
        with pytest.raises(conveyor.JobFailed, match="TaskTimeout"):
            await job.result_async(timeout=WAIT)
    assert swallowed == []


async def test_a_fast_sync_task_is_not_interrupted_late(app: conveyor.Conveyor) -> None:
    """Many sync jobs finishing well within their timeout all succeed."""

    @app.task(timeout=1.0)
    def quick(i: int) -> int:
        return i

    jobs = quick.enqueue_many([conveyor.Call(i) for i in range(50)])
    async with running(app, concurrency=4):
        assert [await j.result_async(timeout=WAIT) for j in jobs] == list(range(50))


async def test_a_sync_task_that_will_not_stop_asks_for_a_restart(
    app: conveyor.Conveyor,
) -> None:
    """A sync task blocked in C ignores the interrupt: the job times out and the worker
    exits with the restart code so that its supervisor replaces the process."""
    release = threading.Event()
    started = threading.Event()

    @app.task(timeout=0.1)
    def blocked_in_c() -> None:
        started.set()
        release.wait()  # a lock wait in C: no bytecode runs to deliver the interrupt

    job = blocked_in_c.enqueue()
    worker = conveyor.Worker(app, poll=0.05, grace=0.5)
    try:
        code = await asyncio.wait_for(worker.run(), WAIT)
    finally:
        release.set()  # let the thread go, so that it does not outlive the test
    assert started.is_set()
    assert code == EXIT_RESTART
    with pytest.raises(conveyor.JobFailed) as info:
        await job.result_async(timeout=WAIT)
    assert info.value.error_type == "conveyor.errors.TaskTimeout"

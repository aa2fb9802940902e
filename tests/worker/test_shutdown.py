"""Stopping a worker: graceful stop, grace exceeded, kill, burst mode."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

import conveyor
from conveyor import Status
from tests.worker.support import WAIT, eventually, record_of, run_burst


async def test_graceful_stop_lets_the_running_job_finish(app: conveyor.Conveyor) -> None:
    """stop() while a job runs: it finishes and is recorded; nothing new is claimed."""
    started = asyncio.Event()
    finish = asyncio.Event()
    calls: list[str] = []

    @app.task
    async def job_body(name: str) -> str:
        calls.append(name)
        started.set()
        await finish.wait()
        return name

    first = job_body.enqueue("first")
    worker = conveyor.Worker(app, concurrency=2, grace=WAIT, poll=0.05)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), WAIT)
    worker.stop()
    second = job_body.enqueue("second")  # after stop(): must not be claimed
    finish.set()
    assert await asyncio.wait_for(run, WAIT) == 0
    assert calls == ["first"]
    assert (await record_of(app, first.id)).status is Status.SUCCEEDED
    assert await first.result_async(timeout=WAIT) == "first"
    second_record = await record_of(app, second.id)
    assert (second_record.status, second_record.attempts) == (Status.QUEUED, 0)


async def test_grace_exceeded_hands_the_job_back(app: conveyor.Conveyor) -> None:
    """A job still running when the grace period ends is released: queued, attempt uncounted."""
    started = asyncio.Event()
    interrupted: list[bool] = []

    @app.task(retries=3)
    async def endless() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            interrupted.append(True)
            raise

    job = endless.enqueue()
    worker = conveyor.Worker(app, grace=0.2, poll=0.05)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), WAIT)
    began = time.monotonic()
    worker.stop()
    assert await asyncio.wait_for(run, WAIT) == 0
    assert time.monotonic() - began >= 0.2
    assert interrupted == [True]
    record = await record_of(app, job.id)
    assert (record.status, record.attempts, record.worker) == (Status.QUEUED, 0, None)
    # Another worker takes it at once.
    started.clear()
    worker2 = conveyor.Worker(app, grace=0.1, poll=0.05)
    run2 = asyncio.create_task(worker2.run())
    await asyncio.wait_for(started.wait(), WAIT)
    assert (await record_of(app, job.id)).attempts == 1
    worker2.kill()
    await asyncio.wait_for(run2, WAIT)


async def test_grace_exceeded_interrupts_a_sync_job(app: conveyor.Conveyor) -> None:
    """A sync job over the grace period is interrupted in its thread and handed back."""
    started = threading.Event()
    ended = threading.Event()

    @app.task
    def spin() -> None:
        started.set()
        try:
            while True:
                time.sleep(0.005)
        finally:
            ended.set()

    job = spin.enqueue()
    worker = conveyor.Worker(app, grace=0.1, poll=0.05)
    run = asyncio.create_task(worker.run())
    await eventually(started.is_set, what="the sync task to start")
    worker.stop()
    assert await asyncio.wait_for(run, WAIT) == 0
    await eventually(ended.is_set, what="the task's thread to stop")
    record = await record_of(app, job.id)
    assert (record.status, record.attempts) == (Status.QUEUED, 0)


async def test_kill_stops_now_and_hands_jobs_back(app: conveyor.Conveyor) -> None:
    """kill() does not wait for the grace period: running jobs are released at once."""
    started = asyncio.Event()

    @app.task
    async def endless(i: int) -> None:
        started.set()
        await asyncio.Event().wait()

    jobs = endless.enqueue_many([conveyor.Call(i) for i in range(3)])
    worker = conveyor.Worker(app, grace=WAIT * 10, poll=0.05)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), WAIT)
    await eventually(lambda: len(worker._running) == 3, what="all three jobs to run")
    began = time.monotonic()
    worker.kill()
    assert await asyncio.wait_for(run, WAIT) == 0
    assert time.monotonic() - began < 2.0
    for job in jobs:
        record = await record_of(app, job.id)
        assert (record.status, record.attempts) == (Status.QUEUED, 0)


async def test_kill_during_a_graceful_stop(
    app: conveyor.Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    """A kill() during a graceful stop (the second Ctrl-C) ends the wait for the grace."""
    caplog.set_level(logging.INFO, logger="conveyor.worker")
    started = asyncio.Event()

    @app.task
    async def endless() -> None:
        started.set()
        await asyncio.Event().wait()

    job = endless.enqueue()
    worker = conveyor.Worker(app, grace=WAIT * 10, poll=0.05)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), WAIT)
    worker.stop()
    await eventually(lambda: "waiting up to" in caplog.text, what="the grace period to begin")
    assert not run.done()
    worker.kill()
    assert await asyncio.wait_for(run, WAIT) == 0
    assert (await record_of(app, job.id)).status is Status.QUEUED


@pytest.mark.parametrize("second", ["stop", "kill"])
async def test_a_second_signal_while_an_idle_wait_ends(app: conveyor.Conveyor, second: str) -> None:
    """SIGINT then SIGTERM, or Ctrl-C twice, to an idle worker: the second call may come
    after the first has ended the wait but before the wait has unwound. It must not raise
    (in a signal handler, that is a traceback in the log); the worker stops cleanly."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        worker = conveyor.Worker(app, poll=WAIT * 10)
        run = asyncio.create_task(worker.run())
        await eventually(lambda: worker._idle_wait is not None, what="the idle wait")
        worker.stop()  # ends the idle wait when its timer fires, in the next turn
        loop.call_later(0, getattr(worker, second))  # a timer due just after that one
        assert await asyncio.wait_for(run, WAIT) == 0
    finally:
        loop.set_exception_handler(None)
    assert errors == []


async def test_stop_before_run_is_honoured(app: conveyor.Conveyor) -> None:
    """stop() called before run() gets going (a SIGTERM at start-up) still stops the worker."""

    @app.task
    def noop() -> None:
        return None

    job = noop.enqueue()
    worker = conveyor.Worker(app, poll=0.05)
    worker.stop()
    assert await asyncio.wait_for(worker.run(), WAIT) == 0
    assert (await record_of(app, job.id)).status is Status.QUEUED


async def test_burst_returns_when_no_work_is_left(app: conveyor.Conveyor) -> None:
    """A burst worker runs every due job and returns; a delayed job is left scheduled."""

    @app.task
    def square(x: int) -> int:
        return x * x

    jobs = square.enqueue_many([conveyor.Call(i) for i in range(20)])
    later = square.options(delay=3600).enqueue(99)
    worker = await run_burst(app, concurrency=4)
    assert worker.stats["succeeded"] == 20
    assert [await j.result_async(timeout=WAIT) for j in jobs] == [i * i for i in range(20)]
    assert (await record_of(app, later.id)).status is Status.SCHEDULED


async def test_burst_with_nothing_to_do_returns_at_once(app: conveyor.Conveyor) -> None:
    """A burst worker on an empty queue returns promptly with exit code 0."""
    began = time.monotonic()
    worker = await run_burst(app)
    assert time.monotonic() - began < 1.0
    assert worker.stats == {"succeeded": 0, "failed": 0, "retried": 0, "cancelled": 0}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be at least 1"),
        ({"lease": 0.1}, "lease must be at least 0.3"),
        ({"queues": []}, "queues must be non-empty"),
        ({"queues": ["a", ""]}, "queues must be non-empty"),
    ],
)
def test_bad_worker_settings(
    app: conveyor.Conveyor, options: dict[str, object], message: str
) -> None:
    """Impossible worker settings raise ConfigurationError."""
    with pytest.raises(conveyor.ConfigurationError, match=message):
        conveyor.Worker(app, **options)  # type: ignore[arg-type]

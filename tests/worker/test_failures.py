"""Failures: retries with backoff, the dead-letter queue, retry_on, Retry, bad results."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import pytest

import conveyor
from conveyor import Backoff, Status
from conveyor.brokers.memory import MemoryBroker
from conveyor.job import JobRecord
from tests.worker.support import (
    WAIT,
    FailingFinishBroker,
    OvertakenOutcomes,
    eventually,
    record_of,
    run_burst,
    running,
    until_status,
)

FAST = Backoff(base=0.02, factor=2.0, max=1.0, jitter=False)
"""Backoff of 20 ms then 40 ms then 80 ms: short enough for tests, long enough to measure."""


async def test_retries_with_backoff_then_success(app: conveyor.Conveyor) -> None:
    """Two failures then a success: three attempts, waiting the backoff in between."""
    starts: list[float] = []

    @app.task(retries=3, backoff=FAST)
    def flaky() -> str:
        starts.append(time.time())
        if len(starts) < 3:
            raise ConnectionError(f"try {len(starts)}")
        return "ok"

    job = flaky.enqueue()
    async with running(app):
        assert await job.result_async(timeout=WAIT) == "ok"
    record = await record_of(app, job.id)
    assert (record.status, record.attempts, record.max_attempts) == (Status.SUCCEEDED, 3, 4)
    assert len(starts) == 3
    assert starts[1] - starts[0] >= 0.02
    assert starts[2] - starts[1] >= 0.04
    assert record.error is None  # "result or error": a success clears the retries' error


async def test_retries_exhausted_fail_the_job(app: conveyor.Conveyor) -> None:
    """When every attempt raises, the job fails with the last error, type and traceback."""
    calls: list[int] = []

    @app.task(retries=2, backoff=FAST)
    async def broken(n: int) -> None:
        calls.append(n)
        raise ValueError(f"bad input: {n} (call {len(calls)})")

    job = broken.enqueue(42)
    async with running(app):
        with pytest.raises(conveyor.JobFailed) as info:
            await job.result_async(timeout=WAIT)
    assert calls == [42, 42, 42]
    failed = info.value
    assert failed.job_id == job.id
    assert (failed.error_type, failed.message) == ("ValueError", "bad input: 42 (call 3)")
    assert "in broken" in failed.traceback
    assert failed.traceback.rstrip().endswith("ValueError: bad input: 42 (call 3)")
    assert f"job {job.id} failed: ValueError: bad input: 42" in str(failed)
    job.refresh()
    assert (job.status, job.attempts) == (Status.FAILED, 3)
    assert job.error is not None
    assert job.error.type == "ValueError"
    assert job.finished_at is not None


async def test_retry_on_limits_the_retried_exceptions(app: conveyor.Conveyor) -> None:
    """An exception outside retry_on fails at once; one inside is retried."""
    seen: list[str] = []

    @app.task(retries=3, backoff=FAST, retry_on=(ConnectionError,))
    def call(kind: str) -> str:
        seen.append(kind)
        if kind == "value" or seen.count(kind) == 1:
            raise ValueError(kind) if kind == "value" else ConnectionError(kind)
        return kind

    value, conn = call.enqueue("value"), call.enqueue("conn")
    async with running(app):
        with pytest.raises(conveyor.JobFailed, match="ValueError"):
            await value.result_async(timeout=WAIT)
        assert await conn.result_async(timeout=WAIT) == "conn"
    assert (await record_of(app, value.id)).attempts == 1
    assert (await record_of(app, conn.id)).attempts == 2


async def test_no_retry_on_fails_at_once(app: conveyor.Conveyor) -> None:
    """An exception in no_retry_on is not retried, whatever retries says."""

    @app.task(retries=5, backoff=FAST, no_retry_on=(KeyError,))
    def lookup(key: str) -> str:
        raise KeyError(key)

    job = lookup.enqueue("missing")
    async with running(app):
        with pytest.raises(conveyor.JobFailed) as info:
            await job.result_async(timeout=WAIT)
    assert info.value.error_type == "KeyError"
    assert (await record_of(app, job.id)).attempts == 1


async def test_retry_with_delay(app: conveyor.Conveyor) -> None:
    """``raise Retry(delay=...)`` runs the job again no sooner than that delay."""
    starts: list[float] = []

    @app.task(retries=1)  # the default backoff would wait a second or more; Retry says 0.1
    async def poll_upstream() -> int:
        starts.append(time.time())
        if len(starts) == 1:
            raise conveyor.Retry(delay=0.1, reason="not ready yet")
        return len(starts)

    job = poll_upstream.enqueue()
    async with running(app):
        waiting = await until_status(app, job.id, Status.SCHEDULED)
        assert waiting.error is not None
        assert (waiting.error.type, waiting.error.message) == (
            "conveyor.retry.Retry",
            "not ready yet",
        )
        assert await job.result_async(timeout=WAIT) == 2
    assert starts[1] - starts[0] >= 0.1
    assert (await record_of(app, job.id)).attempts == 2


async def test_retry_counts_against_retries(app: conveyor.Conveyor) -> None:
    """A task that always asks for a retry fails once its attempts are used up."""
    calls: list[int] = []

    @app.task(retries=2)
    def never_ready() -> None:
        calls.append(1)
        raise conveyor.Retry(delay=0)

    job = never_ready.enqueue()
    async with running(app):
        with pytest.raises(conveyor.JobFailed, match="Retry"):
            await job.result_async(timeout=WAIT)
    assert len(calls) == 3


async def test_non_json_result_fails_without_retry(app: conveyor.Conveyor) -> None:
    """A task returning a value JSON cannot hold fails with SerializationError, no retry."""
    calls: list[int] = []

    @app.task(retries=3, backoff=FAST)
    def make_set() -> set[int]:
        calls.append(1)
        return {1, 2}

    @app.task(retries=3, backoff=FAST)
    async def make_object() -> object:
        calls.append(2)
        return object()

    jobs: list[conveyor.Job[Any]] = [make_set.enqueue(), make_object.enqueue()]
    async with running(app):
        for job in jobs:
            with pytest.raises(conveyor.JobFailed) as info:
                await job.result_async(timeout=WAIT)
            assert info.value.error_type == "conveyor.errors.SerializationError"
            assert job.task in info.value.message
    assert sorted(calls) == [1, 2]
    for job in jobs:
        assert (await record_of(app, job.id)).attempts == 1


async def test_unknown_task_fails_at_once(app: conveyor.Conveyor) -> None:
    """A job for a task the worker does not know fails on its first attempt, named."""

    @app.task
    def known() -> None:
        return None

    job = app.enqueue("billing.charge", args=[1], retries=5)
    assert job.max_attempts == 6
    async with running(app):
        with pytest.raises(conveyor.JobFailed) as info:
            await job.result_async(timeout=WAIT)
    assert info.value.error_type == "conveyor.errors.UnknownTask"
    assert "'billing.charge'" in info.value.message
    assert known.name in info.value.message  # it lists what the worker does know
    assert (await record_of(app, job.id)).attempts == 1


async def test_system_exit_fails_the_job_not_the_worker(app: conveyor.Conveyor) -> None:
    """SystemExit from a sync or async task fails its job; the worker carries on."""

    @app.task(retries=2)
    def quit_sync() -> None:
        raise SystemExit(3)

    @app.task(retries=2)
    async def quit_async() -> None:
        raise SystemExit(4)

    @app.task
    def fine() -> str:
        return "still here"

    async with running(app) as worker:
        for job in (quit_sync.enqueue(), quit_async.enqueue()):
            with pytest.raises(conveyor.JobFailed) as info:
                await job.result_async(timeout=WAIT)
            assert info.value.error_type == "SystemExit"
            assert (await record_of(app, job.id)).attempts == 1
        assert await fine.enqueue().result_async(timeout=WAIT) == "still here"
    assert worker.exit_code == 0
    assert worker.stats == {"succeeded": 1, "failed": 2, "retried": 0, "cancelled": 0}


class FlakyClaimBroker(MemoryBroker):
    """A memory broker whose first claim fails, as a broker restart would (fault injection)."""

    def __init__(self) -> None:
        super().__init__("memory://")
        self.claims = 0

    async def claim_for(
        self, queues: Sequence[str], worker: str, limit: int, lease: float, now: float
    ) -> list[JobRecord]:
        """Fail the first call; behave normally afterwards."""
        self.claims += 1
        if self.claims == 1:
            raise conveyor.BrokerUnavailable("connection reset by peer")
        return await super().claim_for(queues, worker, limit, lease, now)


async def test_worker_survives_a_failing_claim(
    memory_app: conveyor.Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim that raises is logged and retried; the job still runs."""
    # Memory only: the fault is injected by a subclass of the memory broker.
    app = memory_app
    caplog.set_level(logging.ERROR, logger="conveyor.worker")
    broker = FlakyClaimBroker()
    app.broker = broker

    @app.task
    def ping() -> str:
        return "pong"

    job = ping.enqueue()
    async with running(app):
        assert await job.result_async(timeout=WAIT) == "pong"
    assert broker.claims >= 2
    assert "claim failed (BrokerUnavailable: connection reset by peer)" in caplog.text


def _flaky_once(app: conveyor.Conveyor, calls: list[int]) -> conveyor.Task[[], int]:
    """A task that fails its first attempt and retries at once (noting each call in ``calls``),
    then returns how many calls it took."""

    @app.task(retries=1, backoff=Backoff(base=0, jitter=False))
    def once_flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first time")
        return len(calls)

    return once_flaky


async def test_burst_worker_fails_and_retries_in_one_run(app: conveyor.Conveyor) -> None:
    """A burst worker sees a retry due at once and runs it before it returns."""
    calls: list[int] = []
    once_flaky = _flaky_once(app, calls)

    job = once_flaky.enqueue()
    worker = await run_burst(app)
    # Read at once, not waited for: the worker has returned, so the job is done or never.
    record = await record_of(app, job.id)
    assert (record.status, record.result, len(calls)) == (Status.SUCCEEDED, 2, 2)
    assert worker.stats["retried"] == 1
    assert worker.stats["succeeded"] == 1


async def test_a_burst_worker_runs_a_retry_whose_outcome_a_claim_overtook(
    app: conveyor.Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last claim of a burst worker comes back empty while the outcome of a failed
    attempt, a retry due at once, is still on its way to the broker: the worker runs that
    retry before it returns. (A server broker sends them on two connections: either may win.)"""
    calls: list[int] = []
    once_flaky = _flaky_once(app, calls)

    job = await once_flaky.enqueue_async()
    worker = conveyor.Worker(app, burst=True, poll=0.05)
    consumer = worker.broker.consumer
    monkeypatch.setattr(
        worker.broker,
        "consumer",
        lambda *args: OvertakenOutcomes(consumer(*args)),
    )
    assert await asyncio.wait_for(worker.run(), timeout=WAIT) == 0
    record = await record_of(app, job.id)
    assert (record.status, record.attempts, len(calls)) == (Status.SUCCEEDED, 2, 2)


async def test_a_stopping_worker_gives_up_on_an_unreachable_broker(
    memory_app: conveyor.Conveyor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Outcomes that cannot be recorded at shutdown are dropped after a bound, not retried
    forever; the job stays running until its lease expires and it runs again."""
    # Memory only: the fault is injected by a subclass of the memory broker.
    app = memory_app
    monkeypatch.setattr("conveyor.worker.FLUSH_AT_EXIT", 0.3)
    caplog.set_level(logging.ERROR, logger="conveyor.worker")
    broker = FailingFinishBroker()  # down for good
    app.broker = broker

    @app.task
    def ping() -> str:
        return "pong"

    job = ping.enqueue()
    worker = conveyor.Worker(app, lease=5.0)
    runner = asyncio.ensure_future(worker.run())
    await until_status(app, job.id, Status.RUNNING)
    # The job has ended once its outcome is refused (the worker counts only what the broker
    # took, so its stats stay at zero).
    await eventually(lambda: broker.refusals >= 1, what="a refused outcome")
    worker.stop()
    assert await asyncio.wait_for(runner, timeout=WAIT) == 0
    assert "dropping 1 outcomes at shutdown" in caplog.text
    assert (await record_of(app, job.id)).status is Status.RUNNING
    assert worker.stats["succeeded"] == 0

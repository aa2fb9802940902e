"""Helpers shared by the conformance tests: building jobs, claiming, finishing, polling."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import pytest

from conveyor.brokers.base import (
    Broker,
    Consumer,
    Counts,
    HeartbeatReply,
    Lease,
    Outcome,
    WorkerInfo,
)
from conveyor.job import ErrorInfo, JobRecord, Status, new_id

LEASE = 30.0
"""The lease, in seconds, that tests claim with unless they say otherwise."""

ERROR = ErrorInfo(
    "builtins.ValueError",
    "bad input: 42",
    'Traceback (most recent call last):\n  File "t.py", line 1\nValueError: bad input: 42\n',
)
"""A realistic error, to check that an ErrorInfo is stored whole."""


def make_job(
    task: str = "tests.noop",
    *,
    queue: str = "default",
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    priority: int = 0,
    max_attempts: int = 3,
    eta: float | None = None,
    timeout: float | None = None,
    key: str | None = None,
) -> JobRecord:
    """A new job as a producer builds it: a fresh id, due now unless ``eta`` says otherwise."""
    now = time.time()
    return JobRecord(
        id=new_id(),
        task=task,
        queue=queue,
        args=[] if args is None else args,
        kwargs={} if kwargs is None else kwargs,
        priority=priority,
        max_attempts=max_attempts,
        eta=now if eta is None else eta,
        timeout=timeout,
        key=key,
        created_at=now,
    )


def at(value: float) -> Any:
    """Compare a time a broker stored or computed, to the microsecond."""
    return pytest.approx(value, rel=0, abs=1e-6)


def worker_info(
    worker_id: str = "w1", *, seen_at: float, running: list[str] | None = None
) -> WorkerInfo:
    """What a worker reports about itself at ``seen_at``."""
    return WorkerInfo(
        id=worker_id,
        hostname="host-1",
        pid=4321,
        queues=["default", "emails"],
        concurrency=8,
        started_at=seen_at - 100,
        seen_at=seen_at,
        running=[] if running is None else running,
    )


def lease_of(job: JobRecord) -> Lease:
    """The lease a claim of ``job`` gave."""
    return Lease(job.id, job.token)


def outcome(
    job: JobRecord,
    status: Status,
    *,
    finished_at: float,
    result: Any = None,
    error: ErrorInfo | None = None,
    eta: float | None = None,
) -> Outcome:
    """The outcome of the attempt ``job`` (a claimed record) stands for, with its token."""
    if status is Status.FAILED and error is None:
        error = ERROR
    return Outcome(
        id=job.id,
        token=job.token,
        status=status,
        finished_at=finished_at,
        result=msgspec.json.encode(result) if status is Status.SUCCEEDED else None,
        error=error,
        eta=eta,
    )


async def claim(
    broker: Broker,
    queues: Sequence[str] = ("default",),
    *,
    now: float | None = None,
    limit: int = 1000,
    worker: str = "w1",
    lease: float = LEASE,
) -> list[JobRecord]:
    """Claim up to ``limit`` due jobs (at the real time unless ``now`` is given)."""
    now = time.time() if now is None else now
    return await broker.consumer(worker, queues, lease).claim(limit, now)


async def claim_one(
    broker: Broker,
    job_id: str,
    *,
    now: float | None = None,
    queue: str = "default",
    worker: str = "w1",
    lease: float = LEASE,
) -> JobRecord:
    """Claim the job ``job_id``, which the test made the only due job of ``queue``."""
    claimed = await claim(broker, [queue], now=now, limit=1, worker=worker, lease=lease)
    assert [j.id for j in claimed] == [job_id]
    return claimed[0]


async def finished(
    broker: Broker, jobs: Sequence[JobRecord], status: Status, *, finished_at: float
) -> list[JobRecord]:
    """Enqueue ``jobs``, claim them and record ``status`` for each; return them as stored.

    The test makes sure nothing else is due in their queues.
    """
    await broker.enqueue(jobs)
    claimed = await claim(broker, sorted({j.queue for j in jobs}), limit=len(jobs))
    assert {j.id for j in claimed} == {j.id for j in jobs}
    refused = await finish(broker, [outcome(j, status, finished_at=finished_at) for j in claimed])
    assert refused == []
    return [await must_get(broker, j.id) for j in jobs]


async def must_get(broker: Broker, job_id: str) -> JobRecord:
    """The stored job ``job_id``, which must exist."""
    job = await broker.get(job_id)
    assert job is not None, f"job {job_id} is missing"
    return job


def plain_counts(counts: Counts) -> dict[str, dict[str, int]]:
    """Counts as plain dicts without zero entries, to compare with a literal."""
    out: dict[str, dict[str, int]] = {}
    for queue, per in counts.items():
        nonzero = {str(status): n for status, n in per.items() if n}
        if nonzero:
            out[queue] = nonzero
    return out


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0
) -> None:
    """Poll ``predicate`` until it holds; fail when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


def session(
    broker: Broker,
    queues: Sequence[str] = ("default",),
    *,
    worker: str = "w1",
    lease: float = LEASE,
) -> Consumer:
    """A worker's consumer session on ``broker`` (closed by the test when it matters)."""
    return broker.consumer(worker, queues, lease)


async def heartbeat(
    broker: Broker, worker: WorkerInfo, leases: Sequence[Lease], lease: float, now: float
) -> HeartbeatReply:
    """One heartbeat of ``worker`` through a session of its own."""
    return await broker.consumer(worker.id, worker.queues, lease).heartbeat(worker, leases, now)


async def finish(broker: Broker, outcomes: Sequence[Outcome]) -> list[str]:
    """Record ``outcomes`` through a session; return the refused ids."""
    return await session(broker).finish(outcomes)


async def release(broker: Broker, leases: Sequence[Lease], now: float) -> None:
    """Hand ``leases`` back through a session."""
    await session(broker).release(leases, now)


async def enqueue_with(broker: Broker, jobs: Sequence[JobRecord]) -> None:
    """Connect ``broker``, enqueue ``jobs`` and close it (run in another thread's loop)."""
    await broker.connect()
    try:
        await broker.enqueue(jobs)
    finally:
        await broker.close()

"""Helpers of the worker tests: run a worker in the test's loop, poll with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import conveyor
from conveyor.brokers.base import Broker, Consumer, HeartbeatReply, Lease, Outcome, WorkerInfo
from conveyor.brokers.memory import MemoryBroker
from conveyor.job import JobRecord, Status

WAIT = 10.0
"""The longest any test waits for something to happen; far above what it takes."""


async def eventually(check: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.005)


async def until_status(
    app: conveyor.Conveyor, job_id: str, *statuses: Status, timeout: float = WAIT
) -> JobRecord:
    """Poll the broker until the job is in one of ``statuses``; return its record."""
    deadline = time.monotonic() + timeout
    while True:
        record = await record_of(app, job_id)
        if record.status in statuses:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {record.status} after {timeout}s")
        await asyncio.sleep(0.005)


async def record_of(app: conveyor.Conveyor, job_id: str) -> JobRecord:
    """The job's record as the broker has it now (read through the app, on its own loop)."""
    return (await app.get_job_async(job_id)).record


async def until_seen(store: Broker, worker_id: str, timeout: float = WAIT) -> None:
    """Poll the store until the worker ``worker_id`` has reported itself (its first heartbeat,
    which its own thread sends as the worker starts, may come after its first claim)."""
    deadline = time.monotonic() + timeout
    while worker_id not in [w.id for w in await store.workers(time.time(), 3600)]:
        if time.monotonic() > deadline:
            raise AssertionError(f"worker {worker_id}'s first heartbeat never came")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def store_of(app: conveyor.Conveyor) -> AsyncIterator[Broker]:
    """The app's store, connected on the running loop and closed on the way out (the memory
    broker's copy is the app's broker itself, so it sees the same jobs)."""
    broker = app.broker.copy()
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.close()


@asynccontextmanager
async def running(
    app: conveyor.Conveyor, *, grace: float = 2.0, poll: float = 0.05, **options: Any
) -> AsyncIterator[conveyor.Worker]:
    """Run a Worker as a task of the test's loop; stop it and check it ended cleanly."""
    worker = conveyor.Worker(app, grace=grace, poll=poll, **options)
    task = asyncio.create_task(worker.run(), name=f"worker {worker.id}")
    try:
        yield worker
    finally:
        worker.stop()
        # A worker that crashed re-raises here and fails the test.
        await asyncio.wait_for(task, timeout=grace + WAIT)


async def run_burst(app: conveyor.Conveyor, **options: Any) -> conveyor.Worker:
    """Run a burst worker until no due job is left; return it (for its stats)."""
    worker = conveyor.Worker(app, burst=True, poll=0.05, **options)
    assert await asyncio.wait_for(worker.run(), timeout=WAIT) == 0
    return worker


class FailingFinishBroker(MemoryBroker):
    """A memory broker that refuses outcomes while ``down`` is set (from the start), as a
    broker unreachable for writes (fault injection); every other call gets through."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.refusals = 0

    async def record(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Fail while down; then record as usual."""
        if self.down:
            self.refusals += 1
            raise conveyor.BrokerUnavailable("connection refused")
        return await super().record(outcomes)


class OvertakenOutcomes:
    """A worker's session on any broker whose outcomes reach the store only once a claim has
    returned after them: the order PostgreSQL's pool of connections may give a claim and an
    outcome sent at once, made certain. A finish waits ``hold`` seconds at most, so that a
    worker that claims nothing until its outcomes are recorded still gets them recorded."""

    def __init__(self, inner: Consumer, hold: float = 1.0) -> None:
        self.inner = inner
        self.hold = hold
        self._finishing = 0
        self._claimed = asyncio.Event()

    @property
    def worker(self) -> str:
        """The inner session's worker id."""
        return self.inner.worker

    @property
    def queues(self) -> Sequence[str]:
        """The inner session's queues."""
        return self.inner.queues

    @property
    def lease(self) -> float:
        """The inner session's lease."""
        return self.inner.lease

    async def claim(self, limit: int, now: float) -> list[JobRecord]:
        """Claim; let the outcomes sent meanwhile go once the claim has returned."""
        jobs = await self.inner.claim(limit, now)
        if self._finishing:
            self._claimed.set()
        return jobs

    async def finish(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Record ``outcomes`` once a claim has returned after them (or ``hold`` passed)."""
        self._finishing += 1
        self._claimed.clear()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._claimed.wait(), self.hold)
        finally:
            self._finishing -= 1
        return await self.inner.finish(outcomes)

    async def wait(self, timeout: float) -> None:
        """See the inner session."""
        await self.inner.wait(timeout)

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[Lease], now: float
    ) -> HeartbeatReply:
        """See the inner session."""
        return await self.inner.heartbeat(worker, leases, now)

    async def release(self, leases: Sequence[Lease], now: float) -> None:
        """See the inner session."""
        await self.inner.release(leases, now)

    async def close(self) -> None:
        """See the inner session."""
        await self.inner.close()

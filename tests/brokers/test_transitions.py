"""Every broker moves jobs only along ``job.TRANSITIONS``, and uses every move it allows.

One walk through the lifecycle per broker: enqueue (scheduled and queued), claim, finish
(succeeded, a retry later, a retry now, failed, cancelled), release, recovery after lease
expiry, cancel (pending and running) and redrive. Each job's status is read with ``get``
before and after every step; each change seen must be in the table, and by the end each
move of the table must have been seen.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

from conveyor.brokers.base import Broker
from conveyor.job import PENDING, TRANSITIONS, JobRecord, Status
from tests.brokers.support import claim, lease_of, make_job, must_get, outcome, session

S = Status

UNUSED: dict[str, set[tuple[Status, Status]]] = {
    # Its claim takes a due scheduled job straight to running (sql/postgres.sql, claim) and
    # nothing else stores a scheduled job as queued: counts() only shows it so.
    "postgresql": {(S.SCHEDULED, S.QUEUED)},
}
"""Moves of the table a broker never makes, by URL scheme, each with its reason."""
T = TypeVar("T")


class Walk:
    """The jobs of one walk, and the moves seen so far."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.ids: list[str] = []
        self.seen: set[tuple[Status, Status]] = set()

    async def statuses(self) -> dict[str, Status | None]:
        """Each job's status as ``get`` reads it now (None: not stored yet)."""
        return {i: None if (j := await self.broker.get(i)) is None else j.status for i in self.ids}

    async def step(self, name: str, action: Awaitable[T]) -> T:
        """Run ``action``; check and note every status change it made."""
        before = await self.statuses()
        result = await action
        for job_id, status in (await self.statuses()).items():
            old = before[job_id]
            assert status is not None, f"{name}: job {job_id} is missing"
            if old is None:
                assert status in PENDING, f"{name}: job {job_id} was stored {status}"
            elif status is not old:
                assert status in TRANSITIONS[old], f"{name}: job {job_id} went {old} -> {status}"
                self.seen.add((old, status))
        return result

    async def enqueue(self, *jobs: JobRecord) -> None:
        """Enqueue ``jobs`` and watch them from now on."""
        self.ids.extend(j.id for j in jobs)
        await self.step("enqueue", self.broker.enqueue(jobs))

    async def claim(
        self, queue: str, *, now: float, limit: int = 1, lease: float = 30.0
    ) -> list[JobRecord]:
        """Claim from ``queue`` as worker w1."""
        return await self.step(
            "claim", claim(self.broker, [queue], now=now, limit=limit, lease=lease)
        )

    async def finish(
        self, job: JobRecord, status: Status, *, at: float, eta: float | None = None
    ) -> None:
        """Record ``status`` for the attempt ``job`` stands for; it must be applied."""
        out = outcome(job, status, finished_at=at, eta=eta)
        refused = await self.step(f"finish {status}", session(self.broker).finish([out]))
        assert refused == []


def _one(jobs: Sequence[JobRecord]) -> JobRecord:
    assert len(jobs) == 1
    return jobs[0]


async def test_brokers_move_jobs_along_the_transitions_and_use_each_one(broker: Broker) -> None:
    """Every status change the broker makes is in TRANSITIONS, and each one happens."""
    walk = Walk(broker)
    t = time.time()

    # Pending jobs cancelled at once.
    await walk.enqueue(make_job(queue="q-cancel"), make_job(queue="q-cancel", eta=t + 600))
    for job_id in list(walk.ids):
        await walk.step("cancel pending", broker.cancel(job_id, t))

    # Two due scheduled jobs and a claim of one: it runs, and the other is made queued.
    early, later = make_job(queue="q-due", eta=t + 60), make_job(queue="q-due", eta=t + 61)
    await walk.enqueue(early, later)
    ran = await walk.claim("q-due", now=t + 120)
    assert [j.id for j in ran] == [early.id]
    await walk.finish(ran[0], S.SUCCEEDED, at=t + 121)
    await walk.finish(_one(await walk.claim("q-due", now=t + 122)), S.SUCCEEDED, at=t + 123)

    # Retries: one later (scheduled), one at once (queued); then a failure and its redrive.
    await walk.enqueue(make_job(queue="q-retry", max_attempts=3))
    job = _one(await walk.claim("q-retry", now=t))
    await walk.finish(job, S.SCHEDULED, at=t, eta=t + 30)
    job = _one(await walk.claim("q-retry", now=t + 31))
    await walk.finish(job, S.QUEUED, at=t + 31, eta=t + 31)
    job = _one(await walk.claim("q-retry", now=t + 32))
    await walk.finish(job, S.FAILED, at=t + 32)
    await walk.step("redrive", broker.retry_failed([job.id], None, t + 33))
    job = _one(await walk.claim("q-retry", now=t + 34))
    await walk.finish(job, S.CANCELLED, at=t + 35)

    # Release: back to queued; a job asked to cancel while running ends cancelled instead.
    await walk.enqueue(make_job(queue="q-release"))
    job = _one(await walk.claim("q-release", now=t))
    await walk.step("release", session(broker).release([lease_of(job)], t + 1))
    job = _one(await walk.claim("q-release", now=t + 2))
    await walk.step("cancel running", broker.cancel(job.id, t + 3))
    await walk.step("release asked to cancel", session(broker).release([lease_of(job)], t + 4))

    # Lease expiry: queued again (a loss, not a retry: test_losses.py has the poison pill's
    # failure), cancelled when asked.
    await walk.enqueue(make_job(queue="q-lost"), make_job(queue="q-lost"))
    lost = await walk.claim("q-lost", now=t, limit=2, lease=5.0)
    assert len(lost) == 2
    await walk.step("cancel running", broker.cancel(lost[1].id, t + 1))
    await walk.step("recover", broker.recover(t + 10))
    assert [(await must_get(broker, j.id)).status for j in lost] == [S.QUEUED, S.CANCELLED]

    table = {(src, dst) for src, dsts in TRANSITIONS.items() for dst in dsts}
    unused = UNUSED.get(urlsplit(broker.url).scheme, set())
    assert sorted(table - unused - walk.seen) == []

"""finish: recording outcomes, and fencing off workers that lost their lease."""

from __future__ import annotations

import time
from typing import Any

import pytest

from conveyor.brokers import Broker
from conveyor.brokers.base import Outcome
from conveyor.job import ErrorInfo, Status, new_id
from tests.brokers.support import (
    ERROR,
    LEASE,
    at,
    claim,
    claim_one,
    finish,
    lease_of,
    make_job,
    must_get,
    outcome,
    release,
)


@pytest.mark.parametrize(
    "result",
    [{"total": 3, "items": ["a", "b"], "ok": True}, [1, 2.5, None], "text ✓", 0, None],
    ids=["dict", "list", "str", "int", "none"],
)
async def test_succeeded_with_result(broker: Broker, result: Any) -> None:
    """A success is recorded with its finish time; get decodes the JSON result."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    running = await claim_one(broker, job.id, now=now)
    done = outcome(running, Status.SUCCEEDED, finished_at=now + 1, result=result)
    assert await finish(broker, [done]) == []

    stored = await must_get(broker, job.id)
    assert stored.status is Status.SUCCEEDED
    assert stored.result == result
    assert stored.finished_at == at(now + 1)
    assert stored.attempts == 1
    assert stored.error is None


async def test_failed_with_error(broker: Broker) -> None:
    """A failure is recorded with the whole ErrorInfo and its finish time."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    running = await claim_one(broker, job.id, now=now)
    assert await finish(broker, [outcome(running, Status.FAILED, finished_at=now + 1)]) == []

    stored = await must_get(broker, job.id)
    assert stored.status is Status.FAILED
    assert stored.error == ERROR
    assert stored.finished_at == at(now + 1)
    assert await claim(broker, now=now + 1000) == []


async def test_retry_is_scheduled_at_its_eta(broker: Broker) -> None:
    """A retry makes the job scheduled at the given eta with the error kept; it is
    claimable only from that eta, as the next attempt."""
    [job] = await broker.enqueue([make_job(max_attempts=3)])
    now = time.time()
    running = await claim_one(broker, job.id, now=now)
    retry = outcome(running, Status.SCHEDULED, finished_at=now + 1, error=ERROR, eta=now + 60)
    assert await finish(broker, [retry]) == []

    stored = await must_get(broker, job.id)
    assert stored.status is Status.SCHEDULED
    assert stored.eta == at(now + 60)
    assert stored.error == ERROR
    assert stored.attempts == 1
    assert await claim(broker, now=now + 59) == []
    again = await claim_one(broker, job.id, now=now + 61)
    assert again.attempts == 2


async def test_cancelled(broker: Broker) -> None:
    """A cancelled outcome ends the job cancelled."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    running = await claim_one(broker, job.id, now=now)
    assert await finish(broker, [outcome(running, Status.CANCELLED, finished_at=now + 1)]) == []
    stored = await must_get(broker, job.id)
    assert stored.status is Status.CANCELLED
    assert stored.finished_at == at(now + 1)


async def test_a_batch_of_outcomes(broker: Broker) -> None:
    """One finish call applies every outcome of its batch, each to its own job."""
    await broker.enqueue([make_job() for _ in range(4)])
    now = time.time()
    a, b, c, d = await claim(broker, now=now)
    error = ErrorInfo("app.Boom", "boom")
    batch = [
        outcome(a, Status.SUCCEEDED, finished_at=now + 1, result={"n": 1}),
        outcome(b, Status.FAILED, finished_at=now + 1, error=error),
        outcome(c, Status.SCHEDULED, finished_at=now + 1, error=error, eta=now + 30),
        outcome(d, Status.CANCELLED, finished_at=now + 1),
    ]
    assert await finish(broker, batch) == []
    stored = [await must_get(broker, j.id) for j in (a, b, c, d)]
    assert [j.status for j in stored] == [
        Status.SUCCEEDED,
        Status.FAILED,
        Status.SCHEDULED,
        Status.CANCELLED,
    ]
    assert stored[0].result == {"n": 1}
    assert stored[1].error == error
    assert stored[2].error == error


async def test_empty_batch(broker: Broker) -> None:
    """Finishing nothing refuses nothing."""
    assert await finish(broker, []) == []


@pytest.mark.parametrize(
    "late", [Status.SUCCEEDED, Status.FAILED, Status.SCHEDULED, Status.CANCELLED]
)
async def test_fencing_refuses_the_worker_that_lost_its_lease(broker: Broker, late: Status) -> None:
    """Worker A claims, its lease expires and B takes the job over: A's outcome is refused
    and changes nothing, B's is accepted."""
    [job] = await broker.enqueue([make_job(max_attempts=3)])
    now = time.time()
    by_a = await claim_one(broker, job.id, now=now, worker="A", lease=10)
    assert await broker.recover(now + 11) == [job.id]
    by_b = await claim_one(broker, job.id, now=now + 12, worker="B", lease=10)
    assert by_b.token > by_a.token

    eta = now + 100 if late is Status.SCHEDULED else None
    from_a = outcome(by_a, late, finished_at=now + 13, result="from A", eta=eta)
    assert await finish(broker, [from_a]) == [job.id]
    assert await broker.get(job.id) == by_b

    from_b = outcome(by_b, Status.SUCCEEDED, finished_at=now + 14, result="from B")
    assert await finish(broker, [from_b]) == []
    stored = await must_get(broker, job.id)
    assert stored.status is Status.SUCCEEDED
    assert stored.result == "from B"


async def test_refusals_are_per_outcome(broker: Broker) -> None:
    """In one batch the stale outcome is refused and the current one applied."""
    await broker.enqueue([make_job(), make_job()])
    now = time.time()
    stale, current = await claim(broker, now=now)
    await release(broker, [lease_of(stale)], now + 1)
    batch = [
        outcome(stale, Status.SUCCEEDED, finished_at=now + 2),
        outcome(current, Status.SUCCEEDED, finished_at=now + 2),
    ]
    assert await finish(broker, batch) == [stale.id]
    assert (await must_get(broker, stale.id)).status is Status.QUEUED
    assert (await must_get(broker, current.id)).status is Status.SUCCEEDED


async def test_second_outcome_for_one_claim_is_refused(broker: Broker) -> None:
    """Once an outcome is recorded, another with the same token is refused (no double finish)."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    running = await claim_one(broker, job.id, now=now)
    assert await finish(broker, [outcome(running, Status.SUCCEEDED, finished_at=now + 1)]) == []
    first = await must_get(broker, job.id)
    again = outcome(running, Status.FAILED, finished_at=now + 2)
    assert await finish(broker, [again]) == [job.id]
    assert await broker.get(job.id) == first


async def test_outcome_for_a_job_not_running_is_refused(broker: Broker) -> None:
    """A job never claimed, or one that does not exist, takes no outcome."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    never = Outcome(id=job.id, token=job.token, status=Status.SUCCEEDED, finished_at=now)
    missing = Outcome(id=new_id(), token=1, status=Status.SUCCEEDED, finished_at=now)
    assert sorted(await finish(broker, [never, missing])) == sorted([job.id, missing.id])
    assert await broker.get(job.id) == job
    assert await broker.get(missing.id) is None


async def test_recovered_job_refuses_its_old_worker(broker: Broker) -> None:
    """After recovery requeued a job, its old worker's outcome is refused."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    running = await claim_one(broker, job.id, now=now)
    await broker.recover(now + LEASE + 1)
    queued = await must_get(broker, job.id)
    late = outcome(running, Status.SUCCEEDED, finished_at=now + LEASE + 2)
    assert await finish(broker, [late]) == [job.id]
    assert await broker.get(job.id) == queued

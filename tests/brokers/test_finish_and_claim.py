"""finish_and_claim: a busy worker's outcomes and its next claim in one call."""

from __future__ import annotations

import time

from conveyor.brokers import Broker
from conveyor.job import Status
from tests.brokers.support import (
    LEASE,
    at,
    claim,
    claim_one,
    make_job,
    must_get,
    outcome,
)


async def test_records_the_outcomes_then_claims(broker: Broker) -> None:
    """The outcomes are applied as finish applies them, and the next due jobs are claimed
    for the worker as claim claims them."""
    jobs = await broker.enqueue([make_job() for _ in range(4)])
    now = time.time()
    first = await claim(broker, now=now, limit=2)
    assert [j.id for j in first] == [j.id for j in jobs[:2]]

    done = [
        outcome(first[0], Status.SUCCEEDED, finished_at=now + 1, result={"n": 1}),
        outcome(first[1], Status.FAILED, finished_at=now + 1),
    ]
    refused, claimed = await broker.finish_and_claim(
        done, ["default"], worker="w1", limit=5, lease=LEASE, now=now + 1
    )
    assert refused == []
    assert [j.id for j in claimed] == [j.id for j in jobs[2:]]
    for job in claimed:
        assert job.status is Status.RUNNING
        assert job.worker == "w1"
        assert job.attempts == 1
        assert job.lease_until == at(now + 1 + LEASE)

    succeeded, failed = [await must_get(broker, j.id) for j in jobs[:2]]
    assert (succeeded.status, succeeded.result) == (Status.SUCCEEDED, {"n": 1})
    assert failed.status is Status.FAILED
    assert failed.finished_at == at(now + 1)
    for job in claimed:
        assert (await must_get(broker, job.id)).status is Status.RUNNING


async def test_refused_outcomes_are_reported_and_the_claim_still_happens(broker: Broker) -> None:
    """An outcome under a token that is no longer current is refused (the job stays as it
    was); the claim is made all the same."""
    now = time.time()
    late, fresh = await broker.enqueue([make_job(), make_job(eta=now + 2.5)])
    stale = await claim_one(broker, late.id, now=now, lease=1.0)
    await broker.recover(now + 2)  # its lease expired: another worker may take it
    taken = await claim(broker, now=now + 2, limit=1, worker="w2")
    assert [j.id for j in taken] == [late.id]

    refused, claimed = await broker.finish_and_claim(
        [outcome(stale, Status.SUCCEEDED, finished_at=now + 3)],
        ["default"],
        worker="w1",
        limit=5,
        lease=LEASE,
        now=now + 3,
    )
    assert refused == [late.id]
    assert [j.id for j in claimed] == [fresh.id]
    stored = await must_get(broker, late.id)
    assert (stored.status, stored.worker, stored.token) == (Status.RUNNING, "w2", taken[0].token)


async def test_a_retry_due_now_is_claimed_again_by_the_same_call(broker: Broker) -> None:
    """Outcomes come first: a job sent back as queued is due in the claim that follows."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    running = await claim_one(broker, job.id, now=now)
    retry = outcome(running, Status.QUEUED, finished_at=now + 1)
    refused, claimed = await broker.finish_and_claim(
        [retry], ["default"], worker="w1", limit=1, lease=LEASE, now=now + 1
    )
    assert refused == []
    assert [j.id for j in claimed] == [job.id]
    assert claimed[0].attempts == 2
    assert claimed[0].token > running.token
    assert (await must_get(broker, job.id)).error == retry.error


async def test_the_same_outcome_twice_is_refused_once(broker: Broker) -> None:
    """As with finish, a repeat in one batch is refused: the job is no longer running."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    running = await claim_one(broker, job.id, now=now)
    done = outcome(running, Status.SUCCEEDED, finished_at=now + 1)
    refused, claimed = await broker.finish_and_claim(
        [done, done], ["default"], worker="w1", limit=3, lease=LEASE, now=now + 1
    )
    assert (refused, claimed) == ([job.id], [])
    assert (await must_get(broker, job.id)).status is Status.SUCCEEDED


async def test_outcomes_of_other_queues_and_no_slots(broker: Broker) -> None:
    """Outcomes of jobs of queues the claim does not look at are applied too; with no slots
    (limit 0) only the outcomes are, and nothing is claimed."""
    mail, report, other = await broker.enqueue(
        [make_job(queue="mail"), make_job(queue="reports"), make_job(queue="reports")]
    )
    now = time.time()
    running = await claim_one(broker, mail.id, queue="mail", now=now)
    refused, claimed = await broker.finish_and_claim(
        [outcome(running, Status.SUCCEEDED, finished_at=now + 1)],
        ["reports"],
        worker="w1",
        limit=1,
        lease=LEASE,
        now=now + 1,
    )
    assert refused == []
    assert [j.id for j in claimed] == [report.id]
    assert (await must_get(broker, mail.id)).status is Status.SUCCEEDED

    refused, claimed = await broker.finish_and_claim(
        [outcome(claimed[0], Status.SUCCEEDED, finished_at=now + 2)],
        ["reports"],
        worker="w1",
        limit=0,
        lease=LEASE,
        now=now + 2,
    )
    assert (refused, claimed) == ([], [])
    assert (await must_get(broker, report.id)).status is Status.SUCCEEDED
    assert (await must_get(broker, other.id)).status is Status.QUEUED


async def test_no_outcomes_is_a_claim(broker: Broker) -> None:
    """With no outcomes it is a plain claim."""
    [job] = await broker.enqueue([make_job()])
    refused, claimed = await broker.finish_and_claim(
        [], ["default"], worker="w1", limit=2, lease=LEASE, now=time.time()
    )
    assert refused == []
    assert [j.id for j in claimed] == [job.id]

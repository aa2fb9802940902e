"""claim: which jobs, in which order, and what a claim records."""

from __future__ import annotations

import time

import msgspec

from conveyor.brokers import Broker
from conveyor.job import Status
from tests.brokers.support import (
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


async def test_priority_then_oldest_eta(broker: Broker) -> None:
    """Higher priority first, then oldest eta, whatever the order of enqueueing."""
    now = time.time()
    a = make_job(priority=0, eta=now - 30)
    b = make_job(priority=5, eta=now - 10)
    c = make_job(priority=0, eta=now - 50)
    d = make_job(priority=5, eta=now - 20)
    e = make_job(priority=-1, eta=now - 100)
    await broker.enqueue([a, b])
    await broker.enqueue([c, d, e])
    first = await claim(broker, limit=2)
    rest = await claim(broker, limit=10)
    assert [j.id for j in first] == [d.id, b.id]
    assert [j.id for j in rest] == [c.id, a.id, e.id]


async def test_order_spans_the_listed_queues(broker: Broker) -> None:
    """Priority then eta decide across all the queues of one claim."""
    now = time.time()
    x = make_job(queue="q1", priority=1, eta=now - 10)
    y = make_job(queue="q2", priority=3, eta=now - 5)
    z = make_job(queue="q3", priority=1, eta=now - 20)
    w = make_job(queue="q2", priority=1, eta=now - 15)
    await broker.enqueue([x, y, z, w])
    claimed = await claim(broker, ["q1", "q2", "q3"])
    assert [j.id for j in claimed] == [y.id, z.id, w.id, x.id]


async def test_only_listed_queues(broker: Broker) -> None:
    """Jobs of queues a claim does not name stay where they are."""
    mine = make_job(queue="mine")
    other = make_job(queue="other", priority=100)
    await broker.enqueue([mine, other])
    assert [j.id for j in await claim(broker, ["mine", "absent"])] == [mine.id]
    assert (await must_get(broker, other.id)).status is Status.QUEUED
    assert [j.id for j in await claim(broker, ["other"])] == [other.id]


async def test_limit(broker: Broker) -> None:
    """A claim takes at most ``limit`` jobs, and nothing once none is due."""
    jobs = [make_job() for _ in range(5)]
    await broker.enqueue(jobs)
    assert await claim(broker, limit=0) == []
    assert len(await claim(broker, limit=2)) == 2
    assert len(await claim(broker, limit=10)) == 3
    assert await claim(broker, limit=10) == []


async def test_running_job_is_not_claimed_again(broker: Broker) -> None:
    """A job is claimed once; a second claim does not return it while it runs."""
    [job] = await broker.enqueue([make_job()])
    await claim_one(broker, job.id, worker="w1")
    assert await claim(broker, worker="w2") == []


async def test_delayed_job_is_claimed_only_from_its_eta(broker: Broker) -> None:
    """A scheduled job is not claimed before its eta, and is claimed after it."""
    eta = time.time() + 100
    [job] = await broker.enqueue([make_job(eta=eta)])
    assert job.status is Status.SCHEDULED
    assert await claim(broker, now=eta - 1) == []
    assert (await must_get(broker, job.id)).status is Status.SCHEDULED
    claimed = await claim_one(broker, job.id, now=eta + 1)
    assert claimed.status is Status.RUNNING


async def test_due_scheduled_job_competes_by_priority(broker: Broker) -> None:
    """A scheduled job that fell due is ordered with the queued ones by priority and eta."""
    now = time.time()
    queued = make_job(priority=1, eta=now - 10)
    scheduled = make_job(priority=2, eta=now + 100)
    await broker.enqueue([queued, scheduled])
    claimed = await claim(broker, now=now + 101)
    assert [j.id for j in claimed] == [scheduled.id, queued.id]


async def test_claim_records_the_attempt(broker: Broker) -> None:
    """A claim marks the job running with attempts + 1, a new token, worker, start, lease."""
    [job] = await broker.enqueue([make_job(args=["x"], max_attempts=4)])
    now = time.time() + 1
    claimed = await claim_one(broker, job.id, now=now, worker="host:1234:ab", lease=12.5)
    assert claimed.status is Status.RUNNING
    assert claimed.attempts == job.attempts + 1 == 1
    assert claimed.token > job.token
    assert claimed.worker == "host:1234:ab"
    assert claimed.started_at == at(now)
    assert claimed.lease_until == at(now + 12.5)
    assert claimed.finished_at is None
    assert await broker.get(job.id) == claimed
    unchanged = msgspec.structs.replace(
        claimed,
        status=job.status,
        attempts=job.attempts,
        token=job.token,
        worker=job.worker,
        started_at=job.started_at,
        lease_until=job.lease_until,
    )
    assert unchanged == job


async def test_token_increases_with_every_claim(broker: Broker) -> None:
    """Each claim of a job gets a token greater than any before it: after release,
    after recovery of an expired lease and after a retry."""
    [job] = await broker.enqueue([make_job(max_attempts=10)])
    now = time.time()
    tokens = [job.token]

    first = await claim_one(broker, job.id, now=now)
    tokens.append(first.token)
    await release(broker, [lease_of(first)], now)

    second = await claim_one(broker, job.id, now=now + 1)
    tokens.append(second.token)
    assert await broker.recover(now + 2 + LEASE) == [job.id]

    third = await claim_one(broker, job.id, now=now + 3 + LEASE)
    tokens.append(third.token)
    retry = outcome(third, Status.SCHEDULED, finished_at=now + 4 + LEASE, eta=now + 5 + LEASE)
    assert await finish(broker, [retry]) == []

    fourth = await claim_one(broker, job.id, now=now + 6 + LEASE)
    tokens.append(fourth.token)
    assert tokens == sorted(set(tokens)), tokens

"""Leases: heartbeat, the worker registry, recovery of expired leases, release."""

from __future__ import annotations

import time

from conveyor.brokers import Broker
from conveyor.brokers.base import HeartbeatReply, Lease
from conveyor.job import Status, new_id
from tests.brokers.support import (
    LEASE,
    at,
    claim,
    claim_one,
    finish,
    heartbeat,
    lease_of,
    make_job,
    must_get,
    outcome,
    release,
    session,
    worker_info,
)


async def test_heartbeat_extends_held_leases(broker: Broker) -> None:
    """A heartbeat moves a held lease to now + lease, so recovery leaves the job alone."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    running = await claim_one(broker, job.id, now=now, lease=10)
    reply = await heartbeat(broker, worker_info(seen_at=now + 5), [lease_of(running)], 10, now + 5)
    assert reply == HeartbeatReply(lost=[], cancel=[])
    assert (await must_get(broker, job.id)).lease_until == at(now + 15)
    assert await broker.recover(now + 12) == []
    assert (await must_get(broker, job.id)).status is Status.RUNNING
    assert await broker.recover(now + 16) == [job.id]


async def test_heartbeat_with_a_stale_token_is_lost(broker: Broker) -> None:
    """A heartbeat with an old token reports the lease lost and leaves the new holder's alone."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    old = await claim_one(broker, job.id, now=now, worker="w1")
    assert await broker.recover(now + LEASE + 1) == [job.id]
    new = await claim_one(broker, job.id, now=now + LEASE + 2, worker="w2")

    late = now + LEASE + 3
    reply = await heartbeat(broker, worker_info("w1", seen_at=late), [lease_of(old)], LEASE, late)
    assert reply == HeartbeatReply(lost=[job.id], cancel=[])
    assert await broker.get(job.id) == new


async def test_heartbeat_reports_finished_and_missing_jobs_lost(broker: Broker) -> None:
    """Leases of finished or unknown jobs are lost; the held one in the same batch is kept."""
    await broker.enqueue([make_job(), make_job()])
    now = time.time()
    held, done = await claim(broker, now=now)
    await finish(broker, [outcome(done, Status.SUCCEEDED, finished_at=now + 1)])
    missing = Lease(new_id(), 1)

    leases = [lease_of(held), lease_of(done), missing]
    reply = await heartbeat(broker, worker_info(seen_at=now + 2), leases, LEASE, now + 2)
    assert sorted(reply.lost) == sorted([done.id, missing.id])
    assert reply.cancel == []
    assert (await must_get(broker, held.id)).lease_until == at(now + 2 + LEASE)


async def test_heartbeat_reports_cancel_requests(broker: Broker) -> None:
    """A held job flagged for cancellation is reported to cancel, and its lease still extended."""
    await broker.enqueue([make_job(), make_job()])
    now = time.time()
    keep, stop = await claim(broker, now=now)
    await broker.cancel(stop.id, now + 1)

    leases = [lease_of(keep), lease_of(stop)]
    reply = await heartbeat(broker, worker_info(seen_at=now + 2), leases, LEASE, now + 2)
    assert reply == HeartbeatReply(lost=[], cancel=[stop.id])
    for job in (keep, stop):
        assert (await must_get(broker, job.id)).lease_until == at(now + 2 + LEASE)


async def test_heartbeat_records_the_worker(broker: Broker) -> None:
    """workers() lists the latest report of each worker seen within the ttl."""
    now = time.time()
    assert await broker.workers(now, 60) == []
    first = worker_info("w1", seen_at=now)
    await heartbeat(broker, first, [], LEASE, now)
    assert await broker.workers(now, 60) == [first]

    later = worker_info("w1", seen_at=now + 10, running=["job-a", "job-b"])
    other = worker_info("w2", seen_at=now + 10)
    await heartbeat(broker, later, [], LEASE, now + 10)
    await heartbeat(broker, other, [], LEASE, now + 10)
    assert sorted(await broker.workers(now + 10, 60), key=lambda w: w.id) == [later, other]


async def test_silent_workers_age_out(broker: Broker) -> None:
    """A worker whose last heartbeat is older than the ttl is not listed."""
    now = time.time()
    await heartbeat(broker, worker_info("old", seen_at=now), [], LEASE, now)
    fresh = worker_info("fresh", seen_at=now + 50)
    await heartbeat(broker, fresh, [], LEASE, now + 50)
    assert await broker.workers(now + 70, 60) == [fresh]
    assert await broker.workers(now + 200, 60) == []


async def test_recover_cancels_a_job_asked_to_cancel(broker: Broker) -> None:
    """An expired lease on a job flagged for cancellation ends it cancelled."""
    [job] = await broker.enqueue([make_job(max_attempts=3)])
    now = time.time()
    await claim_one(broker, job.id, now=now, lease=10)
    await broker.cancel(job.id, now + 1)
    assert await broker.recover(now + 11) == [job.id]
    assert (await must_get(broker, job.id)).status is Status.CANCELLED
    assert await claim(broker, now=now + 1000) == []


async def test_recover_leaves_live_leases_alone(broker: Broker) -> None:
    """Only expired leases are recovered; a job whose lease runs on is untouched."""
    await broker.enqueue([make_job(), make_job()])
    now = time.time()
    short, long_ = await claim(broker, now=now, limit=1, lease=5) + await claim(
        broker, now=now, limit=1, lease=50
    )
    assert await broker.recover(now + 1) == []
    assert await broker.recover(now + 6) == [short.id]
    assert await broker.get(long_.id) == long_


async def test_release_gives_the_job_back_without_counting(broker: Broker) -> None:
    """A released job is queued at once with the attempt uncounted, and claimable at once."""
    [job] = await broker.enqueue([make_job(max_attempts=1)])
    now = time.time()
    running = await claim_one(broker, job.id, now=now, worker="w1")
    await release(broker, [lease_of(running)], now + 1)

    back = await must_get(broker, job.id)
    assert back.status is Status.QUEUED
    assert back.attempts == 0
    again = await claim_one(broker, job.id, now=now + 1, worker="w2")
    assert again.attempts == 1
    assert again.worker == "w2"
    assert again.token > running.token


async def test_release_with_a_delay_schedules_the_job_without_counting(broker: Broker) -> None:
    """A job handed back with a delay (for a worker that knows its task) is scheduled at
    now + delay, the attempt uncounted: no claim takes it before, one takes it after."""
    [job] = await broker.enqueue([make_job(max_attempts=1)])
    now = time.time()
    running = await claim_one(broker, job.id, now=now, worker="w1")
    await session(broker, worker="w1").release([lease_of(running)], now + 1, delay=5.0)

    back = await must_get(broker, job.id)
    assert (back.status, back.attempts, back.eta) == (Status.SCHEDULED, 0, at(now + 6))
    assert await claim(broker, now=now + 5.5) == []
    again = await claim_one(broker, job.id, now=now + 6, worker="w2")
    assert (again.attempts, again.worker) == (1, "w2")


async def test_release_with_a_stale_token_changes_nothing(broker: Broker) -> None:
    """A worker that lost its lease cannot hand back the job its successor holds."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    old = await claim_one(broker, job.id, now=now, worker="w1")
    await broker.recover(now + LEASE + 1)
    new = await claim_one(broker, job.id, now=now + LEASE + 2, worker="w2")
    await release(broker, [lease_of(old)], now + LEASE + 3)
    assert await broker.get(job.id) == new


async def test_released_lease_is_dead(broker: Broker) -> None:
    """After release, the old token is refused by finish and lost to heartbeat."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    running = await claim_one(broker, job.id, now=now)
    await release(broker, [lease_of(running)], now + 1)
    reply = await heartbeat(
        broker, worker_info(seen_at=now + 2), [lease_of(running)], LEASE, now + 2
    )
    assert reply.lost == [job.id]
    done = outcome(running, Status.SUCCEEDED, finished_at=now + 2)
    assert await finish(broker, [done]) == [job.id]
    assert (await must_get(broker, job.id)).status is Status.QUEUED


async def test_release_of_a_job_asked_to_cancel_cancels_it(broker: Broker) -> None:
    """A job handed back at shutdown after a cancel request is cancelled, not run again."""
    [job] = await broker.enqueue([make_job(key="k")])
    now = time.time()
    running = await claim_one(broker, job.id, now=now)
    await broker.cancel(job.id, now + 1)
    await release(broker, [lease_of(running)], now + 2)
    back = await must_get(broker, job.id)
    assert back.status is Status.CANCELLED
    assert back.finished_at == at(now + 2)
    assert await claim(broker, now=now + 3) == []
    [again] = await broker.enqueue([make_job(key="k")])
    assert again.id != job.id  # the key was freed

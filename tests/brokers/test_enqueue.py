"""enqueue: batches, stored fields, scheduled or queued, uniqueness keys."""

from __future__ import annotations

import time

import msgspec
import pytest

from conveyor.brokers import Broker, from_url
from conveyor.brokers.base import JobFilter
from conveyor.job import JobRecord, Status, new_id
from tests.brokers.support import claim, claim_one, finish, make_job, must_get, outcome


async def test_broker_satisfies_the_protocol(broker: Broker, broker_url: str) -> None:
    """Every broker is a Broker and keeps the URL it was made from; so is its copy."""
    assert isinstance(broker, Broker)
    assert broker.url == broker_url
    assert isinstance(broker.copy(), Broker)
    assert broker.copy().url == broker_url


async def test_copy_and_reconnect_share_the_store(broker: Broker) -> None:
    """A copy sees the jobs of the store, and a closed broker connected again still does."""
    [job] = await broker.enqueue([make_job()])
    other = broker.copy()
    await other.connect()
    try:
        assert await other.get(job.id) == job
    finally:
        await other.close()
    await broker.close()
    await broker.connect()
    assert await broker.get(job.id) == job


async def test_separate_objects_share_a_durable_store(shared_url: str) -> None:
    """Two brokers made from one URL of a shared store see the same jobs."""
    one, two = from_url(shared_url), from_url(shared_url)
    await one.connect()
    await two.connect()
    try:
        [job] = await one.enqueue([make_job()])
        assert await two.get(job.id) == job
    finally:
        await one.close()
        await two.close()


async def test_empty_batch(broker: Broker) -> None:
    """Enqueueing nothing stores nothing and returns an empty list."""
    assert await broker.enqueue([]) == []
    assert await broker.list(JobFilter()) == []


async def test_batch_is_returned_in_order(broker: Broker) -> None:
    """A batch is stored whole and returned in the order given, whatever the queues and etas."""
    now = time.time()
    jobs = [
        make_job(queue="a", eta=now + 3600),
        make_job(queue="b", priority=9),
        make_job(queue="a", eta=now - 60),
        make_job(queue="c", priority=-3),
        make_job(queue="b", eta=now + 60),
    ]
    stored = await broker.enqueue(jobs)
    assert [j.id for j in stored] == [j.id for j in jobs]
    for job in jobs:
        assert (await must_get(broker, job.id)).queue == job.queue


async def test_every_field_round_trips(broker: Broker) -> None:
    """Every field a producer sets is stored as given; the rest start empty."""
    now = time.time()
    job = JobRecord(
        id=new_id(),
        task="reports.build_monthly",
        queue="reports",
        args=[1, "two", 3.5, None, True, [1, [2]], {"k": "v"}, "héllo ✓"],
        kwargs={"nested": {"a": [1, {"b": None}]}, "n": -7, "big": 2**53, "f": 0.1},
        priority=7,
        max_attempts=5,
        eta=now - 12.345678,
        timeout=90.5,
        key="report:2024-05",
        created_at=now - 20.123456,
    )
    expected = msgspec.structs.replace(job, status=Status.QUEUED)
    [stored] = await broker.enqueue([job])
    assert stored == expected
    assert await broker.get(job.id) == expected
    assert await broker.list(JobFilter()) == [expected]
    assert stored.started_at is None
    assert stored.finished_at is None
    assert stored.result is None
    assert stored.error is None
    assert stored.worker is None
    assert stored.lease_until is None
    assert stored.attempts == 0
    assert stored.cancel_requested is False


async def test_status_follows_eta(broker: Broker) -> None:
    """A job due in the future is scheduled; a job due now or in the past is queued."""
    now = time.time()
    later, past, due_now = await broker.enqueue(
        [make_job(eta=now + 3600), make_job(eta=now - 3600), make_job()]
    )
    assert later.status is Status.SCHEDULED
    assert past.status is Status.QUEUED
    assert due_now.status is Status.QUEUED
    assert (await must_get(broker, later.id)).status is Status.SCHEDULED
    assert (await must_get(broker, past.id)).status is Status.QUEUED


async def test_jobs_without_key_are_never_merged(broker: Broker) -> None:
    """Jobs with no key are all stored, even when otherwise identical."""
    stored = await broker.enqueue([make_job(args=[1]), make_job(args=[1])])
    assert len({j.id for j in stored}) == 2
    assert len(await broker.list(JobFilter())) == 2


@pytest.mark.parametrize("holder", [Status.SCHEDULED, Status.QUEUED, Status.RUNNING])
async def test_key_returns_the_unfinished_holder(broker: Broker, holder: Status) -> None:
    """Enqueueing a key held by a scheduled, queued or running job returns that job."""
    eta = time.time() + 3600 if holder is Status.SCHEDULED else None
    [first] = await broker.enqueue([make_job(key="k", eta=eta, args=[1])])
    if holder is Status.RUNNING:
        first = await claim_one(broker, first.id)
    assert first.status is holder

    [second] = await broker.enqueue([make_job(key="k", args=[2])])
    assert second == first
    assert [j.id for j in await broker.list(JobFilter())] == [first.id]


async def test_key_within_one_batch(broker: Broker) -> None:
    """In one batch, a repeated key returns the first job in the later places."""
    jobs = [make_job(key="k", args=[1]), make_job(args=[2]), make_job(key="k", args=[3])]
    stored = await broker.enqueue(jobs)
    assert [j.id for j in stored] == [jobs[0].id, jobs[1].id, jobs[0].id]
    assert stored[2].args == [1]
    assert len(await broker.list(JobFilter())) == 2


async def test_different_keys_do_not_collide(broker: Broker) -> None:
    """Distinct keys give distinct jobs."""
    stored = await broker.enqueue([make_job(key="a"), make_job(key="b")])
    assert len({j.id for j in stored}) == 2


@pytest.mark.parametrize("end", [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED])
async def test_key_is_free_once_the_holder_finished(broker: Broker, end: Status) -> None:
    """Once the job holding a key has finished, the key makes a new job again."""
    [first] = await broker.enqueue([make_job(key="k")])
    if end is Status.CANCELLED:
        await broker.cancel(first.id, time.time())
    else:
        running = await claim_one(broker, first.id)
        assert await finish(broker, [outcome(running, end, finished_at=time.time())]) == []
    done = await must_get(broker, first.id)
    assert done.status is end

    [second] = await broker.enqueue([make_job(key="k")])
    assert second.id != first.id
    assert second.status is Status.QUEUED
    assert await broker.get(first.id) == done
    assert [j.id for j in await claim(broker)] == [second.id]

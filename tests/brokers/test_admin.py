"""Reading and managing jobs: get, list, counts, cancel, retry_failed, purge, prune."""

from __future__ import annotations

import time

import msgspec
import pytest

from conveyor.brokers import Broker
from conveyor.brokers.base import JobFilter, Retention
from conveyor.job import JobRecord, Status, new_id
from tests.brokers.support import (
    LEASE,
    at,
    claim,
    claim_one,
    finish,
    finished,
    heartbeat,
    lease_of,
    make_job,
    must_get,
    outcome,
    plain_counts,
    worker_info,
)


async def ids(broker: Broker, where: JobFilter) -> list[str]:
    """The ids of one page of jobs."""
    return [j.id for j in await broker.list(where)]


# -- get, list, counts -------------------------------------------------------------------


async def test_get_missing_is_none(broker: Broker) -> None:
    """get returns None for an id that was never stored."""
    assert await broker.get(new_id()) is None


async def test_list_is_newest_first(broker: Broker) -> None:
    """list returns jobs by descending id, which is newest first."""
    jobs = [make_job() for _ in range(5)]
    await broker.enqueue(jobs[:2])
    await broker.enqueue(jobs[2:])
    assert await ids(broker, JobFilter()) == [j.id for j in reversed(jobs)]
    assert await ids(broker, JobFilter(limit=2)) == [jobs[4].id, jobs[3].id]
    assert await ids(broker, JobFilter(limit=0)) == []


async def _mixed(broker: Broker) -> list[JobRecord]:
    """Jobs over two tasks, two queues and four statuses, as stored, oldest first."""
    now = time.time()
    done = await finished(
        broker,
        [make_job("t1", queue="a"), make_job("t2", queue="b"), make_job("t2", queue="a")],
        Status.SUCCEEDED,
        finished_at=now,
    )
    failed = await finished(broker, [make_job("t1", queue="b")], Status.FAILED, finished_at=now)
    running = await broker.enqueue([make_job("t2", queue="a")])
    await claim_one(broker, running[0].id, queue="a")
    pending = await broker.enqueue(
        [
            make_job("t1", queue="a"),
            make_job("t2", queue="b", eta=now + 3600),
            make_job("t1", queue="b"),
        ]
    )
    return [await must_get(broker, j.id) for j in [*done, *failed, *running, *pending]]


@pytest.mark.parametrize(
    "where",
    [
        JobFilter(status=Status.SUCCEEDED),
        JobFilter(status=Status.QUEUED),
        JobFilter(status=Status.RUNNING),
        JobFilter(status=Status.SCHEDULED),
        JobFilter(queue="a"),
        JobFilter(task="t2"),
        JobFilter(status=Status.SUCCEEDED, queue="a"),
        JobFilter(status=Status.QUEUED, queue="b", task="t1"),
        JobFilter(queue="absent"),
    ],
    ids=lambda w: ",".join(
        f"{k}={v}" for k, v in msgspec.structs.asdict(w).items() if v and k != "limit"
    ),
)
async def test_list_filters(broker: Broker, where: JobFilter) -> None:
    """list keeps the jobs matching every given filter, newest first."""
    jobs = await _mixed(broker)
    expected = [
        j.id
        for j in sorted(jobs, key=lambda j: j.id, reverse=True)
        if (where.status is None or j.status is where.status)
        and (where.queue is None or j.queue == where.queue)
        and (where.task is None or j.task == where.task)
    ]
    assert await ids(broker, where) == expected


@pytest.mark.parametrize("queue", [None, "a"])
async def test_list_pages_cover_every_job_once(broker: Broker, queue: str | None) -> None:
    """Paging with ``before`` = the last id seen visits every matching job exactly once."""
    jobs = [make_job(queue="a" if i % 3 else "b") for i in range(17)]
    await broker.enqueue(jobs)
    expected = [j.id for j in reversed(jobs) if queue is None or j.queue == queue]

    seen: list[str] = []
    before: str | None = None
    for _ in range(len(jobs) + 1):
        page = await ids(broker, JobFilter(queue=queue, before=before, limit=4))
        assert len(page) <= 4
        assert all(before is None or i < before for i in page)
        if not page:
            break
        seen += page
        before = page[-1]
    assert seen == expected


async def test_counts_per_queue_and_status(broker: Broker) -> None:
    """counts gives the number of jobs per queue and status."""
    await _mixed(broker)
    assert plain_counts(await broker.counts()) == {
        "a": {"succeeded": 2, "running": 1, "queued": 1},
        "b": {"succeeded": 1, "failed": 1, "scheduled": 1, "queued": 1},
    }


async def test_counts_of_an_empty_store(broker: Broker) -> None:
    """An empty store counts nothing."""
    assert plain_counts(await broker.counts()) == {}


# -- cancel ------------------------------------------------------------------------------


async def test_cancel_pending_jobs_at_once(broker: Broker) -> None:
    """A queued or scheduled job is cancelled at once and never claimed."""
    now = time.time()
    queued, scheduled = await broker.enqueue([make_job(), make_job(eta=now + 60)])
    for job in (queued, scheduled):
        cancelled = await broker.cancel(job.id, now + 1)
        assert cancelled is not None
        assert cancelled.status is Status.CANCELLED
        assert cancelled.finished_at == at(now + 1)
        assert await broker.get(job.id) == cancelled
    assert await claim(broker, now=now + 1000) == []


async def test_cancel_running_flags_it_for_the_worker(broker: Broker) -> None:
    """A running job is flagged, reported to its worker's heartbeat, then ended by it."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    running = await claim_one(broker, job.id, now=now)
    flagged = await broker.cancel(job.id, now + 1)
    assert flagged is not None
    assert flagged.status is Status.RUNNING
    assert flagged.cancel_requested is True
    assert await broker.get(job.id) == flagged

    reply = await heartbeat(
        broker, worker_info(seen_at=now + 2), [lease_of(running)], LEASE, now + 2
    )
    assert reply.cancel == [job.id]
    assert reply.lost == []
    ended = outcome(running, Status.CANCELLED, finished_at=now + 3)
    assert await finish(broker, [ended]) == []
    assert (await must_get(broker, job.id)).status is Status.CANCELLED


@pytest.mark.parametrize("end", [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED])
async def test_cancel_finished_changes_nothing(broker: Broker, end: Status) -> None:
    """Cancelling a finished job returns it unchanged."""
    [job] = await finished(broker, [make_job()], end, finished_at=time.time())
    assert await broker.cancel(job.id, time.time() + 10) == job
    assert await broker.get(job.id) == job


async def test_cancel_missing_is_none(broker: Broker) -> None:
    """Cancelling an unknown id returns None."""
    assert await broker.cancel(new_id(), time.time()) is None


# -- retry_failed ------------------------------------------------------------------------


async def test_retry_failed_by_ids_by_queue_and_all(broker: Broker) -> None:
    """Redrive moves the chosen failed jobs to queued with attempts reset; others stay."""
    now = time.time()
    a1, a2, b1 = await finished(
        broker,
        [make_job(queue="a"), make_job(queue="a"), make_job(queue="b")],
        Status.FAILED,
        finished_at=now,
    )
    [ok] = await finished(broker, [make_job(queue="a")], Status.SUCCEEDED, finished_at=now)

    async def status(job: JobRecord) -> Status:
        return (await must_get(broker, job.id)).status

    assert await broker.retry_failed([a1.id, ok.id], None, now + 1) == 1
    assert [await status(j) for j in (a1, a2, b1, ok)] == [
        Status.QUEUED,
        Status.FAILED,
        Status.FAILED,
        Status.SUCCEEDED,
    ]
    assert (await must_get(broker, a1.id)).attempts == 0

    assert await broker.retry_failed(None, "b", now + 1) == 1
    assert [await status(j) for j in (a2, b1)] == [Status.FAILED, Status.QUEUED]

    assert await broker.retry_failed(None, None, now + 1) == 1
    assert await broker.retry_failed(None, None, now + 1) == 0

    claimed = await claim(broker, ["a", "b"], now=now + 1)
    assert {j.id for j in claimed} == {a1.id, a2.id, b1.id}
    assert all(j.attempts == 1 for j in claimed)
    assert await status(ok) is Status.SUCCEEDED


async def test_retry_failed_keeps_keys_unique(broker: Broker) -> None:
    """A failed job whose key a newer unfinished job holds is not redriven."""
    now = time.time()
    [dead] = await finished(broker, [make_job(key="k")], Status.FAILED, finished_at=now)
    [holder] = await broker.enqueue([make_job(key="k")])
    assert holder.id != dead.id
    assert await broker.retry_failed([dead.id], None, now + 1) == 0
    assert (await must_get(broker, dead.id)).status is Status.FAILED

    await broker.cancel(holder.id, now + 2)
    assert await broker.retry_failed([dead.id], None, now + 3) == 1
    [again] = await broker.enqueue([make_job(key="k")])
    assert again.id == dead.id


# -- purge and prune ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [Status.SCHEDULED, Status.QUEUED, Status.RUNNING])
async def test_purge_refuses_unfinished_statuses(broker: Broker, status: Status) -> None:
    """Purging a status that is not finished is a ValueError, and deletes nothing."""
    [job] = await broker.enqueue([make_job()])
    with pytest.raises(ValueError, match=status.value):
        await broker.purge(status, None, None)
    assert await broker.get(job.id) == job


async def test_purge_by_status_queue_and_ids(broker: Broker) -> None:
    """purge deletes only jobs in the given finished status, of the queue or ids given."""
    now = time.time()
    sa, sb, sa2 = await finished(
        broker,
        [make_job(queue="a"), make_job(queue="b"), make_job(queue="a")],
        Status.SUCCEEDED,
        finished_at=now,
    )
    fa, fb = await finished(
        broker, [make_job(queue="a"), make_job(queue="b")], Status.FAILED, finished_at=now
    )
    [queued] = await broker.enqueue([make_job(queue="a")])

    assert await broker.purge(Status.SUCCEEDED, None, [sa.id, fa.id, queued.id]) == 1
    assert await broker.purge(Status.FAILED, "a", None) == 1
    assert await broker.purge(Status.CANCELLED, None, None) == 0
    remaining = {j.id for j in await broker.list(JobFilter())}
    assert remaining == {sb.id, sa2.id, fb.id, queued.id}

    assert await broker.purge(Status.SUCCEEDED, None, None) == 2
    assert {j.id for j in await broker.list(JobFilter())} == {fb.id, queued.id}


async def test_purge_by_ids_tolerates_repeats_and_unknown_ids(broker: Broker) -> None:
    """An id given twice is deleted once, and an unknown id is ignored."""
    [job] = await finished(broker, [make_job()], Status.SUCCEEDED, finished_at=time.time())
    assert await broker.purge(Status.SUCCEEDED, None, [job.id, new_id(), job.id]) == 1
    assert await broker.get(job.id) is None


async def test_prune_respects_retention_per_status(broker: Broker) -> None:
    """Finished jobs go once older than their status's retention; unfinished ones never."""
    now = time.time()
    [ok] = await finished(broker, [make_job()], Status.SUCCEEDED, finished_at=now)
    [bad] = await finished(broker, [make_job()], Status.FAILED, finished_at=now)
    [gone] = await finished(broker, [make_job()], Status.CANCELLED, finished_at=now)
    [waiting] = await broker.enqueue([make_job(eta=now + 10**6)])
    [held] = await broker.enqueue([make_job()])
    await claim_one(broker, held.id, now=now, lease=10**6)
    retention = Retention(succeeded=10, failed=100, cancelled=50)

    async def left() -> set[str]:
        return {j.id for j in await broker.list(JobFilter())}

    assert await broker.prune(retention, now + 5, 100) == 0
    assert await broker.prune(retention, now + 20, 100) == 1
    assert await broker.get(ok.id) is None
    assert await left() == {bad.id, gone.id, waiting.id, held.id}
    assert await broker.prune(retention, now + 60, 100) == 1
    assert await left() == {bad.id, waiting.id, held.id}
    assert await broker.prune(retention, now + 10**5, 100) == 1
    assert await left() == {waiting.id, held.id}


async def test_prune_limit(broker: Broker) -> None:
    """prune deletes at most ``limit`` jobs per call."""
    now = time.time()
    await finished(broker, [make_job() for _ in range(5)], Status.SUCCEEDED, finished_at=now)
    retention = Retention(succeeded=1)
    assert await broker.prune(retention, now + 10, 2) == 2
    assert len(await broker.list(JobFilter())) == 3
    assert await broker.prune(retention, now + 10, 10) == 3
    assert await broker.prune(retention, now + 10, 10) == 0

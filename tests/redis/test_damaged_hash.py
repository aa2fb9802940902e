"""Damaged records in Redis's own layout (lua/lib.lua): a job hash missing a field or holding
a field that is not a number, a payload missing or garbage, an id in an index with no job.
Redis does not roll back a script that fails half-way, so every script checks what it reads
before it writes: the damaged job fails alone (or is left out), the other jobs go on, every
job stays in the one index of its status, and get and list keep working."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from conveyor.brokers import from_url
from conveyor.brokers.base import JobFilter, Lease
from conveyor.brokers.common import DECODE_ERROR
from conveyor.brokers.redis import RedisBroker
from conveyor.brokers.redis_wire import parse_url
from conveyor.job import JobRecord, Status
from tests.brokers.support import (
    LEASE,
    claim,
    finish,
    make_job,
    must_get,
    outcome,
    release,
    session,
)

Plant = Callable[[Any, str, str], object]


def _without(field: str) -> Plant:
    return lambda r, j, p: r.hdel(j, field)


def _not_a_number(field: str) -> Plant:
    return lambda r, j, p: r.hset(j, field, "x1")


# What each kind does to the job (its hash key, its payload key); fields as in lua/lib.lua.
DAMAGE: dict[str, Plant] = {
    **{f"no-{field}": _without(field) for field in ("s", "a", "t", "e", "pr", "m")},
    **{f"{field}-not-a-number": _not_a_number(field) for field in ("a", "t", "e", "pr", "m", "n")},
    "payload-missing": lambda r, j, p: r.delete(p),
    "payload-garbage": lambda r, j, p: r.set(p, "\ufffd garbage {"),
    "payload-not-an-object": lambda r, j, p: r.set(p, "[1, 2]"),
    "no-hash": lambda r, j, p: r.delete(j),
    "no-hash-no-payload": lambda r, j, p: r.delete(j, p),
}
GONE = {"no-hash", "no-hash-no-payload"}
UNREAD = {"no-t", "no-pr", "no-m", "t-not-a-number", "pr-not-a-number", "m-not-a-number"}
"""Fields the claim does not read (it rewrites t; pr is read by a retry, a release and
recover, which fail the job then; m by no script): the job is claimed and runs."""


@pytest.fixture
def raw(broker: RedisBroker) -> Iterator[Any]:
    """A plain client on the broker's server, to plant damage from outside."""
    client = redis.Redis.from_url(parse_url(broker.url)[0], decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def keys_of(broker: RedisBroker, job: JobRecord) -> tuple[str, str]:
    tag = broker._tag(job.queue)
    return f"{tag}:j:{job.id}", f"{tag}:p:{job.id}"


def plant(raw: Any, broker: RedisBroker, job: JobRecord, kind: str) -> None:
    DAMAGE[kind](raw, *keys_of(broker, job))


def assert_indexed(raw: Any, broker: RedisBroker, queue: str = "default") -> None:
    """Every job of ``queue`` is in the index of its status (and in Q:ids), and every entry
    of an index names a job: nothing was half-moved."""
    tag = broker._tag(queue)
    ready = {
        m for pr in raw.zrange(f"{tag}:prios", 0, -1) for m in raw.zrange(f"{tag}:r:{pr}", 0, -1)
    }
    where: dict[str, set[str]] = {
        "queued": ready,
        "scheduled": {m for m in raw.zrange(f"{tag}:sched", 0, -1)},
        "running": {m for m in raw.zrangebyscore(f"{tag}:run", "-inf", "(+inf")},
    }
    for status in ("succeeded", "failed", "cancelled"):
        where[status] = {m for m in raw.zrange(f"{tag}:f:{status}", 0, -1)}
    listed = {m for m in raw.zrange(f"{tag}:ids", 0, -1)}
    jobs = {}
    for key in raw.scan_iter(match=f"{tag}:j:*"):
        job_id = key.rsplit(":", 1)[1]
        jobs[job_id] = raw.hget(key, "s") or ""
    for job_id, status in jobs.items():
        assert job_id in listed, f"{job_id} ({status}) is not listed"
        homes = [s for s, ids in where.items() if job_id in ids]
        assert homes == [status], f"{job_id} is {status!r} but indexed as {homes}"
    for status, ids in [*where.items(), ("listed", listed)]:
        assert ids <= set(jobs), f"{status}: ids without a job: {ids - set(jobs)}"
    assert not list(raw.scan_iter(match=f"{tag}:r:*")) or ready, "a ready zset left unlisted"


@pytest.mark.parametrize("kind", list(DAMAGE))
async def test_a_claim_fails_a_damaged_job_alone(broker: RedisBroker, raw: Any, kind: str) -> None:
    jobs = await broker.enqueue([make_job(args=[i]) for i in range(21)])
    damaged = jobs[10]
    plant(raw, broker, damaged, kind)
    now = time.time()

    claimed = await claim(broker, now=now, limit=100)
    ran = [i for i in range(21) if i != 10 or kind in UNREAD]
    assert sorted(j.args[0] for j in claimed) == ran
    assert_indexed(raw, broker)
    done = [outcome(j, Status.SUCCEEDED, finished_at=now + 1, result=1) for j in claimed]
    assert await finish(broker, done) == []
    assert await claim(broker, now=now + 1000) == []
    assert_indexed(raw, broker)
    if kind in UNREAD:
        assert (await must_get(broker, damaged.id)).status is Status.SUCCEEDED
        return

    everything = await broker.list(JobFilter(limit=100))
    assert sum(j.status is Status.SUCCEEDED for j in everything) == 20
    if kind in GONE:
        assert await broker.get(damaged.id) is None
        assert len(everything) == 20
        return
    failed = await must_get(broker, damaged.id)
    assert (failed.status, failed.worker, failed.lease_until) == (Status.FAILED, None, None)
    assert failed.error is not None
    assert failed.error.type == DECODE_ERROR
    assert [j.id for j in await broker.list(JobFilter(status=Status.FAILED))] == [damaged.id]
    assert len(everything) == 21


@pytest.mark.parametrize("kind", list(DAMAGE))
async def test_a_damaged_job_is_readable(broker: RedisBroker, raw: Any, kind: str) -> None:
    """get and list show a damaged job with placeholders, never raise; a job with no hash is
    not found, and a list leaves it out."""
    good, bad = await broker.enqueue([make_job(args=[1]), make_job(args=[2])])
    plant(raw, broker, bad, kind)
    listed = await broker.list(JobFilter())
    assert listed[-1] == await must_get(broker, good.id)
    assert await broker.list(JobFilter(task="tests.noop")) != []
    shown = await broker.get(bad.id)
    if kind in GONE:
        assert shown is None
        assert [j.id for j in listed] == [good.id]
    else:
        assert shown is not None
        assert (shown.id, shown.queue) == (bad.id, "default")
        assert [j.id for j in listed] == [bad.id, good.id]


@pytest.mark.parametrize("kind", ["no-s", "no-pr", "a-not-a-number", "no-hash", "payload-missing"])
async def test_a_due_scheduled_damaged_job_fails_alone(
    broker: RedisBroker, raw: Any, kind: str
) -> None:
    """The claim's move of due scheduled jobs to queued checks each job first."""
    now = time.time()
    jobs = await broker.enqueue([make_job(args=[i], eta=now + 10) for i in range(5)])
    plant(raw, broker, jobs[2], kind)
    claimed = await claim(broker, now=now + 20)
    assert sorted(j.args[0] for j in claimed) == [0, 1, 3, 4]
    assert_indexed(raw, broker)
    if kind not in GONE:
        assert (await must_get(broker, jobs[2].id)).status is Status.FAILED


@pytest.mark.parametrize("kind", ["a-not-a-number", "no-pr", "n-not-a-number", "no-hash"])
async def test_recover_fails_a_damaged_running_job_alone(
    broker: RedisBroker, raw: Any, kind: str
) -> None:
    jobs = await broker.enqueue([make_job(args=[i]) for i in range(3)])
    now = time.time()
    assert len(await claim(broker, now=now)) == 3
    plant(raw, broker, jobs[1], kind)
    assert sorted(await broker.recover(now + LEASE + 1)) == sorted(j.id for j in jobs)
    assert_indexed(raw, broker)
    for job in (jobs[0], jobs[2]):
        back = await must_get(broker, job.id)
        assert (back.status, back.attempts, back.losses) == (Status.QUEUED, 0, 1)
    if kind not in GONE:
        failed = await must_get(broker, jobs[1].id)
        assert failed.status is Status.FAILED
        assert failed.error is not None
        assert failed.error.type == DECODE_ERROR


async def test_release_and_a_retry_of_a_damaged_job_fail_it_alone(
    broker: RedisBroker, raw: Any
) -> None:
    """A release, and an outcome that retries, need the job's priority to queue it again."""
    jobs = await broker.enqueue([make_job(args=[i]) for i in range(4)])
    now = time.time()
    claimed = {j.args[0]: j for j in await claim(broker, now=now)}
    plant(raw, broker, jobs[0], "no-pr")
    plant(raw, broker, jobs[1], "a-not-a-number")
    await release(broker, [Lease(j.id, j.token) for j in (claimed[0], claimed[1], claimed[2])], now)
    retry = outcome(claimed[3], Status.SCHEDULED, finished_at=now, eta=now + 5)
    plant(raw, broker, jobs[3], "pr-not-a-number")
    assert await finish(broker, [retry]) == []
    assert_indexed(raw, broker)
    states = {j.args[0]: (await must_get(broker, j.id)).status for j in jobs}
    assert states == {0: Status.FAILED, 1: Status.FAILED, 2: Status.QUEUED, 3: Status.FAILED}


async def test_cancel_and_redrive_of_damaged_jobs(broker: RedisBroker, raw: Any) -> None:
    """A queued job without a priority cancels (the claim drops its stray ready entry); a
    failed one with a damaged priority stays failed on a redrive, the others go."""
    a, b, c = await broker.enqueue([make_job(args=[i], key=f"k{i}") for i in range(3)])
    plant(raw, broker, a, "no-pr")
    cancelled = await broker.cancel(a.id, time.time())
    assert cancelled is not None
    assert cancelled.status is Status.CANCELLED
    now = time.time()
    claimed = await claim(broker, now=now)
    assert sorted(j.id for j in claimed) == sorted([b.id, c.id])
    assert_indexed(raw, broker)
    await finish(broker, [outcome(j, Status.FAILED, finished_at=now) for j in claimed])
    plant(raw, broker, b, "pr-not-a-number")
    assert await broker.retry_failed(None, None, now + 1) == 1
    assert (await must_get(broker, b.id)).status is Status.FAILED
    assert (await must_get(broker, c.id)).status is Status.QUEUED
    assert_indexed(raw, broker)


async def test_a_key_held_by_a_job_failed_as_damaged_is_free(broker: RedisBroker, raw: Any) -> None:
    """The claim cannot reach the hash of uniqueness keys to free the key of a damaged job it
    fails; the next enqueue with that key takes it over."""
    (job,) = await broker.enqueue([make_job(key="once")])
    plant(raw, broker, job, "a-not-a-number")
    assert await claim(broker) == []
    assert (await must_get(broker, job.id)).status is Status.FAILED
    (again,) = await broker.enqueue([make_job(key="once")])
    assert (again.id != job.id, again.status) == (True, Status.QUEUED)


async def test_a_failed_decode_keeps_the_claims_receipt(
    broker: RedisBroker, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should failing the damaged job break (Redis lost meanwhile), the claim's other jobs
    are not lost: the next claim of the session hands them over again."""
    jobs = await broker.enqueue([make_job(args=[i]) for i in range(3)])
    plant(raw, broker, jobs[1], "payload-garbage")
    worker = session(broker)
    real = broker._fail_claimed

    async def lost(*args: object) -> list[str]:
        raise redis.ConnectionError("lost")

    monkeypatch.setattr(broker, "_fail_claimed", lost)
    with pytest.raises(Exception, match="lost"):
        await worker.claim(10, time.time())
    monkeypatch.setattr(broker, "_fail_claimed", real)
    again = await worker.claim(10, time.time())
    assert sorted(j.args[0] for j in again) == [0, 2]
    assert {j.attempts for j in again} == {1}
    assert (await must_get(broker, jobs[1].id)).status is Status.FAILED


@pytest.mark.parametrize("kind", ["a-not-a-number", "no-s", "no-hash", "payload-garbage"])
async def test_a_claim_fails_a_damaged_job_alone_on_a_cluster(cluster_url: str, kind: str) -> None:
    """The same on a cluster, where the claim cannot reach the key table (another slot)."""
    broker = from_url(cluster_url)
    assert isinstance(broker, RedisBroker)
    await broker.connect()
    raw = redis.RedisCluster.from_url(parse_url(cluster_url)[0], decode_responses=True)
    try:
        jobs = await broker.enqueue([make_job(args=[i], key=f"k{i}") for i in range(21)])
        plant(raw, broker, jobs[10], kind)
        now = time.time()
        claimed = await claim(broker, now=now, limit=100)
        assert sorted(j.args[0] for j in claimed) == [i for i in range(21) if i != 10]
        assert_indexed(raw, broker)
        done = [outcome(j, Status.SUCCEEDED, finished_at=now + 1, result=1) for j in claimed]
        assert await finish(broker, done) == []
        shown = await broker.get(jobs[10].id)
        assert shown is None if kind in GONE else shown is not None
        assert len(await broker.list(JobFilter(limit=100))) == (20 if kind in GONE else 21)
        (again,) = await broker.enqueue([make_job(key="k10")])
        assert again.id != jobs[10].id
    finally:
        raw.close()
        await broker.close()

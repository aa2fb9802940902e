"""What only the Redis broker has to get right: lost claim replies, wake-ups, bounded keys."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

import conveyor
from conveyor.brokers import from_url
from conveyor.brokers.base import JobFilter, Lease, Retention
from conveyor.brokers.redis import RedisBroker
from conveyor.errors import BrokerUnavailable
from conveyor.job import Status
from tests.brokers.support import (
    LEASE,
    claim,
    eventually,
    finish,
    heartbeat,
    make_job,
    must_get,
    session,
    worker_info,
)
from tests.servers import RedisServer


@contextlib.contextmanager
def replies_lost(broker: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Within the block, every claim runs in Redis but its reply is lost on the way back."""
    real = broker._eval

    async def reply_lost(name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        answer = await real(name, keys, args)
        if name == "claim":
            raise RedisConnectionError("connection reset by peer")
        return answer

    monkeypatch.setattr(broker, "_eval", reply_lost)
    try:
        yield
    finally:
        monkeypatch.setattr(broker, "_eval", real)


async def test_a_claim_whose_reply_was_lost_is_handed_over_by_the_sessions_next_claim(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim ran but its reply never came: the next claim of the same session returns
    those jobs with the same token, instead of leaving them to expire as a lost attempt.
    The receipt is the session's: another session, even of the same worker, does not get
    them."""
    jobs = await broker.enqueue([make_job(max_attempts=1) for _ in range(3)])
    worker = session(broker)
    with replies_lost(broker, monkeypatch), pytest.raises(BrokerUnavailable):
        await worker.claim(2, time.time())

    other = from_url(broker.url)  # another worker gets only what nobody holds
    try:
        assert [j.id for j in await claim(other, limit=10, worker="w2")] == [jobs[2].id]
    finally:
        await other.close()
    assert await claim(broker, limit=10) == []  # a session of its own: no receipt
    again = await worker.claim(10, time.time())
    assert [j.id for j in again] == [j.id for j in jobs[:2]]
    for job in again:
        stored = await must_get(broker, job.id)
        assert (stored.status, stored.token, stored.attempts) == (
            Status.RUNNING, job.token, 1,
        )  # fmt: skip
    assert await worker.claim(10, time.time()) == []  # handed over once


async def test_a_lost_claims_jobs_beyond_the_next_claims_limit_go_back(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next claim asks for fewer jobs than the lost one took: it returns what fits, and
    the others are queued again, the attempt not counted, instead of waiting for their
    lease to expire."""
    jobs = await broker.enqueue([make_job(max_attempts=1) for _ in range(3)])
    worker = session(broker)
    with replies_lost(broker, monkeypatch), pytest.raises(BrokerUnavailable):
        await worker.claim(3, time.time())
    (first,) = await worker.claim(1, time.time())
    assert first.id == jobs[0].id
    for job in jobs[1:]:
        stored = await must_get(broker, job.id)
        assert (stored.status, stored.attempts, stored.worker) == (Status.QUEUED, 0, None)
    rest = await worker.claim(10, time.time())
    assert [j.id for j in rest] == [j.id for j in jobs[1:]]


async def test_both_halves_of_a_split_claim_whose_replies_were_lost_are_handed_over(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker splits a big claim in two concurrent halves; when both replies are lost,
    the session keeps both receipts, and its next claim hands over the jobs of both."""
    jobs = await broker.enqueue([make_job(max_attempts=1) for _ in range(4)])
    worker = session(broker)
    now = time.time()
    with replies_lost(broker, monkeypatch):
        halves = await asyncio.gather(
            worker.claim(2, now), worker.claim(2, now), return_exceptions=True
        )
    assert all(isinstance(h, BrokerUnavailable) for h in halves)
    again = await worker.claim(10, time.time())
    assert sorted(j.id for j in again) == sorted(j.id for j in jobs)
    assert {j.attempts for j in again} == {1}


async def test_closing_leaves_a_lost_claims_jobs_that_were_recovered_meanwhile(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receipts of a closing session name jobs it no longer holds: recovered, and one
    of them claimed by another worker. Those stay as they are (the release is fenced)."""
    jobs = await broker.enqueue([make_job(max_attempts=2) for _ in range(3)])
    worker = session(broker)
    with replies_lost(broker, monkeypatch), pytest.raises(BrokerUnavailable):
        await worker.claim(3, time.time())
    later = time.time() + LEASE + 1
    assert sorted(await broker.recover(later)) == sorted(j.id for j in jobs)
    (taken,) = await broker.consumer("w2", ["default"], LEASE).claim(1, later)
    await worker.close()
    for job in jobs:
        stored = await must_get(broker, job.id)
        if job.id == taken.id:
            assert (stored.status, stored.worker, stored.token) == (
                Status.RUNNING, "w2", taken.token,
            )  # fmt: skip
        else:
            # recovered: the loss spends no attempt (issue 16)
            assert (stored.status, stored.attempts, stored.losses) == (Status.QUEUED, 0, 1)


async def test_closing_releases_a_lost_claims_jobs_still_held(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session that closes without claiming again hands back what its lost claims took,
    found by their receipts, the attempt not counted."""
    jobs = await broker.enqueue([make_job(max_attempts=1) for _ in range(3)])
    worker = session(broker)
    with replies_lost(broker, monkeypatch), pytest.raises(BrokerUnavailable):
        await worker.claim(10, time.time())
    await worker.close()
    for job in jobs:
        stored = await must_get(broker, job.id)
        assert (stored.status, stored.attempts, stored.worker) == (Status.QUEUED, 0, None)
    assert len(await claim(broker, limit=10, worker="w2")) == 3


async def test_idle_worker_starts_new_and_delayed_jobs_promptly(redis_url: str) -> None:
    """An idle worker blocked on the wake-up signal starts a new job well within a poll
    interval, and a delayed job soon after its eta (generous bounds: speed is measured by
    the benchmark, not here)."""
    app = conveyor.Conveyor(redis_url)
    started: dict[str, float] = {}

    @app.task(name="tests.wake.mark")
    async def mark(name: str) -> None:
        started[name] = time.time()

    worker = conveyor.Worker(app, concurrency=4, poll=30.0)
    thread = threading.Thread(target=asyncio.run, args=(worker.run(),))
    thread.start()
    try:
        await asyncio.sleep(0.3)  # idle, blocked
        delays = []
        for i in range(10):
            sent = time.time()
            await mark.enqueue_async(f"n{i}")
            await eventually(lambda i=i: f"n{i}" in started, timeout=10)  # type: ignore[misc]
            delays.append(started[f"n{i}"] - sent)
        assert statistics.median(delays) < 0.5, delays

        eta = time.time() + 0.4
        await mark.options(eta=eta).enqueue_async("late")
        await eventually(lambda: "late" in started, timeout=10)
        assert eta <= started["late"] < eta + 1.0
    finally:
        worker.stop()
        await asyncio.to_thread(thread.join, 30)
        app.close()


async def test_nothing_is_left_behind(redis_server: RedisServer, redis_url: str) -> None:
    """After jobs ran and retention passed, a queue keeps only a few fixed keys: no job,
    index entry or worker record grows without bound, and receipts expire."""
    broker = from_url(redis_url)
    prefix = redis_url.rsplit("prefix=", 1)[1]
    raw = redis.Redis(port=redis_server.port)
    try:
        now = time.time()
        await broker.enqueue([make_job(key=f"k{i}") for i in range(50)])
        await broker.enqueue([make_job(queue="later", eta=now + 1) for _ in range(5)])
        claimed = await broker.consumer("w1", ["default", "later"], LEASE).claim(100, now + 2)
        await heartbeat(broker, worker_info(seen_at=now + 2), [], LEASE, now + 2)
        assert len(claimed) == 55
        receipts = [k for k in raw.scan_iter(match="{" + prefix + ":*:rc:*")]
        assert receipts
        assert all(0 < raw.pttl(k) <= (LEASE + 1) * 1000 for k in receipts)
        outcomes = [
            conveyor.brokers.base.Outcome(
                id=j.id, token=j.token, status=Status.SUCCEEDED, finished_at=now + 3
            )
            for j in claimed
        ]
        assert await finish(broker, outcomes) == []
        assert await broker.prune(Retention(succeeded=1), now + 10**6, 1000) == 55
        assert await broker.list(JobFilter()) == []
        assert await broker.workers(now + 10**6, 10**7) == []
        left = sorted(k.decode() for k in raw.scan_iter(match="{" + prefix + "*"))
        per_queue = ("token", "sig", "run")  # run keeps its pin (see lua/lib.lua)
        fixed = {
            f"{{{prefix}}}:queues",
            *(f"{{{prefix}:{q}}}:{name}" for q in ("default", "later") for name in per_queue),
        }
        assert set(left) - {k for k in left if ":rc:" in k} <= fixed, left
        assert raw.llen(f"{{{prefix}:default}}:sig") <= 32
    finally:
        raw.close()
        await broker.close()


async def test_running_jobs_are_indexed_in_a_skiplist(
    redis_server: RedisServer, redis_url: str
) -> None:
    """The index of running jobs stays a skiplist however few they are (a listpack parses
    every score at each insert), and its pin is never counted or listed as a job."""
    broker = from_url(redis_url)
    prefix = redis_url.rsplit("prefix=", 1)[1]
    raw = redis.Redis(port=redis_server.port)
    try:
        now = time.time()
        await broker.enqueue([make_job() for _ in range(3)])
        claimed = await broker.consumer("w1", ["default"], LEASE).claim(2, now)
        assert raw.object("encoding", f"{{{prefix}:default}}:run") == b"skiplist"
        counts = (await broker.counts())["default"]
        assert (counts[Status.RUNNING], counts[Status.QUEUED]) == (2, 1)
        running = await broker.list(JobFilter(status=Status.RUNNING))
        assert sorted(j.id for j in running) == sorted(j.id for j in claimed)
        leases = [Lease(j.id, j.token) for j in claimed]
        reply = await heartbeat(broker, worker_info(seen_at=now), leases, LEASE, now + 1)
        assert not reply.lost
        assert sorted(await broker.recover(now + 10 * LEASE)) == sorted(j.id for j in claimed)
        assert (await broker.counts())["default"].get(Status.RUNNING, 0) == 0
    finally:
        raw.close()
        await broker.close()


@pytest.mark.parametrize("queues", [["default"], ["default", "other"]])
async def test_a_priority_is_unlisted_by_the_claim_that_takes_its_last_job(
    redis_server: RedisServer, redis_url: str, queues: list[str]
) -> None:
    """Taking fewer than a priority's queued jobs keeps it listed; taking exactly the last,
    or asking for more than wait, unlists it. (Two queues take the path that merges by eta.)"""
    broker = from_url(redis_url)
    prefix = redis_url.rsplit("prefix=", 1)[1]
    raw = redis.Redis(port=redis_server.port)
    prios = f"{{{prefix}:default}}:prios"
    try:
        high = await broker.enqueue([make_job(priority=5) for _ in range(3)])
        low = await broker.enqueue([make_job(priority=1) for _ in range(2)])
        now = time.time()
        taken = await broker.consumer("w1", queues, LEASE).claim(2, now)
        assert [j.id for j in taken] == [j.id for j in high[:2]]
        assert raw.zrange(prios, 0, -1) == [b"5", b"1"]
        taken = await broker.consumer("w1", queues, LEASE).claim(1, now)
        assert [j.id for j in taken] == [high[2].id]
        assert raw.zrange(prios, 0, -1) == [b"1"]
        taken = await broker.consumer("w1", queues, LEASE).claim(5, now)
        assert [j.id for j in taken] == [j.id for j in low]
        assert raw.zrange(prios, 0, -1) == []
        assert await broker.consumer("w1", queues, LEASE).claim(5, now) == []
    finally:
        raw.close()
        await broker.close()


async def test_the_queues_of_jobs_are_remembered_within_a_bound(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker object remembers the queue of each job it saw, to reach it without a
    search; past the bound it forgets the oldest, and finds a forgotten job by searching."""
    monkeypatch.setattr(conveyor.brokers.redis, "_REMEMBERED", 10)
    first = await broker.enqueue([make_job() for _ in range(8)])
    await broker.enqueue([make_job(queue="other") for _ in range(8)])
    claimed = await broker.consumer("w1", ["other"], LEASE).claim(8, time.time())
    assert len(claimed) == 8
    assert len(broker._queue_of) <= 10 + 8  # a batch may overshoot by its own size
    assert first[0].id not in broker._queue_of
    assert (await must_get(broker, first[0].id)).queue == "default"
    assert broker._queue_of[first[0].id] == "default"  # remembered again

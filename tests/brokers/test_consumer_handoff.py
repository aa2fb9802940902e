"""A consumer session's state between calls, on every broker: a job that comes while a
session waits is that session's or free for any other, and sessions never mix their jobs.

On Redis the waiting session is handed the job by the enqueue (``docs/redis.md``,
"Hand-offs"); elsewhere its wait wakes and its claim takes it. Either way the same holds.
"""

from __future__ import annotations

import asyncio
import time

from conveyor.brokers import Broker
from conveyor.brokers.base import Consumer
from conveyor.job import JobRecord, Status
from tests.brokers.support import claim, make_job, must_get, session
from tests.brokers.test_wait import PROMPTLY, assert_blocks


async def enqueued_while_waiting(broker: Broker, worker: Consumer) -> JobRecord:
    """Let ``worker`` claim nothing and block idle, enqueue one job, and return it once the
    wait has ended."""
    assert await worker.claim(4, time.time()) == []
    waiting = asyncio.create_task(worker.wait(30))
    await assert_blocks(waiting)
    (job,) = await broker.enqueue([make_job(max_attempts=1)])
    await asyncio.wait_for(waiting, PROMPTLY)
    return job


async def holds(broker: Broker, jobs: list[JobRecord]) -> None:
    """The store has each of ``jobs`` running under the worker and token it was claimed
    with."""
    for job in jobs:
        stored = await must_get(broker, job.id)
        assert (stored.status, stored.worker, stored.token) == (
            Status.RUNNING, job.worker, job.token,
        )  # fmt: skip


async def test_a_job_enqueued_during_a_wait_goes_to_that_sessions_next_claim(
    broker: Broker,
) -> None:
    worker = session(broker)
    job = await enqueued_while_waiting(broker, worker)
    (got,) = await worker.claim(4, time.time())
    assert (got.id, got.worker, got.attempts) == (job.id, "w1", 1)
    await holds(broker, [got])
    assert await claim(broker, limit=4, worker="w2") == []
    await worker.close()
    await holds(broker, [got])  # a claimed job stays its worker's after the session ends


async def test_a_job_enqueued_during_a_wait_is_free_once_that_session_closes(
    broker: Broker,
) -> None:
    worker = session(broker)
    job = await enqueued_while_waiting(broker, worker)
    await worker.close()
    (got,) = await claim(broker, limit=4, worker="w2")  # at once: no lease to run out
    assert (got.id, got.worker, got.attempts) == (job.id, "w2", 1)
    await holds(broker, [got])


async def test_two_sessions_on_one_broker_never_receive_each_others_jobs(
    broker: Broker,
) -> None:
    """Both wait at once on one broker object; then each claims, the other one first."""
    first, second = session(broker, worker="w1"), session(broker, worker="w2")
    for worker in (first, second):
        assert await worker.claim(2, time.time()) == []
    waits = [asyncio.create_task(worker.wait(30)) for worker in (first, second)]
    done, _ = await asyncio.wait(waits, timeout=0.2)
    assert not done, "a wait returned although no work was due"
    jobs = await broker.enqueue([make_job() for _ in range(3)])
    await asyncio.wait_for(asyncio.gather(*waits), PROMPTLY)  # each woken, or handed jobs
    got = {w.worker: await w.claim(10, time.time()) for w in (second, first)}
    assert sorted(j.id for js in got.values() for j in js) == sorted(j.id for j in jobs)
    for name, claimed in got.items():
        assert {j.worker for j in claimed} <= {name}
        await holds(broker, claimed)
    assert await claim(broker, limit=10, worker="w3") == []
    for worker in (first, second):
        await worker.close()

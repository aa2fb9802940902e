"""A consumer session's cached looks at its queues, and the receipt of a lost claim reply.

A session may remember what its last claim or wait saw of its queues so that its next wait
need not ask the store again (PostgreSQL does). Whatever it remembers, a job enqueued after
that look must still wake it promptly, from this broker object or another, and a claim
whose reply never reached the caller must not leave jobs running under the worker's name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from conveyor.brokers import Broker, from_url
from conveyor.brokers.base import JobFilter
from conveyor.job import JobRecord, Status
from tests.brokers.support import enqueue_with, make_job, must_get, session

PROMPTLY = 5.0
"""How long "promptly" may take at most: far below the waits' own timeouts."""


@pytest.fixture
async def shared(shared_url: str) -> AsyncIterator[Broker]:
    """A connected broker on a fresh store that other broker objects can open too."""
    b = from_url(shared_url)
    await b.connect()
    try:
        yield b
    finally:
        await b.close()


async def enqueue_elsewhere(broker: Broker, jobs: Sequence[JobRecord]) -> None:
    """Enqueue ``jobs`` through another broker object on the same store, on another thread."""
    await asyncio.to_thread(asyncio.run, enqueue_with(broker.copy(), jobs))


@pytest.mark.parametrize("when", ["before the wait", "during the wait"])
async def test_a_drained_session_wakes_for_a_job_from_another_broker_object(
    shared: Broker, when: str
) -> None:
    """After a claim that took less than it asked for, the session's wait still returns
    promptly for a job another broker object enqueued after that claim."""
    consumer = session(shared)
    try:
        await consumer.wait(0.01)  # a first look (and, where there is one, a listener)
        assert await consumer.claim(10, time.time()) == []
        job = make_job()
        if when == "before the wait":
            await enqueue_elsewhere(shared, [job])
            await asyncio.wait_for(consumer.wait(30), PROMPTLY)
        else:
            waiter = asyncio.create_task(consumer.wait(30))
            done, _ = await asyncio.wait({waiter}, timeout=0.2)
            assert not done, "wait returned although no work was due"
            await enqueue_elsewhere(shared, [job])
            await asyncio.wait_for(waiter, PROMPTLY)
        assert [j.id for j in await consumer.claim(10, time.time())] == [job.id]
    finally:
        await consumer.close()


@pytest.mark.parametrize("taken", [0, 2])
async def test_a_wait_returns_at_once_for_a_job_enqueued_after_a_draining_claim(
    broker: Broker, taken: int
) -> None:
    """A job enqueued between a claim that drained the queue (it took ``taken`` jobs, fewer
    than it asked for) and the session's next wait makes that wait return at once."""
    consumer = session(broker)
    try:
        await consumer.wait(0.01)
        await broker.enqueue([make_job() for _ in range(taken)])
        assert len(await consumer.claim(10, time.time())) == taken
        [job] = await broker.enqueue([make_job()])
        await asyncio.wait_for(consumer.wait(30), PROMPTLY)
        assert [j.id for j in await consumer.claim(10, time.time())] == [job.id]
    finally:
        await consumer.close()


def running_elsewhere(broker: Broker, job_id: str, timeout: float) -> bool:
    """Whether ``job_id`` is seen running within ``timeout``, asked by another broker
    object on another thread while the calling thread (and its event loop) stands still:
    a reply that reached this loop meanwhile is not read."""

    async def poll() -> bool:
        reader = broker.copy()
        await reader.connect()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                job = await reader.get(job_id)
                if job is not None and job.status is Status.RUNNING:
                    return True
                await asyncio.sleep(0.005)
            return False
        finally:
            await reader.close()

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, poll()).result()


async def cancel_once_applied(
    claiming: asyncio.Task[list[JobRecord]], broker: Broker, job_id: str
) -> None:
    """Cancel ``claiming`` once the store has applied its claim of ``job_id``, before this
    loop reads the reply (the worker's task cancelled with the request out)."""
    for _ in range(5):
        await asyncio.sleep(0)  # one step of the claim: its request goes out
        if claiming.done() or running_elsewhere(broker, job_id, timeout=2.0):
            break
    else:
        pytest.fail("the claim never reached the store")
    claiming.cancel()
    await asyncio.gather(claiming, return_exceptions=True)


@pytest.mark.parametrize("then", ["next claim", "close"])
async def test_a_claim_cancelled_in_flight_leaves_no_job_running_under_the_worker(
    broker: Broker, then: str
) -> None:
    """A claim whose caller was cancelled after the request went out (the store applied
    it; its reply was never read) leaves no job running under the worker after the same
    session's next claim, or after its close: each job is either held by the caller,
    charged one attempt, or back in the queue with the attempt uncounted."""
    [job] = await broker.enqueue([make_job()])
    consumer = session(broker)
    held: list[JobRecord] = []
    try:
        claiming = asyncio.create_task(consumer.claim(10, time.time()))
        await cancel_once_applied(claiming, broker, job.id)
        if not claiming.cancelled():  # the claim ended before the cancel: nothing was lost
            held += claiming.result()
        if then == "next claim":
            held += await consumer.claim(10, time.time())
    finally:
        await consumer.close()
    running = await broker.list(JobFilter(status=Status.RUNNING))
    assert {j.id for j in running if j.worker == "w1"} == {j.id for j in held}
    stored = await must_get(broker, job.id)
    if held:
        assert (stored.status, stored.attempts) == (Status.RUNNING, 1)
    else:
        assert (stored.status, stored.attempts) == (Status.QUEUED, 0)

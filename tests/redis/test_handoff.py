"""Hand-offs: an enqueue claims a due job for a worker blocked idle on its queue and pushes
it to that worker's inbox, which saves the worker a claim's round trip. What a hand-off
leaves between a worker's calls lives in its session (RedisConsumer): each test claims and
waits through one session."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from conveyor.brokers.base import Consumer, Lease
from conveyor.brokers.redis import RedisBroker
from conveyor.brokers.redis_consumer import RedisConsumer
from conveyor.job import Status
from tests.brokers.support import (
    LEASE,
    claim,
    eventually,
    make_job,
    must_get,
    release,
    session,
)
from tests.redis.conftest import fresh
from tests.servers import RedisCluster, RedisServer

OFFERED = 0.01  # a wait this short returns at once; the slots it offered stay for a second


@pytest.fixture(params=["server", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    """A fresh namespace on the single server, then on the cluster."""
    if request.param == "server":
        server: RedisServer = request.getfixturevalue("redis_server")
        return fresh(server.url)
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return fresh(cluster.url)


@pytest.fixture
async def pair(url: str) -> AsyncIterator[tuple[RedisBroker, RedisBroker]]:
    """A worker's broker and a producer's, on the same namespace."""
    brokers = [RedisBroker(url), RedisBroker(url)]
    for b in brokers:
        await b.connect()
    try:
        yield brokers[0], brokers[1]
    finally:
        for b in brokers:
            await b.close()


async def offered(producer: RedisBroker, url: str, worker: str = "w1") -> bool:
    """Whether ``worker`` offers slots in the default queue of ``url``'s namespace."""
    tag = "{" + url.rsplit("prefix=", 1)[1] + ":default}"
    return bool(await (await producer._conn()).hexists(f"{tag}:iw", worker))


async def idle(worker: Consumer, slots: int) -> None:
    """Make ``worker`` a session of the default queue with ``slots`` free, offered to
    producers for about a second."""
    assert await worker.claim(slots, time.time()) == []
    await worker.wait(OFFERED)


async def handed_while_waiting(worker: Consumer, producer: RedisBroker, url: str) -> str:
    """Block ``worker`` (idle, a few slots free), enqueue one job that is handed to it, and
    return the job's id once its wait has popped it."""
    assert await worker.claim(4, time.time()) == []
    waiting = asyncio.create_task(worker.wait(30.0))
    await eventually(lambda: offered(producer, url, worker.worker))
    (job,) = await producer.enqueue([make_job()])
    assert job.status is Status.RUNNING
    await asyncio.wait_for(waiting, 10)
    return job.id


async def test_a_blocked_worker_is_handed_a_new_job(
    pair: tuple[RedisBroker, RedisBroker], url: str
) -> None:
    broker, producer = pair
    worker = session(broker)
    job_id = await handed_while_waiting(worker, producer, url)
    (got,) = await worker.claim(4, time.time())  # no script: the wait brought it
    assert (got.id, got.status, got.worker, got.attempts) == (job_id, Status.RUNNING, "w1", 1)
    stored = await must_get(producer, job_id)
    assert (stored.status, stored.worker, stored.token) == (Status.RUNNING, "w1", got.token)


async def test_a_job_handed_after_the_wait_ended_comes_with_the_next_claim(
    pair: tuple[RedisBroker, RedisBroker],
) -> None:
    broker, producer = pair
    worker = session(broker)
    await idle(worker, slots=4)
    (job,) = await producer.enqueue([make_job(max_attempts=3)])
    assert job.status is Status.RUNNING
    (got,) = await worker.claim(4, time.time())
    assert (got.id, got.attempts, got.max_attempts) == (job.id, 1, 3)
    assert await worker.claim(4, time.time()) == []  # handed over once


async def test_no_more_jobs_are_handed_than_slots_were_free(
    pair: tuple[RedisBroker, RedisBroker],
) -> None:
    broker, producer = pair
    worker = session(broker)
    await idle(worker, slots=2)
    jobs = await producer.enqueue([make_job() for _ in range(5)])
    assert [j.status for j in jobs] == [Status.RUNNING] * 2 + [Status.QUEUED] * 3
    assert [j.id for j in await worker.claim(2, time.time())] == [j.id for j in jobs[:2]]
    rest = await claim(producer, limit=10, worker="w2")
    assert [j.id for j in rest] == [j.id for j in jobs[2:]]


async def test_handed_jobs_beyond_a_claims_limit_wait_for_the_next_claim(
    pair: tuple[RedisBroker, RedisBroker],
) -> None:
    """A worker splits a big claim: the first half takes what fits, the rest stays its own."""
    broker, producer = pair
    worker = session(broker)
    await idle(worker, slots=4)
    jobs = await producer.enqueue([make_job() for _ in range(4)])
    assert [j.status for j in jobs] == [Status.RUNNING] * 4
    first = await worker.claim(2, time.time())
    second = await worker.claim(2, time.time())
    assert sorted(j.id for j in first + second) == sorted(j.id for j in jobs)
    assert {j.attempts for j in first + second} == {1}
    assert await claim(producer, limit=10, worker="w2") == []


async def test_a_paused_queue_hands_nothing(pair: tuple[RedisBroker, RedisBroker]) -> None:
    """Nor is a new job handed ahead of jobs queued meanwhile, once the queue resumes."""
    broker, producer = pair
    worker = session(broker)
    await idle(worker, slots=2)
    await producer.set_paused("default", True)
    (job,) = await producer.enqueue([make_job()])
    assert job.status is Status.QUEUED
    await producer.set_paused("default", False)
    later = await producer.enqueue([make_job(), make_job()])
    assert [j.status for j in later] == [Status.QUEUED, Status.QUEUED]
    assert [j.id for j in await worker.claim(2, time.time())] == [job.id, later[0].id]


async def test_scheduled_jobs_are_not_handed(pair: tuple[RedisBroker, RedisBroker]) -> None:
    broker, producer = pair
    worker = session(broker)
    await idle(worker, slots=2)
    (job,) = await producer.enqueue([make_job(eta=time.time() + 60)])
    assert job.status is Status.SCHEDULED
    assert await worker.claim(2, time.time()) == []


async def test_an_expired_offer_is_not_taken(
    pair: tuple[RedisBroker, RedisBroker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that died idle leaves an offer behind; it lapses after its wait."""
    broker, producer = pair
    await idle(session(broker), slots=2)
    later = SimpleNamespace(time=lambda: time.time() + 5, monotonic=time.monotonic)
    monkeypatch.setattr("conveyor.brokers.redis.time", later)
    (job,) = await producer.enqueue([make_job()])
    assert job.status is Status.QUEUED


async def test_closing_hands_back_what_was_handed_and_not_claimed(
    pair: tuple[RedisBroker, RedisBroker],
) -> None:
    """Jobs handed after the wait ended (still in the inbox in Redis) go back."""
    broker, producer = pair
    worker = session(broker)
    await idle(worker, slots=2)
    (job,) = await producer.enqueue([make_job()])
    assert job.status is Status.RUNNING
    await worker.close()
    stored = await must_get(producer, job.id)
    assert (stored.status, stored.attempts, stored.worker) == (Status.QUEUED, 0, None)
    (again,) = await claim(producer, limit=5, worker="w2")
    assert (again.id, again.attempts) == (job.id, 1)


async def test_closing_hands_back_jobs_its_wait_popped(
    pair: tuple[RedisBroker, RedisBroker], url: str
) -> None:
    """Jobs the wait already took from the inbox (held in the session) go back too, and the
    broker stays connected for others: its own close has nothing to settle."""
    broker, producer = pair
    worker = session(broker)
    job_id = await handed_while_waiting(worker, producer, url)
    await worker.close()
    assert not await offered(producer, url)
    stored = await must_get(broker, job_id)
    assert (stored.status, stored.attempts, stored.worker) == (Status.QUEUED, 0, None)
    (again,) = await claim(broker, limit=5, worker="w2")
    assert (again.id, again.attempts) == (job_id, 1)


async def test_two_sessions_of_one_broker_keep_their_hand_offs_apart(
    pair: tuple[RedisBroker, RedisBroker], url: str
) -> None:
    """A job handed to one session is claimed by that session only, though another
    session of the same broker object claims first; each closes its own."""
    broker, producer = pair
    first, second = session(broker, worker="w1"), session(broker, worker="w2")
    job_id = await handed_while_waiting(first, producer, url)
    assert await second.claim(4, time.time()) == []
    await second.close()
    assert (await must_get(producer, job_id)).worker == "w1"
    (got,) = await first.claim(4, time.time())
    assert (got.id, got.worker) == (job_id, "w1")
    await first.close()
    assert (await must_get(producer, job_id)).status is Status.RUNNING  # claimed: it runs


async def test_a_forked_child_drops_the_hand_offs_of_its_parent(
    pair: tuple[RedisBroker, RedisBroker], url: str
) -> None:
    """A session copied into a forked child (it sees another pid than the one it was made
    in) neither runs nor hands back the jobs handed to its parent: they are the parent's."""
    broker, producer = pair
    worker = session(broker)
    assert isinstance(worker, RedisConsumer)
    job_id = await handed_while_waiting(worker, producer, url)
    worker._generation = -1  # made by the parent of a fork; the store has left its sockets
    assert await worker.claim(4, time.time()) == []
    await worker.close()
    stored = await must_get(producer, job_id)
    assert (stored.status, stored.worker) == (Status.RUNNING, "w1")


async def test_a_cancelled_wait_withdraws_its_offer(
    pair: tuple[RedisBroker, RedisBroker], url: str
) -> None:
    broker, producer = pair
    worker = session(broker, worker="w1")
    assert await worker.claim(3, time.time()) == []
    waiting = asyncio.create_task(worker.wait(30.0))
    await eventually(lambda: offered(producer, url))
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not await offered(producer, url)
    (job,) = await producer.enqueue([make_job()])
    assert job.status is Status.QUEUED


async def test_a_handed_job_whose_lease_passed_is_not_claimed_by_its_old_worker(
    pair: tuple[RedisBroker, RedisBroker],
) -> None:
    broker, producer = pair
    worker = session(broker)
    await idle(worker, slots=1)
    (job,) = await producer.enqueue([make_job(max_attempts=2)])
    assert job.status is Status.RUNNING
    handed = await must_get(producer, job.id)
    assert await producer.recover(time.time() + LEASE + 60) == [job.id]
    # The inbox still lists it under the old token: only the fresh claim of it counts.
    (again,) = await worker.claim(5, time.time())
    assert (again.id, again.attempts, again.losses) == (job.id, 1, 1)  # a loss spends none
    assert again.token > handed.token
    await release(producer, [Lease(again.id, again.token)], time.time())

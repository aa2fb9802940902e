"""wait: idle workers block until work may be due, without tight timing assertions."""

from __future__ import annotations

import asyncio
import time

from conveyor.brokers import Broker
from conveyor.job import JobRecord
from tests.brokers.support import claim, enqueue_with, make_job

PROMPTLY = 5.0
"""How long "promptly" may take at most: far below the waits' own timeouts."""


async def assert_blocks(waiter: asyncio.Task[None]) -> None:
    """The waiter has not returned while nothing was due."""
    done, _ = await asyncio.wait({waiter}, timeout=0.2)
    assert not done, "wait returned although no work was due"


async def test_returns_at_once_when_work_is_due(broker: Broker) -> None:
    """wait returns promptly when a job is already due."""
    await broker.enqueue([make_job()])
    await asyncio.wait_for(broker.consumer("w1", ["default"], 30.0).wait(30), PROMPTLY)


async def test_returns_after_timeout_when_nothing_comes(broker: Broker) -> None:
    """wait returns after its timeout when nothing is due, ignoring unlisted queues' work."""
    await broker.enqueue([make_job(queue="other"), make_job(eta=time.time() + 3600)])
    start = time.monotonic()
    await asyncio.wait_for(broker.consumer("w1", ["default"], 30.0).wait(0.3), PROMPTLY + 0.3)
    assert time.monotonic() - start >= 0.15


async def test_wakes_on_enqueue_from_another_task(broker: Broker) -> None:
    """An enqueue by another task on the same loop wakes a waiter promptly."""
    waiter = asyncio.create_task(broker.consumer("w1", ["default"], 30.0).wait(30))
    await assert_blocks(waiter)
    await broker.enqueue([make_job()])
    await asyncio.wait_for(waiter, PROMPTLY)


async def test_wakes_on_enqueue_from_another_thread(broker: Broker) -> None:
    """An enqueue through a copy on another thread's loop wakes a waiter promptly."""
    waiter = asyncio.create_task(broker.consumer("w1", ["a", "b"], 30.0).wait(30))
    await assert_blocks(waiter)
    await asyncio.to_thread(asyncio.run, enqueue_with(broker.copy(), [make_job(queue="b")]))
    await asyncio.wait_for(waiter, PROMPTLY)


async def test_returns_by_a_scheduled_jobs_eta(broker: Broker) -> None:
    """A waiter gets a scheduled job soon after its eta, long before its own timeout."""
    eta = time.time() + 0.5
    [job] = await broker.enqueue([make_job(eta=eta)])
    deadline = time.monotonic() + 10
    claimed: list[JobRecord] = []
    while not claimed:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the scheduled job was not claimable within 10 s of its eta"
        await asyncio.wait_for(broker.consumer("w1", ["default"], 30.0).wait(30), remaining)
        claimed = await claim(broker)
    assert [j.id for j in claimed] == [job.id]
    assert time.time() >= eta

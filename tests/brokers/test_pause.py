"""Pausing a queue: its jobs wait, every claimer honours it, resuming lets them run."""

from __future__ import annotations

import asyncio
import time

from conveyor.brokers.base import Broker
from conveyor.job import Status
from tests.brokers.support import LEASE, make_job


async def test_a_paused_queue_is_skipped_by_claim_and_resumed(broker: Broker) -> None:
    """Claim takes nothing from a paused queue, other queues go on, resume restores it."""
    held, free = make_job(queue="held"), make_job(queue="free")
    await broker.enqueue([held, free])
    await broker.set_paused("held", True)
    assert await broker.paused() == ["held"]
    got = await broker.consumer("w1", ["held", "free"], LEASE).claim(10, time.time())
    assert [j.id for j in got] == [free.id]
    stored = await broker.get(held.id)
    assert stored is not None
    assert stored.status is Status.QUEUED
    await broker.set_paused("held", False)
    assert await broker.paused() == []
    got = await broker.consumer("w1", ["held", "free"], LEASE).claim(10, time.time())
    assert [j.id for j in got] == [held.id]


async def test_pause_is_shared_by_every_broker_object(broker: Broker) -> None:
    """A pause made through one object is honoured by a copy (another worker)."""
    other = broker.copy()
    await other.connect()
    try:
        await broker.set_paused("q", True)
        await broker.set_paused("q", True)  # idempotent
        await broker.enqueue([make_job(queue="q")])
        assert await other.paused() == ["q"]
        assert await other.consumer("w2", ["q"], LEASE).claim(10, time.time()) == []
    finally:
        await other.close()


async def test_wait_does_not_wake_for_a_paused_queue(broker: Broker) -> None:
    """Due work in a paused queue must not make wait return at once (a worker would spin)."""
    await broker.set_paused("p", True)
    await broker.enqueue([make_job(queue="p")])
    started = time.monotonic()
    await broker.consumer("w1", ["p"], 30.0).wait(0.3)
    assert time.monotonic() - started >= 0.25
    await broker.set_paused("p", False)
    await asyncio.wait_for(broker.consumer("w1", ["p"], 30.0).wait(30), timeout=10)

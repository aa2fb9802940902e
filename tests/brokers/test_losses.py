"""Losses apart from retries: a lease that expires (the worker was lost) requeues the job
without spending an attempt and counts the loss; the loss after MAX_LOSSES fails the job as a
poison pill; a cancel asked still wins; a release is not a loss."""

from __future__ import annotations

import time

import pytest

from conveyor.brokers import Broker
from conveyor.brokers.base import JobFilter
from conveyor.brokers.common import LEASE_EXPIRED, POISON_PILL
from conveyor.job import MAX_LOSSES, Status
from tests.brokers.support import (
    at,
    claim,
    claim_one,
    lease_of,
    make_job,
    must_get,
    release,
)


async def test_a_loss_requeues_without_spending_the_attempt(
    broker: Broker, request: pytest.FixtureRequest
) -> None:
    """An expired lease puts the job back to queued, due now, with attempts as they were
    before the claim and one loss counted; it is claimed again as attempt 1."""
    [job] = await broker.enqueue([make_job(max_attempts=1)])
    now = time.time()
    await claim_one(broker, job.id, now=now, lease=10, worker="lost")
    assert await broker.recover(now + 11) == [job.id]

    back = await must_get(broker, job.id)
    assert (back.status, back.attempts, back.losses) == (Status.QUEUED, 0, 1)
    assert (back.worker, back.lease_until) == (None, None)
    assert back.eta == at(now + 11)
    assert back.error is not None
    assert back.error.type == LEASE_EXPIRED
    assert "lost" in back.error.message

    again = await claim_one(broker, job.id, now=now + 12, worker="w2")
    assert (again.attempts, again.losses) == (1, 1)
    [listed] = await broker.list(JobFilter())
    assert listed.losses == 1


async def test_the_loss_after_the_limit_fails_the_job_as_a_poison_pill(
    broker: Broker, request: pytest.FixtureRequest
) -> None:
    """A job whose worker was lost each time it ran, MAX_LOSSES + 1 times, ends failed with
    the poison-pill error (naming the count and the last worker), never claimed again."""
    [job] = await broker.enqueue([make_job(max_attempts=5)])
    now = time.time()
    for loss in range(1, MAX_LOSSES + 2):
        t = now + 20 * loss
        await claim_one(broker, job.id, now=t, lease=10, worker=f"w{loss}")
        assert await broker.recover(t + 11) == [job.id]
        stored = await must_get(broker, job.id)
        assert (stored.attempts, stored.losses) == (0, loss)
        expected = Status.FAILED if loss > MAX_LOSSES else Status.QUEUED
        assert stored.status is expected

    assert stored.finished_at == at(now + 20 * (MAX_LOSSES + 1) + 11)
    assert stored.error is not None
    assert stored.error.type == POISON_PILL
    assert f"lost {MAX_LOSSES + 1} times" in stored.error.message
    assert "poison pill" in stored.error.message
    assert f"w{MAX_LOSSES + 1}" in stored.error.message
    assert await claim(broker, now=now + 1000) == []


async def test_losses_and_retries_count_apart(
    broker: Broker, request: pytest.FixtureRequest
) -> None:
    """Losses do not use up attempts: a job with retries left still fails as a poison pill
    only after its losses, and its attempts stay as its real runs made them."""
    [job] = await broker.enqueue([make_job(max_attempts=2)])
    now = time.time()
    for loss in range(1, MAX_LOSSES + 1):
        await claim_one(broker, job.id, now=now + loss * 20, lease=10)
        await broker.recover(now + loss * 20 + 11)
    stored = await must_get(broker, job.id)
    assert (stored.status, stored.attempts, stored.losses) == (Status.QUEUED, 0, MAX_LOSSES)


async def test_a_cancel_asked_wins_over_a_loss(broker: Broker) -> None:
    """A running job asked to cancel whose lease expires ends cancelled, also on the loss
    that would make it a poison pill."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    await claim_one(broker, job.id, now=now, lease=10)
    await broker.cancel(job.id, now + 1)
    assert await broker.recover(now + 11) == [job.id]
    assert (await must_get(broker, job.id)).status is Status.CANCELLED


async def test_a_cancel_wins_over_the_poison_pill(
    broker: Broker, request: pytest.FixtureRequest
) -> None:
    """On the last loss too, a cancel asked wins: cancelled, not failed."""
    [job] = await broker.enqueue([make_job(max_attempts=1)])
    now = time.time()
    for loss in range(1, MAX_LOSSES + 2):
        t = now + 20 * loss
        await claim_one(broker, job.id, now=t, lease=10)
        if loss > MAX_LOSSES:
            await broker.cancel(job.id, t + 1)
        assert await broker.recover(t + 11) == [job.id]
    cancelled = await must_get(broker, job.id)
    assert cancelled.status is Status.CANCELLED
    assert cancelled.error is not None
    assert cancelled.error.type == LEASE_EXPIRED  # not a poison pill: it was stopped


async def test_a_release_is_not_a_loss(broker: Broker) -> None:
    """A job handed back at shutdown counts neither an attempt nor a loss."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    for step in range(MAX_LOSSES + 2):
        running = await claim_one(broker, job.id, now=now + step)
        await release(broker, [lease_of(running)], now + step)
    back = await must_get(broker, job.id)
    assert (back.status, back.attempts, back.losses) == (Status.QUEUED, 0, 0)


async def test_a_redriven_poison_pill_counts_its_losses_afresh(
    broker: Broker, request: pytest.FixtureRequest
) -> None:
    """Redriving a job failed as a poison pill resets its losses with its attempts."""
    [job] = await broker.enqueue([make_job()])
    now = time.time()
    for loss in range(1, MAX_LOSSES + 2):
        await claim_one(broker, job.id, now=now + 20 * loss, lease=10)
        await broker.recover(now + 20 * loss + 11)
    failed = await must_get(broker, job.id)
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.type == POISON_PILL
    assert await broker.retry_failed([job.id], None, now + 100) == 1
    back = await must_get(broker, job.id)
    assert (back.status, back.attempts, back.losses) == (Status.QUEUED, 0, 0)

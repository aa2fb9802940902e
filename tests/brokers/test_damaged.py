"""One damaged record fails alone: a job whose stored arguments do not decode (or have the
wrong shape) is failed with conveyor.DecodeError by the claim that takes it, the other jobs
of that claim are returned and run, and reading the store (get, list) keeps working."""

from __future__ import annotations

import time

import pytest

from conveyor.brokers import Broker
from conveyor.brokers.base import JobFilter
from conveyor.brokers.common import DECODE_ERROR
from conveyor.job import Status
from tests.brokers.damage import DAMAGE, plant
from tests.brokers.support import (
    claim,
    finish,
    make_job,
    must_get,
    outcome,
)

pytestmark = pytest.mark.parametrize("kind", list(DAMAGE))


async def test_a_damaged_job_fails_alone_and_its_claim_runs(
    broker: Broker, kind: str, request: pytest.FixtureRequest
) -> None:
    """Among 20 good jobs, the damaged one is failed with a decode error naming its field and
    is not returned; the 20 others are, and their outcomes are accepted."""
    jobs = await broker.enqueue([make_job(args=[i]) for i in range(21)])
    damaged = jobs[10]
    await plant(broker, damaged, kind)

    now = time.time()
    claimed = await claim(broker, now=now, limit=100)
    assert sorted(j.id for j in claimed) == sorted(j.id for j in jobs if j is not damaged)
    assert sorted(j.args[0] for j in claimed) == [i for i in range(21) if i != 10]
    done = [outcome(j, Status.SUCCEEDED, finished_at=now + 1, result=j.args[0]) for j in claimed]
    assert await finish(broker, done) == []

    failed = await must_get(broker, damaged.id)
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.type == DECODE_ERROR
    assert DAMAGE[kind][0] in failed.error.message
    assert (failed.worker, failed.lease_until) == (None, None)
    assert await claim(broker, now=now + 1000) == []

    dead = await broker.list(JobFilter(status=Status.FAILED))
    assert [j.id for j in dead] == [damaged.id]
    everything = await broker.list(JobFilter(limit=100))
    assert len(everything) == 21
    assert sum(j.status is Status.SUCCEEDED for j in everything) == 20


async def test_a_damaged_job_is_readable_before_its_claim(
    broker: Broker, kind: str, request: pytest.FixtureRequest
) -> None:
    """get and list show a queued damaged job (a placeholder for the field that does not
    decode) beside the good ones, instead of failing."""
    good, bad = await broker.enqueue([make_job(args=[1]), make_job(args=[2])])
    await plant(broker, bad, kind)

    shown = await must_get(broker, bad.id)
    assert (shown.id, shown.status) == (bad.id, Status.QUEUED)
    listed = await broker.list(JobFilter())
    assert [j.id for j in listed] == [bad.id, good.id]
    assert listed[1] == await must_get(broker, good.id)

"""The pile of outcomes between a worker's runners and its recorder, without a broker."""

from __future__ import annotations

import asyncio

from conveyor.brokers.base import Lease, Outcome
from conveyor.job import JobRecord, Status
from conveyor.outcomes import Outcomes

WAIT = 1.0
"""Far above what any step here takes (no I/O): it only bounds a hang."""


def _ended(n: int) -> tuple[JobRecord, Outcome, float]:
    job = JobRecord(id=f"j{n}", task="t", token=1)
    return job, Outcome(id=job.id, token=1, status=Status.SUCCEEDED, finished_at=1.0), 0.0


async def test_the_recorder_ends_once_the_last_batch_after_close_is_recorded() -> None:
    """Outcomes that came, and the close, while a batch was being recorded: the next batch
    holds them, and once it is recorded the recorder is told the pile is done. (The wake-ups
    of the outcome, the claimer's end and the close are one set flag by then: the recorder
    takes it for the last batch, and none is left for the end.)"""
    pile = Outcomes(slots=1)
    pile.add(*_ended(1))  # as many as the slots: it may go at once
    first = await asyncio.wait_for(pile.next_batch(), WAIT)
    assert first is not None
    assert [out.id for _, out, _ in first] == ["j1"]
    # While the broker takes that batch, the last job ends, the claimer and the runners end.
    pile.add(*_ended(2))
    pile.claimer_done()
    pile.close(float("inf"))
    pile.recorded(len(first))
    last = await asyncio.wait_for(pile.next_batch(), WAIT)
    assert last is not None
    assert [out.id for _, out, _ in last] == ["j2"]
    pile.recorded(len(last))
    assert await asyncio.wait_for(pile.next_batch(), WAIT) is None


async def test_a_close_with_nothing_piled_ends_the_recorder() -> None:
    """The recorder waiting on an empty pile is told it is done at the close."""
    pile = Outcomes(slots=4)
    waiting = asyncio.create_task(pile.next_batch())
    await asyncio.sleep(0)  # the recorder waits
    pile.claimer_done()
    pile.close(float("inf"))
    assert await asyncio.wait_for(waiting, WAIT) is None


async def test_outcomes_wait_while_the_claimer_claims_and_go_when_it_waits() -> None:
    """Below a slot's worth, outcomes wait for the claimer to wait; then they all go."""
    pile = Outcomes(slots=4)
    pile.add(*_ended(1))
    pile.add(*_ended(2))
    waiting = asyncio.create_task(pile.next_batch())
    await asyncio.sleep(0)
    assert not waiting.done()
    claimer_waits = asyncio.Event()
    claimer = asyncio.create_task(pile.while_claimer_waits(claimer_waits.wait()))
    batch = await asyncio.wait_for(waiting, WAIT)
    assert batch is not None
    assert [out.id for _, out, _ in batch] == ["j1", "j2"]
    assert pile.leases() == [Lease(out.id, out.token) for _, out, _ in batch]
    claimer_waits.set()
    await claimer

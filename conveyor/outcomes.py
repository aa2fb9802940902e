"""The outcomes a worker has decided and not yet recorded, when to record them, and the
recorder that sends them to the broker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from conveyor.brokers.base import Consumer, Lease, Outcome
from conveyor.job import JobRecord
from conveyor.tally import Tally

log = logging.getLogger("conveyor.worker")

Entry = tuple[JobRecord, Outcome, float]
"""An outcome to record, with its job and how long the attempt ran (for the tally)."""


class Outcomes:
    """The pile of outcomes between a worker's runners and its recorder.

    Outcomes go to the broker in batches, at the moments that cost the worker nothing: while
    its claimer waits (for a free slot, or for work), since a claim is what a freed slot waits
    for and the broker would take the claim after them; and whenever as many are piled as the
    worker has slots (jobs that end as they start may never let the claimer wait). At
    shutdown everything goes, retried until a deadline. A batch stays in the pile until the
    broker has taken it, so that the heartbeat renews its leases meanwhile.
    """

    def __init__(self, slots: int) -> None:
        self._pile: list[Entry] = []
        self._slots = slots
        self._due = asyncio.Event()  # a batch may be ready to go
        self._empty = asyncio.Event()  # everything piled so far is recorded
        self._empty.set()
        self._claimer_waits = False
        self._closing = False
        self._give_up_at = float("inf")

    def add(self, job: JobRecord, outcome: Outcome, took: float) -> None:
        """Pile one outcome; wake the recorder if this is a moment to record."""
        self._pile.append((job, outcome, took))
        self._empty.clear()
        if self._may_go():
            self._due.set()

    def _may_go(self) -> bool:
        return self._claimer_waits or self._closing or len(self._pile) >= self._slots

    async def while_claimer_waits(self, waiting: Awaitable[Any]) -> None:
        """Await ``waiting`` (the claimer's wait) with the recorder free to record meanwhile."""
        self._claimer_waits = True
        if self._pile:
            self._due.set()
        try:
            await waiting
        finally:
            self._claimer_waits = False

    def claimer_done(self) -> None:
        """The claimer has ended: from now on every outcome may go at once."""
        self._claimer_waits = True
        self._due.set()

    def close(self, give_up_at: float) -> None:
        """No more outcomes will come: record the rest, retrying until ``give_up_at``
        (a ``time.monotonic()`` time)."""
        self._closing = True
        self._give_up_at = give_up_at
        self._due.set()

    async def next_batch(self) -> list[Entry] | None:
        """The next batch to record, when it is time; None once closed and empty."""
        while True:
            if self._closing and not self._pile:
                # Not a wait: close()'s wake-up may have gone to the batch just recorded.
                return None
            await self._due.wait()
            self._due.clear()
            if not self._may_go():
                continue  # the claimer went on claiming: it wakes us when it waits
            if not self._claimer_waits:
                # A full pile while the claimer claims: the claims it has just made (halves
                # run as tasks) go first, for the slots that wait on them.
                await asyncio.sleep(0)
            if self._pile:
                return self._pile[:]
            if self._closing:
                return None

    def recorded(self, n: int) -> None:
        """The broker took the first ``n`` (those that came meanwhile stay)."""
        del self._pile[:n]
        if not self._pile:
            self._empty.set()
        elif self._may_go():
            self._due.set()

    @property
    def pending(self) -> bool:
        """Whether outcomes wait to be recorded."""
        return bool(self._pile)

    async def all_recorded(self) -> None:
        """Return once every outcome piled so far is recorded."""
        await self._empty.wait()

    async def record(self, session: Consumer, tally: Tally, killed: asyncio.Event) -> None:
        """The recorder: send each batch to the broker, count what it accepted; retry while
        the broker is down, until the deadline of a closed pile (or at once when ``killed``
        is set); return once closed and empty."""
        pause = 0.1
        while (batch := await self.next_batch()) is not None:
            try:
                refused = await session.finish([out for _, out, _ in batch])
            except Exception as exc:
                if killed.is_set() or time.monotonic() > self._give_up_at:
                    # Their leases expire and another worker runs the jobs again:
                    # at-least-once holds, at the cost of a repeat.
                    log.error("dropping %d outcomes at shutdown: %s", len(batch), exc)
                    return
                log.error("recording %d outcomes failed (%s); retrying", len(batch), exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                self._due.set()  # the same batch again
                continue
            pause = 0.1
            self.recorded(len(batch))
            refused_ids = set(refused)
            for job, out, took in batch:
                if out.id in refused_ids:
                    tally.refused(job, out)
                else:
                    tally.recorded(job, out, took)

    def leases(self) -> list[Lease]:
        """The leases of the piled outcomes' jobs, which the heartbeat must keep renewing."""
        # Called from the heartbeat's thread: list() copies the pile in one step under the
        # GIL, where iterating it while the loop trims its head could skip an entry.
        return [Lease(out.id, out.token) for _, out, _ in list(self._pile)]
